{{- define "postgres.fullname" -}}
{{- include "common.names.fullname" (dict "context" . "component" "postgres") -}}
{{- end -}}
