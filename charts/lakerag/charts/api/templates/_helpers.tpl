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
