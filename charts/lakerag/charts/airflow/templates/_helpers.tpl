{{- define "airflow.fullname" -}}
{{- include "common.names.fullname" (dict "context" . "component" "airflow") -}}
{{- end -}}

{{- define "airflow.apiServer.fullname" -}}
{{- include "common.names.fullname" (dict "context" . "component" "airflow-api-server") -}}
{{- end -}}

{{- define "airflow.secretName" -}}
{{- .Values.existingSecret | default (include "airflow.fullname" .) -}}
{{- end -}}

{{- define "airflow.image" -}}
{{- include "common.images.lakerag" (dict "context" . "image" .Values.image) -}}
{{- end -}}

{{/* The user the LakeRAG API records asset events as (global.pipelineTrigger), when this Airflow is its. */}}
{{- define "airflow.triggerUser" -}}
{{- $trigger := (.Values.global.pipelineTrigger | default dict) -}}
{{- if and $trigger.enabled (not $trigger.airflowUrl) -}}
{{- $trigger.username -}}
{{- end -}}
{{- end -}}

{{/*
Environment of every Airflow container. Secrets come from Secrets by reference;
the database URL is assembled by Kubernetes from the password it references.
*/}}
{{- define "airflow.env" -}}
{{- $secret := include "airflow.secretName" . -}}
- name: AIRFLOW_HOME
  value: {{ .Values.home | quote }}
- name: AIRFLOW_CONFIG
  value: /opt/airflow-config/airflow.cfg
{{- if .Values.database.existingConnectionSecret }}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingConnectionSecret }}
      key: connection
{{- else }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "common.names.postgresSecret" . }}
      key: password
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  value: {{ printf "postgresql+psycopg2://%s:$(POSTGRES_PASSWORD)@%s:5432/%s" .Values.global.postgres.username (include "common.names.fullname" (dict "context" . "component" "postgres")) .Values.global.postgres.database | quote }}
{{- end }}
- name: AIRFLOW__CORE__EXECUTOR
  value: LocalExecutor
- name: AIRFLOW__CORE__PARALLELISM
  value: {{ .Values.parallelism | quote }}
- name: AIRFLOW__CORE__FERNET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: fernet-key
- name: AIRFLOW__API__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: api-secret-key
- name: AIRFLOW__API_AUTH__JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: jwt-secret
- name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL
  value: {{ printf "http://%s:8080/execution/" (include "airflow.apiServer.fullname" .) | quote }}
- name: AIRFLOW__CORE__DAGS_FOLDER
  value: {{ .Values.dagsFolder | quote }}
- name: AIRFLOW__CORE__LOAD_EXAMPLES
  value: "False"
# Pod hostnames do not resolve in the cluster; the api-server fetches task logs
# from the scheduler by IP.
- name: AIRFLOW__CORE__HOSTNAME_CALLABLE
  value: airflow.utils.net.get_host_ip_address
- name: AIRFLOW__CORE__AUTH_MANAGER
  value: airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
- name: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS
  {{- with include "airflow.triggerUser" . }}
  value: {{ printf "%s:admin,%s:op" $.Values.admin.username . | quote }}
  {{- else }}
  value: {{ printf "%s:admin" .Values.admin.username | quote }}
  {{- end }}
- name: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE
  value: /opt/airflow-auth/passwords.json
- name: AIRFLOW__LOGGING__BASE_LOG_FOLDER
  value: {{ printf "%s/logs" .Values.home | quote }}
# Settings of the pipeline DAG (airflow-dags/lakerag_pipeline.py) as Airflow
# Variables in their environment form.
- name: AIRFLOW_VAR_LAKERAG_NAMESPACE
  value: {{ .Values.pipeline.namespace | default .Release.Namespace | quote }}
- name: AIRFLOW_VAR_LAKERAG_IMAGE_REGISTRY
  value: {{ include "common.images.registry" .Values.global | quote }}
- name: AIRFLOW_VAR_LAKERAG_IMAGE_TAG
  value: {{ .Values.global.imageTag | default .Chart.AppVersion | quote }}
- name: AIRFLOW_VAR_LAKERAG_IMAGE_PULL_POLICY
  value: {{ .Values.global.imagePullPolicy | quote }}
- name: AIRFLOW_VAR_LAKERAG_SERVICE_ACCOUNT
  value: {{ include "common.names.pipelineServiceAccount" . | quote }}
- name: AIRFLOW_VAR_LAKERAG_CONFIGMAP
  value: {{ include "common.names.configMap" . | quote }}
