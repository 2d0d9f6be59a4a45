{{- define "cto.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cto.serviceAccountName" -}}
{{- default (include "cto.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "cto.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cto.labels" -}}
{{ include "cto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* What the operator does with ConsentTokens and Secrets, wherever it watches. Every verb is
one the code uses; nothing else is granted. */}}
{{- define "cto.watchRules" -}}
# list, watch: the controller's cache of ConsentTokens (it never reads one by name).
- apiGroups: ["consent.dev"]
  resources: ["consenttokens"]
  verbs: ["list", "watch"]
# patch: the status, by server-side apply.
- apiGroups: ["consent.dev"]
  resources: ["consenttokens/status"]
  verbs: ["patch"]
# get: a credentials Secret when a token is fetched (used only if marked with
#   consent.dev/allowed-hosts), and a target Secret missing from the cache;
# list, watch: the cache of target Secrets (label-selected) and the metadata-only watch that
#   notices rotated credentials;
# create: a new target Secret (never over someone else's); patch: an existing one, by
#   server-side apply. No update, no delete (garbage collection deletes with the owner).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# create: one Event per Ready transition (a fresh recorder each time, so never a series patch).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
