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
# list, watch: the cache of ConsentProviders (named by ConsentTokens' spec.providerRef).
- apiGroups: ["consent.dev"]
  resources: ["consenttokens", "consentproviders"]
  verbs: ["list", "watch"]
# patch: the status, by server-side apply.
- apiGroups: ["consent.dev"]
  resources: ["consenttokens/status", "consentproviders/status"]
  verbs: ["patch"]
# get: a credentials Secret when a token is fetched (used only if marked with
#   consent.dev/allowed-hosts), and a target Secret missing from the cache;
# list, watch: the cache of target Secrets (label-selected) and the metadata-only watch that
#   notices rotated credentials;
# create: a new target Secret (never over someone else's); patch: an existing one, by
#   server-side apply, with its uid as precondition; delete: a Secret a ConsentToken created
#   under an earlier spec.target.secretName, with its uid as precondition. No update
#   (garbage collection deletes targets with their owner).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# create: one Event per Ready transition (a fresh recorder each time, so never a series patch).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}


{{/* Cluster-scoped reads every install needs, whatever it watches. */}}
{{- define "cto.clusterRules" -}}
# list, watch: the cache of ClusterConsentProviders; patch: their status.
- apiGroups: ["consent.dev"]
  resources: ["clusterconsentproviders"]
  verbs: ["list", "watch"]
- apiGroups: ["consent.dev"]
  resources: ["clusterconsentproviders/status"]
  verbs: ["patch"]
# list, watch: namespace labels (metadata only), for a ClusterConsentProvider's
#   allowedNamespaces.selector.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}
