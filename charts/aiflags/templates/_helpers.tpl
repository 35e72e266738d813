{{/* Names and labels shared by every template. */}}

{{- define "aiflags.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aiflags.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aiflags.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aiflags.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aiflags.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "aiflags.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aiflags
{{- end -}}

{{- define "aiflags.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aiflags.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aiflags.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{- define "aiflags.proxyImage" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (default .Chart.AppVersion .Values.proxy.image.tag) -}}
{{- end -}}

{{- define "aiflags.webhookService" -}}
{{- printf "%s-webhook" (include "aiflags.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aiflags.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "aiflags.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespaces never injected: the configured ones and the operator's own. */}}
{{- define "aiflags.excludedNamespaces" -}}
{{- concat .Values.webhook.excludedNamespaces (list .Release.Namespace) | uniq | toJson -}}
{{- end -}}
