{{/*
The shared settings (global.config) rendered: each value through `tpl`, empty
ones left out. The umbrella writes them into ConfigMap "<prefix>-config"; the
workloads that read it put the sha256 of the same text in a pod annotation.
*/}}
{{- define "common.config.data" -}}
{{- $config := dict -}}
{{- range $key, $value := (.Values.global.config | default dict) -}}
{{- $rendered := tpl (toString $value) $ -}}
{{- if ne $rendered "" -}}
{{- $_ := set $config $key $rendered -}}
{{- end -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "common.config.checksum" -}}
{{- include "common.config.data" . | sha256sum -}}
{{- end -}}
