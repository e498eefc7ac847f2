{{- define "spark.master.fullname" -}}
{{- include "common.names.fullname" (dict "context" . "component" "spark-master") -}}
{{- end -}}

{{- define "spark.worker.fullname" -}}
{{- include "common.names.fullname" (dict "context" . "component" "spark-worker") -}}
{{- end -}}

{{/* Pod-level settings shared by master and worker. */}}
{{- define "spark.podSpec" -}}
automountServiceAccountToken: false
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

{{/* Spark writes logs, work dirs and shuffle files under /tmp (an emptyDir). */}}
{{- define "spark.env" -}}
- name: SPARK_LOG_DIR
  value: /tmp/spark-logs
- name: SPARK_WORKER_DIR
  value: /tmp/spark-work
- name: SPARK_LOCAL_DIRS
  value: /tmp/spark-local
- name: SPARK_NO_DAEMONIZE
  value: "true"
{{- /* Bind to and advertise the pod IP: the pod's host name does not resolve from other pods,
       and Spark's own interface guess can pick one that goes away. */}}
- name: SPARK_LOCAL_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: SPARK_LOCAL_HOSTNAME
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}
