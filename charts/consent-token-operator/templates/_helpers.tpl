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

{{/* What the operator does with ConsentTokens and Secrets, wherever it watches. */}}
{{- define "cto.watchRules" -}}
- apiGroups: ["consent.dev"]
  resources: ["consenttokens"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["consent.dev"]
  resources: ["consenttokens/status"]
  verbs: ["get", "patch", "update"]
# Credentials are read (get), target Secrets written (create, patch); list and watch feed
# the cache of managed Secrets and the metadata-only watch of credentials Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