- name: AIRFLOW_VAR_LAKERAG_SECRET
  value: {{ include "common.names.secret" . | quote }}
{{- range $component, $ref := .Values.pipeline.images }}
{{- if $ref }}
- name: {{ printf "AIRFLOW_VAR_LAKERAG_%s_IMAGE" (upper $component) }}
  value: {{ $ref | quote }}
{{- end }}
{{- end }}
{{- with .Values.pipeline.modelCacheClaim }}
- name: AIRFLOW_VAR_LAKERAG_MODEL_CACHE_CLAIM
  value: {{ . | quote }}
{{- end }}
{{- with (.Values.global.pipelineTrigger | default dict).assetUri }}
- name: AIRFLOW_VAR_LAKERAG_ASSET_URI
  value: {{ . | quote }}
{{- end }}
{{- with .Values.pipeline.schedule }}
- name: AIRFLOW_VAR_LAKERAG_SCHEDULE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Init containers: the database answers, then its schema is migrated (by the Job). */}}
{{- define "airflow.waitForMigrations" -}}
{{- include "airflow.copyDags" . }}
- name: wait-for-db
  image: {{ include "airflow.image" . }}
  imagePullPolicy: {{ include "common.images.pullPolicy" (dict "context" . "image" .Values.image) }}
  command: ["airflow"]
  args: ["db", "check", "--retry", "60", "--retry-delay", "5"]
  env:
    {{- include "airflow.env" . | nindent 4 }}
  resources:
    {{- include "airflow.initResources" . | nindent 4 }}
  securityContext:
    {{- include "common.security.container" (dict "context" . "override" .Values.containerSecurityContext) | nindent 4 }}
  volumeMounts:
    {{- include "airflow.volumeMounts" . | nindent 4 }}
- name: wait-for-migrations
  image: {{ include "airflow.image" . }}
  imagePullPolicy: {{ include "common.images.pullPolicy" (dict "context" . "image" .Values.image) }}
  command: ["airflow"]
  args: ["db", "check-migrations", "--migration-wait-timeout", "600"]
  env:
    {{- include "airflow.env" . | nindent 4 }}
  resources:
    {{- include "airflow.initResources" . | nindent 4 }}
  securityContext:
    {{- include "common.security.container" (dict "context" . "override" .Values.containerSecurityContext) | nindent 4 }}
  volumeMounts:
    {{- include "airflow.volumeMounts" . | nindent 4 }}
{{- end -}}

{{- define "airflow.initResources" -}}
requests:
  cpu: 100m
  memory: 256Mi
limits:
  cpu: 500m
  memory: 512Mi
{{- end -}}

{{/* Writable places on a read-only root: logs, /tmp, the auth file; the config file. */}}
{{- define "airflow.volumeMounts" -}}
- name: config
  mountPath: /opt/airflow-config
  readOnly: true
- name: logs
  mountPath: {{ printf "%s/logs" .Values.home }}
- name: auth
  mountPath: /opt/airflow-auth
- name: tmp
  mountPath: /tmp
{{- if .Values.writableDags }}
- name: dags
  mountPath: {{ .Values.dagsFolder }}
{{- end }}
{{- end -}}

{{- define "airflow.volumes" -}}
- name: config
  configMap:
    name: {{ include "airflow.fullname" . }}
- name: logs
  emptyDir: {}
- name: auth
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if .Values.writableDags }}
- name: dags
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* With writableDags, the image's DAGs are copied into an emptyDir that skaffold can sync into. */}}
{{- define "airflow.copyDags" -}}
{{- if .Values.writableDags }}
- name: copy-dags
  image: {{ include "airflow.image" . }}
  imagePullPolicy: {{ include "common.images.pullPolicy" (dict "context" . "image" .Values.image) }}
  command: ["cp", "-R", "{{ .Values.dagsFolder }}/.", "/writable-dags/"]
  resources:
    {{- include "airflow.initResources" . | nindent 4 }}
  securityContext:
    {{- include "common.security.container" (dict "context" . "override" .Values.containerSecurityContext) | nindent 4 }}
  volumeMounts:
    - name: dags
      mountPath: /writable-dags
{{- end }}
{{- end -}}

{{- define "airflow.podSpec" -}}
enableServiceLinks: false
{{- include "common.images.pullSecrets" . }}
securityContext:
  {{- include "common.security.pod" (dict "context" . "override" .Values.podSecurityContext) | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod annotations: roll pods when the Airflow environment or shared settings change. */}}
{{- define "airflow.podAnnotations" -}}
checksum/config: {{ include "common.config.checksum" . }}
checksum/airflow-env: {{ include "airflow.env" . | sha256sum }}
{{- end -}}
