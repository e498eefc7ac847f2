{{/*
A secret value: `default` when the user gave one, else the value already in the
cluster's Secret (lookup; nothing under `helm template`) so generated values
survive upgrades, else a random alphanumeric string of `length`.
usage: include "common.secrets.preserve" (dict "context" $ "secret" NAME "key" KEY "default" "" "length" 32)
Returns the base64-encoded value, ready for a Secret's data field.
*/}}
{{- define "common.secrets.preserve" -}}
{{- $existing := lookup "v1" "Secret" .context.Release.Namespace .secret -}}
{{- if .default -}}
{{- .default | b64enc -}}
{{- else if and $existing (hasKey ($existing.data | default dict) .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum (.length | default 32 | int) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* envFrom for the shared settings: ConfigMap <prefix>-config and the app Secret. */}}
{{- define "common.env.shared" -}}
- configMapRef:
    name: {{ include "common.names.configMap" . }}
- secretRef:
    name: {{ include "common.names.secret" . }}
{{- end -}}

{{/*
Generated Secrets outlive `helm uninstall`: their values belong to data that stays
(the Postgres password to its PVC, the Fernet key to the connections encrypted in
that database, the MinIO root user to the MinIO PVC, the API key to its clients).
A reinstall under the same release name and namespace adopts the kept Secret, and
"common.secrets.preserve" reads the old values back from it.
*/}}
{{- define "common.secrets.keepAnnotation" -}}
helm.sh/resource-policy: keep
{{- end -}}
