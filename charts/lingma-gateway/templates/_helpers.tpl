{{/* Chart name and release-scoped names. */}}
{{- define "lingma.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
An image reference from images.<key>: repository, tag (default: the chart's appVersion) and,
when set, digest (repository:tag@digest: the digest is what runs, the tag documents it).
*/}}
{{- define "lingma.image" -}}
{{- $image := index .root.Values.images .key -}}
{{- $ref := printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- if $image.digest -}}
{{- $ref = printf "%s@%s" $ref $image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* Pod anti-affinity spreading a component's replicas over nodes (when none is given). */}}
{{- define "lingma.spread" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "lingma.selector" . | nindent 12 }}
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
