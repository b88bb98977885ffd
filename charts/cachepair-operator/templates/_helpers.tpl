{{/*
The chart name, or nameOverride.
*/}}
{{- define "cachepair-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". At most 63 characters (a DNS label).
*/}}
{{- define "cachepair-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "cachepair-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object of the release.
*/}}
{{- define "cachepair-operator.labels" -}}
helm.sh/chart: {{ include "cachepair-operator.chart" . }}
{{ include "cachepair-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: cachepair
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator's pods (immutable in the Deployment's selector: never change).
*/}}
{{- define "cachepair-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cachepair-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's service account: the one the chart creates, or serviceAccount.name.
*/}}
{{- define "cachepair-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cachepair-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "cachepair-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The VRRP sidecar's image reference (--vrrp-image); the tag defaults to the chart's appVersion.
*/}}
{{- define "cachepair-operator.vrrpImage" -}}
{{- printf "%s:%s" .Values.vrrp.image.repository (default .Chart.AppVersion .Values.vrrp.image.tag) }}
{{- end }}

{{/*
The namespaces the operator watches, as JSON (read with fromJsonArray): watchNamespaces and the
older watchNamespace, each once. An empty list means all namespaces.
*/}}
{{- define "cachepair-operator.watchNamespaces" -}}
{{- $namespaces := .Values.watchNamespaces | default list }}
{{- with .Values.watchNamespace }}
{{- $namespaces = append $namespaces . }}
{{- end }}
{{- $namespaces | uniq | toJson }}
{{- end }}

{{/*
The rules the operator needs in the namespaces it watches (a ClusterRole when it watches all of
them, a Role in each watched namespace otherwise). Least privilege: exactly what it reads and
writes.
*/}}
{{- define "cachepair-operator.namespacedRules" -}}
- apiGroups: ["cachepair.io"]
  resources: ["cachepairs"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["cachepair.io"]
  resources: ["cachepairs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["cachepair.io"]
  resources: ["cachepairs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- if .Values.pairServiceMonitors }}
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- end }}

{{/*
Read access to nodes (cluster-scoped), to tell a member on a lost node.
*/}}
{{- define "cachepair-operator.nodeRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
{{- end }}
