-- Argo CD health of a ClusterConsentProvider (consent.dev/v1alpha1): Ready says whether its credentials
-- Secret is there and, for providers with an OAuth token endpoint, whether a token was obtained.
local hs = { status = "Progressing", message = "Waiting for the operator to check this provider" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to check the latest spec"
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" then
      hs.status = "Healthy"
      hs.message = condition.message
    elseif condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.reason .. ": " .. condition.message
    end
  end
end
return hs
