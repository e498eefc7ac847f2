{{/*
Fail fast on combinations the schema cannot express, with the fix in the message.
*/}}
{{- define "lakerag.validate" -}}
{{- $store := toString .Values.global.config.LAKERAG_STORE_URI -}}
{{- if not (hasPrefix "s3://" $store) -}}
{{- fail (printf "global.config.LAKERAG_STORE_URI=%q: pods share no disk, so the store must be s3://BUCKET[/PREFIX] (enable minio for a development S3)" $store) -}}
{{- end -}}
{{- if and .Values.airflow.enabled (not .Values.postgres.enabled) (not .Values.airflow.database.existingConnectionSecret) -}}
{{- fail "airflow needs a database: set postgres.enabled=true or airflow.database.existingConnectionSecret (a Secret with key `connection`)" -}}
{{- end -}}
{{- $bucket := regexReplaceAll "^s3://([^/]*).*$" $store "${1}" -}}
{{- if and .Values.minio.enabled (ne .Values.minio.bucket $bucket) -}}
{{- fail (printf "minio.bucket=%q is not the bucket of global.config.LAKERAG_STORE_URI=%q: make them agree" .Values.minio.bucket $store) -}}
{{- end -}}
{{- $destination := toString .Values.backup.destination -}}
{{- if and .Values.backup.enabled $destination -}}
{{- $storeDir := printf "%s/" (trimSuffix "/" $store) -}}
{{- $backupDir := printf "%s/" (trimSuffix "/" $destination) -}}
{{- if or (hasPrefix $storeDir $backupDir) (hasPrefix $backupDir $storeDir) -}}
{{- fail (printf "backup.destination=%q overlaps global.config.LAKERAG_STORE_URI=%q: a backup there is lost with the store (and one under raw/ is indexed as documents); choose another bucket" $destination $store) -}}
{{- end -}}
{{- end -}}
{{- $config := include "common.config.data" . | fromYaml -}}
{{- if and .Values.minio.enabled (not (hasSuffix "-minio:9000" ($config.AWS_ENDPOINT_URL | default ""))) -}}
{{- fail (printf "minio.enabled: point the store at it with global.config.AWS_ENDPOINT_URL=http://%s-minio:9000" (include "common.names.prefix" .)) -}}
{{- end -}}
{{- if and (not .Values.spark.enabled) (contains "-spark-master:7077" ($config.LAKERAG_SPARK_MASTER | default "")) -}}
{{- fail "spark.enabled=false but global.config.LAKERAG_SPARK_MASTER names the chart's Spark master: set it to local[*] or your own master URL" -}}
{{- end -}}
{{- if and .Values.minio.enabled .Values.global.existingSecret -}}
{{- fail "minio.enabled takes its root credentials from the generated secret: leave global.existingSecret empty in development, or disable minio" -}}
{{- end -}}
{{- if and (or .Values.secrets.awsAccessKeyId .Values.secrets.awsSecretAccessKey) (not (and .Values.secrets.awsAccessKeyId .Values.secrets.awsSecretAccessKey)) -}}
{{- fail "set both secrets.awsAccessKeyId and secrets.awsSecretAccessKey, or neither (the AWS default chain, or random MinIO credentials with minio.enabled)" -}}
{{- end -}}
{{- /* Its ends are stripped, as the API strips them (a --set-file key ends in a newline). */ -}}
{{- if not (regexMatch "^[ -~]*$" (.Values.secrets.apiKey | default "" | trim)) -}}
{{- fail "secrets.apiKey has a character that is not printable ASCII: an HTTP header cannot carry it, so the API refuses it at start; use letters, digits and punctuation (e.g. `openssl rand -hex 32`)" -}}
{{- end -}}
{{- if and .Values.api.enabled .Values.api.ingress.enabled .Values.api.ingress.tls.secretName (not .Values.api.ingress.host) -}}
{{- fail "api.ingress.tls.secretName: a certificate is for a host name; set api.ingress.host to the name it was issued for" -}}
{{- end -}}
{{- if and .Values.api.enabled .Values.api.autoscaling.enabled (lt (int .Values.api.autoscaling.maxReplicas) (int .Values.api.autoscaling.minReplicas)) -}}
{{- fail "api.autoscaling.maxReplicas must be >= api.autoscaling.minReplicas" -}}
{{- end -}}
{{- $trigger := .Values.global.pipelineTrigger -}}
{{- if and .Values.api.enabled $trigger.enabled -}}
{{- if and (not .Values.airflow.enabled) (not $trigger.airflowUrl) -}}
{{- fail "global.pipelineTrigger.enabled needs an Airflow: set airflow.enabled=true, global.pipelineTrigger.airflowUrl to yours, or global.pipelineTrigger.enabled=false (the DAG's schedule only)" -}}
{{- end -}}
{{- if and (or $trigger.airflowUrl .Values.airflow.existingSecret) (not $trigger.passwordSecret.name) -}}
{{- fail "global.pipelineTrigger: name the Secret holding the Airflow password of global.pipelineTrigger.username in global.pipelineTrigger.passwordSecret.name (the chart generates one only in its own Airflow Secret)" -}}
{{- end -}}
{{- if eq $trigger.username .Values.airflow.admin.username -}}
{{- fail "global.pipelineTrigger.username must differ from airflow.admin.username: the API logs in as a user with role op, not as the admin" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.airflow.enabled .Values.airflow.pipeline.namespace (ne .Values.airflow.pipeline.namespace .Release.Namespace) -}}
{{- fail (printf "airflow.pipeline.namespace=%q: the task pods run as the release's ServiceAccount with its ConfigMap and Secret, which live in the release namespace %q; leave it empty (or install a release into %q)" .Values.airflow.pipeline.namespace .Release.Namespace .Values.airflow.pipeline.namespace) -}}
{{- end -}}
{{- $export := .Values.api.modelExport -}}
{{- $packaged := "sentence-transformers/all-MiniLM-L6-v2" -}}
{{- $model := $config.LAKERAG_EMBEDDING_MODEL | default $packaged -}}
{{- if and .Values.api.enabled $export.enabled -}}
{{- if eq ($config.LAKERAG_ENCODER | default "") "torch" -}}
{{- fail "api.modelExport.enabled makes an ONNX export, which LAKERAG_ENCODER=torch never reads: set global.config.LAKERAG_ENCODER=onnx, or api.modelExport.enabled=false" -}}
{{- end -}}
{{- /* Offline, the export can only read the model from the PVC (or the variant's packaged default, or a
directory): a PVC this chart creates starts empty, so a hub model could never be found there. */ -}}
{{- if and (eq ($config.LAKERAG_OFFLINE | default "false") "true") (ne $model $packaged) (not (hasPrefix "/" $model)) (not .Values.api.modelCache.existingClaim) -}}
{{- fail (printf "api.modelExport.enabled with global.config.LAKERAG_OFFLINE=true: the export of %s would look for the model in a new, empty model-cache PVC and may not download it. Set LAKERAG_OFFLINE=false (the first pod downloads and exports it once), or put the model into a PVC beforehand (`hf download %s --cache-dir DIR` on the volume's root) and name that PVC in api.modelCache.existingClaim" $model $model) -}}
{{- end -}}
{{- if and .Values.airflow.enabled (not .Values.airflow.pipeline.modelCacheClaim) (not (hasSuffix "-torch" .Values.airflow.pipeline.images.embeddings)) -}}
{{- fail (printf "api.modelExport.enabled: the pipeline's embed pods (embeddings image, no torch) need the same export: set airflow.pipeline.modelCacheClaim=%s (the API's model-cache PVC, ReadWriteMany when pods run on several nodes), or airflow.pipeline.images.embeddings to a -torch variant" (.Values.api.modelCache.existingClaim | default (printf "%s-api-model-cache" (include "common.names.prefix" .)))) -}}
{{- end -}}
{{- end -}}
{{- $apiTag := toString (.Values.api.image.tag | default .Values.global.imageTag | default .Chart.AppVersion) -}}
{{- if and .Values.api.enabled (not (hasSuffix "-torch" $apiTag)) -}}
{{- if eq ($config.LAKERAG_ENCODER | default "") "torch" -}}
{{- fail (printf "global.config.LAKERAG_ENCODER=torch: the api image (tag %q) has no torch. Set LAKERAG_ENCODER=onnx, or api.image.tag to its -torch variant" $apiTag) -}}
{{- end -}}
{{- /* The image holds the packaged model's export only: another model's export must be made (the init
container) or already be on a PVC the operator names; otherwise every API pod exits at start. */ -}}
{{- if and (ne $model $packaged) (not (hasPrefix "/" $model)) (not $export.enabled) (not .Values.api.modelCache.existingClaim) -}}
{{- fail (printf "global.config.LAKERAG_EMBEDDING_MODEL=%s: the api image (no torch) serves an ONNX export, and only the packaged default's is in the image. Set api.modelExport.enabled=true (the first pod exports it into the model-cache PVC), or export it yourself (`lakerag model export %s`) into a PVC named in api.modelCache.existingClaim" $model $model) -}}
{{- end -}}
{{- end -}}
{{- $shutdown := .Values.api.shutdown -}}
{{- if and .Values.api.enabled (le (int $shutdown.terminationGracePeriodSeconds) (add (int $shutdown.preStopSeconds) 15)) -}}
{{- fail (printf "api.shutdown.terminationGracePeriodSeconds=%d must exceed preStopSeconds (%d) + the API's 15 s graceful shutdown, else requests in flight are killed" (int $shutdown.terminationGracePeriodSeconds) (int $shutdown.preStopSeconds)) -}}
{{- end -}}
{{- end -}}
