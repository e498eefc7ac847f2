{{/*
A LakeRAG image (api, embeddings, spark, airflow): global.imageRegistry +
repository + ":" + (image.tag | global.imageTag | the chart's appVersion).
usage: include "common.images.lakerag" (dict "context" $ "image" .Values.image)
*/}}
{{- define "common.images.lakerag" -}}
{{- $global := .context.Values.global | default dict -}}
{{- $tag := .image.tag | default $global.imageTag | default .context.Chart.AppVersion -}}
{{- printf "%s%s:%s" (include "common.images.registry" $global) .image.repository (toString $tag) -}}
{{- end -}}

{{/*
global.imageRegistry as a prefix: "" stays "", "ghcr.io/acme" and "ghcr.io/acme/" both give
"ghcr.io/acme/" (bitnami charts take it without the slash).
usage: include "common.images.registry" .Values.global
*/}}
{{- define "common.images.registry" -}}
{{- with trimSuffix "/" (.imageRegistry | default "") -}}{{ . }}/{{- end -}}
{{- end -}}

{{/* A third-party image given in full (repository may include a registry). */}}
{{- define "common.images.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
{{- end -}}

{{/* imagePullPolicy: the image's own, else the global one. */}}
{{- define "common.images.pullPolicy" -}}
{{- $global := .context.Values.global | default dict -}}
{{- .image.pullPolicy | default $global.imagePullPolicy | default "IfNotPresent" -}}
{{- end -}}

{{- define "common.images.pullSecrets" -}}
{{- $global := .Values.global | default dict -}}
{{- with $global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}
