{{/*
Security contexts for LakeRAG images (user lakerag, UID/GID 10001): the global
defaults with the component's own settings merged over them.
usage: include "common.security.pod" (dict "context" $ "override" .Values.podSecurityContext)
*/}}
{{- define "common.security.pod" -}}
{{- $global := .context.Values.global | default dict -}}
{{- $base := deepCopy ($global.podSecurityContext | default dict) -}}
{{- toYaml (mustMergeOverwrite $base (deepCopy (.override | default dict))) -}}
{{- end -}}

{{- define "common.security.container" -}}
{{- $global := .context.Values.global | default dict -}}
{{- $base := deepCopy ($global.containerSecurityContext | default dict) -}}
{{- toYaml (mustMergeOverwrite $base (deepCopy (.override | default dict))) -}}
{{- end -}}
