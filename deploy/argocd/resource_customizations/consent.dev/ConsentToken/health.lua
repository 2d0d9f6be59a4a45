-- Argo CD health of a ConsentToken (consent.dev/v1alpha1). Ready says whether the target Secret
-- holds a valid token; Synced whether the last refresh succeeded. A refresh that fails while the
-- token is still valid keeps Ready True, so Synced is what turns the application Degraded before
-- the token expires.
local hs = { status = "Progressing", message = "Waiting for the operator to report on this ConsentToken" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to act on the latest spec"
  return hs
end
local ready = nil
local synced = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then ready = condition end
  if condition.type == "Synced" then synced = condition end
end
if ready == nil then
  return hs
end
if ready.status == "False" then
  if ready.reason == "Pending" then
    hs.message = ready.message
    return hs
  end
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. ready.message
  return hs
end
if synced ~= nil and synced.status == "False" then
  hs.status = "Degraded"
  hs.message = synced.reason .. ": " .. synced.message .. " (the token in the Secret is still valid)"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
end
return hs
