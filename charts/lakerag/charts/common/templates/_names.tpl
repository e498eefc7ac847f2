{{/*
Names. Every object is "<prefix>-<component>", the prefix being the release name
when it already says "lakerag" (release "lakerag" → "lakerag-api"), else
"<release>-lakerag", or global.fullnameOverride. All subcharts use these helpers,
so one subchart can name another's Service or Secret without passing values around.
*/}}
{{- define "common.names.prefix" -}}
{{- $global := .Values.global | default dict -}}
{{- if $global.fullnameOverride -}}
{{- $global.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "lakerag" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-lakerag" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<prefix>-<component>"; usage: include "common.names.fullname" (dict "context" $ "component" "api") */}}
{{- define "common.names.fullname" -}}
{{- printf "%s-%s" (include "common.names.prefix" .context) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Shared objects every LakeRAG workload and pipeline pod reads. */}}
{{- define "common.names.configMap" -}}
{{- include "common.names.fullname" (dict "context" . "component" "config") -}}
{{- end -}}

{{- define "common.names.secret" -}}
{{- $global := .Values.global | default dict -}}
{{- $global.existingSecret | default (include "common.names.fullname" (dict "context" . "component" "secrets")) -}}
{{- end -}}

{{/* ServiceAccount of the pipeline pods the Airflow DAG launches. */}}
{{- define "common.names.pipelineServiceAccount" -}}
{{- include "common.names.fullname" (dict "context" . "component" "pipeline") -}}
{{- end -}}

{{/* Secret with the chart PostgreSQL's password (key `password`). */}}
{{- define "common.names.postgresSecret" -}}
{{- $global := .Values.global | default dict -}}
{{- (($global.postgres | default dict).existingSecret) | default (include "common.names.fullname" (dict "context" . "component" "postgres")) -}}
{{- end -}}
