{{/* Names: <release>-devopstic unless the release name already says devopstic. */}}
{{- define "devopstic.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "devopstic.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "devopstic.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: devopstic
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include "devopstic.selector" (list . "ingest") */}}
{{- define "devopstic.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "devopstic.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "devopstic.secretName" -}}
{{- default (include "devopstic.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
The chart's Secret as the NATS chart's values name it (values.yaml, nats.container.env): from the
release name alone, since those values are evaluated in the NATS chart, which sees the release
but not this chart's values. It is devopstic.fullname without fullnameOverride and nameOverride;
secret.yaml fails when the Secret has another name and those values do not say it.
*/}}
{{- define "devopstic.releaseSecretName" -}}
{{- if contains "devopstic" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-devopstic" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "devopstic.image" -}}
{{- $ := index . 0 -}}
{{- printf "%s/%s:%s" $.Values.image.registry (index . 1) (default $.Chart.AppVersion $.Values.image.tag) -}}
{{- end -}}

{{/*
The NATS URL: natsUrl, or the NATS chart's client service. That chart names its objects like
this chart does: <release>-nats, or the release name when it already contains "nats", or its
fullnameOverride.
*/}}
{{- define "devopstic.natsUrl" -}}
{{- if .Values.natsUrl -}}
{{- .Values.natsUrl -}}
{{- else -}}
{{- $svc := "" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- $svc = .Values.nats.fullnameOverride -}}
{{- else if contains "nats" .Release.Name -}}
{{- $svc = .Release.Name -}}
{{- else -}}
{{- $svc = printf "%s-nats" .Release.Name -}}
{{- end -}}
{{- printf "nats://%s:4222" ($svc | trunc 63 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{/* A secret key as an env var's valueFrom: include "devopstic.secretEnv" (list . "NAME" "key") */}}
{{- define "devopstic.secretEnv" -}}
{{- $ := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "devopstic.secretName" $ }}
      key: {{ index . 2 }}
{{- end -}}

{{/* The database settings every DevOpstic container gets; the password from the Secret. */}}
{{- define "devopstic.databaseEnv" -}}
- name: DEVOPSTIC_DATABASE_HOST
  value: {{ required "database.host is required: the address of your Postgres" .Values.database.host | quote }}
- name: DEVOPSTIC_DATABASE_PORT
  value: {{ .Values.database.port | quote }}
- name: DEVOPSTIC_DATABASE_NAME
  value: {{ .Values.database.name | quote }}
- name: DEVOPSTIC_DATABASE_USERNAME
  value: {{ .Values.database.username | quote }}
- name: DEVOPSTIC_DATABASE_SSLMODE
  value: {{ .Values.database.sslmode | quote }}
- name: DEVOPSTIC_DATABASE_MAX_CONNS
  value: {{ .Values.database.maxConns | quote }}
{{ include "devopstic.secretEnv" (list . "DEVOPSTIC_DATABASE_PASSWORD" "database-password") }}
{{- end -}}

{{- define "devopstic.natsEnv" -}}
- name: DEVOPSTIC_NATS_URL
  value: {{ include "devopstic.natsUrl" . | quote }}
- name: DEVOPSTIC_STREAM_REPLICAS
  value: {{ .Values.stream.replicas | quote }}
- name: DEVOPSTIC_STREAM_MAX_AGE
  value: {{ .Values.stream.maxAge | quote }}
- name: DEVOPSTIC_STREAM_DUPLICATE_WINDOW
  value: {{ .Values.stream.duplicateWindow | quote }}
{{- end -}}

{{/*
A role's NATS login, its user and its password (key nats-<role>-password of the Secret):
include "devopstic.natsLogin" (list . "ingest"). NATS requires them; each role may do only its
part (deployments/nats/README.md).
*/}}
{{- define "devopstic.natsLogin" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
- name: DEVOPSTIC_NATS_USER
  value: {{ printf "devopstic-%s" $role | quote }}
{{ include "devopstic.secretEnv" (list $ "DEVOPSTIC_NATS_PASSWORD" (printf "nats-%s-password" $role)) }}
{{- end -}}

{{/* env: a map of extra variables, rendered as a list. */}}
{{- define "devopstic.extraEnv" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end -}}
{{- end -}}

{{/* What every pod spec of the chart shares: pull secrets, the service account, the security context. */}}
{{- define "devopstic.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "devopstic.fullname" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
