{{- define "api.fullname" -}}
{{- include "common.names.fullname" (dict "context" . "component" "api") -}}
{{- end -}}

{{/* ServiceMonitor when asked for and the Prometheus Operator's CRD exists. */}}
{{- define "api.serviceMonitor" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") -}}
true
{{- end -}}
{{- end -}}

{{/* PrometheusRule when asked for and the Prometheus Operator's CRD exists. */}}
{{- define "api.prometheusRule" -}}
{{- if and .Values.metrics.prometheusRule.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule") -}}
true
{{- end -}}
{{- end -}}

{{- define "api.modelCacheClaim" -}}
{{- .Values.modelCache.existingClaim | default (printf "%s-model-cache" (include "api.fullname" .)) -}}
{{- end -}}

{{/*
Event-driven sync (global.pipelineTrigger): where the API records Airflow asset events, as whom;
the password only by reference (the chart's Airflow Secret unless passwordSecret.name is set).
*/}}
{{- define "api.pipelineTriggerEnv" -}}
{{- $trigger := .Values.global.pipelineTrigger | default dict -}}
{{- if $trigger.enabled -}}
- name: LAKERAG_AIRFLOW_API_URL
  value: {{ $trigger.airflowUrl | default (printf "http://%s:8080" (include "common.names.fullname" (dict "context" . "component" "airflow-api-server"))) | quote }}
- name: LAKERAG_AIRFLOW_ASSET_URI
  value: {{ $trigger.assetUri | quote }}
- name: LAKERAG_AIRFLOW_USERNAME
  value: {{ $trigger.username | quote }}
- name: LAKERAG_AIRFLOW_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $trigger.passwordSecret.name | default (include "common.names.fullname" (dict "context" . "component" "airflow")) }}
      key: {{ $trigger.passwordSecret.key }}
- name: LAKERAG_AIRFLOW_POLL_SECONDS
  value: {{ $trigger.pollSeconds | quote }}
{{- end -}}
{{- end -}}

{{/*
The model-export init container's image: api.modelExport.image, by default the API's own
repository and tag with the suffix "-torch" (images/build.sh api-torch); a tag that already
ends in -torch (the API itself on the variant, for the reranker) is used as it is.
*/}}
{{- define "api.modelExportImage" -}}
{{- $export := .Values.modelExport.image -}}
{{- $global := .Values.global | default dict -}}
{{- $tag := $export.tag -}}
{{- if not $tag -}}
{{- $tag = toString (.Values.image.tag | default $global.imageTag | default .Chart.AppVersion) -}}
{{- if not (hasSuffix "-torch" $tag) -}}
{{- $tag = printf "%s-torch" $tag -}}
{{- end -}}
{{- end -}}
{{- $image := dict "repository" ($export.repository | default .Values.image.repository) "tag" $tag -}}
{{- include "common.images.lakerag" (dict "context" . "image" $image) -}}
{{- end -}}

{{- define "api.modelExportPullPolicy" -}}
{{- $policy := .Values.modelExport.image.pullPolicy | default .Values.image.pullPolicy -}}
{{- include "common.images.pullPolicy" (dict "context" . "image" (dict "pullPolicy" $policy)) -}}
{{- end -}}
