{{- define "cto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cto.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "cto.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cto.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.create=false needs serviceAccount.name: the existing ServiceAccount the operator runs as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cto.labels" -}}
{{ include "cto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Values that contradict each other are refused at render, saying what to change. */}}
{{- define "cto.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection) -}}
{{- fail (printf "replicaCount=%d with leaderElection=false would run %d writers (duplicate upstream requests, flapping status): set leaderElection=true or replicaCount=1" (int .Values.replicaCount) (int .Values.replicaCount)) -}}
{{- end -}}
{{- if .Values.podDisruptionBudget.enabled -}}
{{- $min := .Values.podDisruptionBudget.minAvailable -}}
{{- if or (and (kindIs "string" $min) (eq $min "100%")) (and (not (kindIs "string" $min)) (ge (int $min) (int .Values.replicaCount))) -}}
{{- fail (printf "podDisruptionBudget.minAvailable=%v with replicaCount=%d would block every node drain: set it below replicaCount (or disable the budget)" $min (int .Values.replicaCount)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled -}}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled would scrape every replica twice (and every alert would see two of each series): enable one of them" -}}
{{- end -}}
{{- end -}}

{{/* A ServiceMonitor's or PodMonitor's endpoint, after its port: scrape settings, and the
`installation` label every series gets, which the chart's alerts select by. */}}
{{- define "cto.scrapeEndpoint" -}}
{{- $monitor := .monitor -}}
path: /metrics
interval: {{ $monitor.interval }}
{{- with $monitor.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
# The ConsentToken's own namespace and name labels, not exported_namespace.
honorLabels: {{ $monitor.honorLabels }}
relabelings:
  - targetLabel: installation
    replacement: {{ printf "%s/%s" .root.Release.Namespace (include "cto.fullname" .root) | quote }}
  {{- with $monitor.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $monitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
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

{{/* The egress proxy's port as a JSON list (empty without a proxy): the NetworkPolicy allows it. */}}
{{- define "cto.proxyPorts" -}}
{{- with .Values.upstream.httpsProxy -}}
{{- $url := urlParse (ternary . (printf "http://%s" .) (contains "://" .)) -}}
{{- $hostPort := splitList ":" $url.host -}}
{{- $default := ternary 443 80 (eq $url.scheme "https") -}}
{{- list (ternary (last $hostPort | atoi) $default (gt (len $hostPort) 1)) | toJson -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}
