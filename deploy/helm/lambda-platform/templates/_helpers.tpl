{{/* Names and labels. */}}
{{- define "lambda-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lambda-platform.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's resource name: <fullname>-<component>. Takes (list $ "component"). */}}
{{- define "lambda-platform.component" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%s" (include "lambda-platform.fullname" $ctx | trunc 40 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "lambda-platform.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "lambda-platform.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "lambda-platform.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lambda-platform.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: lambda-platform
{{- end }}

{{- define "lambda-platform.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "lambda-platform.airflowApiUrl" -}}
{{- printf "http://%s:%v" (include "lambda-platform.component" (list . "airflow-apiserver")) .Values.airflow.apiServer.service.port }}
{{- end }}

{{/* A value from a Secret the operator made (existingSecret); never a literal. */}}
{{- define "lambda-platform.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ required (printf "%s: the name of an existing Secret" (index . 2)) (index . 0) | quote }}
    key: {{ index . 1 | quote }}
{{- end }}

{{- define "lambda-platform.kafkaCaMounted" -}}
{{- with .Values.kafka.security.caFile }}{{ if or .secretName .configMapName }}true{{ end }}{{ end }}
{{- end }}

{{/*
The settings every platform process runs with: CLUSTER_ENV of infra/cluster/topology.py (and
docker-compose.yml's x-app environment), with the addresses and secrets of the values.
*/}}
{{- define "lambda-platform.env" -}}
- name: HOME
  value: /tmp
- name: LAMBDA_DATA_DIR
  value: /data
- name: LAMBDA_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrapServers" .Values.kafka.bootstrapServers | quote }}
- name: LAMBDA_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | quote }}
- name: LAMBDA_MIN_INSYNC_REPLICAS
  value: {{ .Values.kafka.minInsyncReplicas | quote }}
{{- with .Values.kafka.security }}
- name: LAMBDA_KAFKA_SECURITY_PROTOCOL
  value: {{ .securityProtocol | quote }}
{{- if .saslMechanism }}
- name: LAMBDA_KAFKA_SASL_MECHANISM
  value: {{ .saslMechanism | quote }}
- name: LAMBDA_KAFKA_SASL_PLAIN_USERNAME
  {{- include "lambda-platform.secretRef" (list .existingSecret .usernameKey "kafka.security.existingSecret") | nindent 2 }}
- name: LAMBDA_KAFKA_SASL_PLAIN_PASSWORD
  {{- include "lambda-platform.secretRef" (list .existingSecret .passwordKey "kafka.security.existingSecret") | nindent 2 }}
{{- end }}
{{- end }}
{{- if include "lambda-platform.kafkaCaMounted" . }}
- name: LAMBDA_KAFKA_SSL_CAFILE
  value: {{ printf "/etc/lambda/kafka-ca/%s" .Values.kafka.security.caFile.key | quote }}
{{- end }}
- name: LAMBDA_SPARK_MASTER
  value: {{ required "spark.master" .Values.spark.master | quote }}
- name: LAMBDA_SPARK_S3A_JARS
  value: {{ .Values.spark.s3aJars | quote }}
- name: LAMBDA_STORAGE_URL
  value: {{ printf "s3://%s/%s" (required "s3.bucket" .Values.s3.bucket) .Values.s3.prefix | trimSuffix "/" | quote }}
{{- if .Values.s3.endpoint }}
- name: LAMBDA_S3_ENDPOINT
  value: {{ .Values.s3.endpoint | quote }}
{{- end }}
- name: LAMBDA_S3_REGION
  value: {{ .Values.s3.region | quote }}
- name: AWS_ACCESS_KEY_ID
  {{- include "lambda-platform.secretRef" (list .Values.s3.existingSecret .Values.s3.accessKeyKey "s3.existingSecret") | nindent 2 }}
- name: AWS_SECRET_ACCESS_KEY
  {{- include "lambda-platform.secretRef" (list .Values.s3.existingSecret .Values.s3.secretKeyKey "s3.existingSecret") | nindent 2 }}
- name: LAMBDA_SPEED_METRICS_HOST
  value: "0.0.0.0"
- name: LAMBDA_SPEED_METRICS_PORT
  value: {{ .Values.speed.metricsPort | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Airflow's components (and its schema Job): HOST_ENV["airflow"] of the topology. Variables set
here win over the ones `lambda-platform airflow` derives (infra/airflow_env.py).
*/}}
{{/* The speed store's URL for a service's own PostgreSQL role (infra/db_roles.py): takes
(list $ "speed"|"batch"|"serving"). */}}
{{- define "lambda-platform.storeUrl" -}}
{{- $root := index . 0 }}
{{- $key := index $root.Values.postgres.storeUrlKeys (index . 1) }}
- name: LAMBDA_SPEED_STORE_URL
  {{- include "lambda-platform.secretRef" (list $root.Values.postgres.existingSecret $key "postgres.existingSecret") | nindent 2 }}
{{- end }}

{{- define "lambda-platform.airflowEnv" -}}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  {{- include "lambda-platform.secretRef" (list .Values.postgres.existingSecret .Values.postgres.airflowDbUrlKey "postgres.existingSecret") | nindent 2 }}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC
  {{- include "lambda-platform.secretRef" (list .Values.postgres.existingSecret .Values.postgres.airflowDbUrlAsyncKey "postgres.existingSecret") | nindent 2 }}
- name: AIRFLOW__API__HOST
  value: "0.0.0.0"
- name: AIRFLOW__API__PORT
  value: {{ .Values.airflow.apiServer.port | quote }}
- name: AIRFLOW__API__BASE_URL
  value: {{ default (include "lambda-platform.airflowApiUrl" .) .Values.airflow.baseUrl | quote }}
- name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL
  value: {{ printf "%s/execution/" (include "lambda-platform.airflowApiUrl" .) | quote }}
{{- /* Task instances record the pod's IP, where the api-server fetches their logs. */}}
- name: AIRFLOW__CORE__HOSTNAME_CALLABLE
  value: airflow.utils.net.get_host_ip_address
{{- if .Values.airflow.passwordsFileKey }}
- name: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE
  value: /etc/lambda/airflow/passwords.json
{{- end }}
{{- /* spark-submit runs in the scheduler (LocalExecutor): the executors reach its pod. */}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: LAMBDA_SPARK_DRIVER_HOST
  value: $(POD_IP)
{{- end }}

{{/* A container's securityContext, image and the data, tmp and CA mounts. */}}
{{- define "lambda-platform.containerBase" -}}
image: {{ include "lambda-platform.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
volumeMounts:
  - name: data
    mountPath: /data
  - name: tmp
    mountPath: /tmp
{{- if include "lambda-platform.kafkaCaMounted" . }}
  - name: kafka-ca
    mountPath: /etc/lambda/kafka-ca
    readOnly: true
{{- end }}
{{- end }}

{{/* The passwords file's mount, for an Airflow container when airflow.passwordsFileKey is set. */}}
{{- define "lambda-platform.airflowMounts" -}}
- name: airflow-passwords
  mountPath: /etc/lambda/airflow
  readOnly: true
{{- end }}

{{/* The pod-level part every pod shares: security, scheduling, volumes. Takes
(dict "ctx" $ "airflow" bool "jwt" bool): Airflow pods also get the passwords file, the
api-server's and the scheduler's the JWT secret as a file. */}}
{{- define "lambda-platform.podBase" -}}
{{- $airflow := .airflow }}
{{- $jwt := .jwt }}
{{- with .ctx -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
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
volumes:
  - name: data
    emptyDir:
      sizeLimit: {{ .Values.dataVolume.sizeLimit }}
  - name: tmp
    emptyDir:
      sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- with .Values.kafka.security.caFile }}
{{- if .secretName }}
  - name: kafka-ca
    secret:
      secretName: {{ .secretName }}
      items:
        - {key: {{ .key | quote }}, path: {{ .key | quote }}}
{{- else if .configMapName }}
  - name: kafka-ca
    configMap:
      name: {{ .configMapName }}
      items:
        - {key: {{ .key | quote }}, path: {{ .key | quote }}}
{{- end }}
{{- end }}
{{- if $jwt }}
  {{- /* Only the api-server and the scheduler sign or check Airflow's tokens. */}}
  - name: airflow-jwt
    secret:
      secretName: {{ .Values.airflow.existingSecret }}
      items:
        - {key: {{ .Values.airflow.jwtSecretKey | quote }}, path: jwt-secret}
{{- end }}
{{- if and $airflow .Values.airflow.passwordsFileKey }}
  - name: airflow-passwords
    secret:
      secretName: {{ .Values.airflow.existingSecret }}
      items:
        - {key: {{ .Values.airflow.passwordsFileKey | quote }}, path: passwords.json}
{{- end }}
{{- end }}
{{- end }}

{{/* A probe's timing fields (everything but the path). */}}
{{- define "lambda-platform.probeTiming" -}}
{{- toYaml (omit . "path") }}
{{- end }}
