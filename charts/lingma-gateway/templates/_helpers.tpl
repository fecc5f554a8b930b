{{/* Chart name and release-scoped names. */}}
{{- define "lingma.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lingma.tag" -}}
{{- default .Chart.AppVersion .Values.imageTag -}}
{{- end -}}

{{- define "lingma.image" -}}
{{- printf "%s/%s:%s" .root.Values.imageRegistry .name (include "lingma.tag" .root) -}}
{{- end -}}

{{- define "lingma.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: lingma-gateway
{{- end -}}

{{- define "lingma.selector" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "lingma.discoveryNamespace" -}}
{{- default .Release.Namespace .Values.gateway.discoveryNamespace -}}
{{- end -}}

{{- define "lingma.authSecret" -}}
{{- default (printf "%s-gateway-auth" (include "lingma.fullname" .)) .Values.gateway.auth.existingSecret -}}
{{- end -}}

{{/* Container security context shared by every container. */}}
{{- define "lingma.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "lingma.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}
