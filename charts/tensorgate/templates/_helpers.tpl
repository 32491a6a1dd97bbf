{{/* Chart name, overridable. */}}
{{- define "tensorgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full object name: "<release>-<chart>", or the release name when it already has it. */}}
{{- define "tensorgate.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "tensorgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator pods; never change them after the first release. */}}
{{- define "tensorgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tensorgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Standard labels on every object. */}}
{{- define "tensorgate.labels" -}}
helm.sh/chart: {{ include "tensorgate.chart" . }}
{{ include "tensorgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tensorgate
{{- end -}}

{{- define "tensorgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tensorgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "tensorgate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the operator runs with kopf peering (several replicas, or asked for). */}}
{{- define "tensorgate.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{- define "tensorgate.peeringName" -}}
{{- default (include "tensorgate.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/* Refuse value combinations that cannot work, with the fix in the message. */}}
{{- define "tensorgate.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) -}}
{{- fail "replicaCount > 1 needs kopf peering: set peering.enabled=true (it also installs kopf's peering CRDs)" -}}
{{- end -}}
{{- if and (eq .Values.rbac.scope "namespace") (not .Values.watchNamespaces) -}}
{{- fail "rbac.scope=namespace needs watchNamespaces: list the namespaces the operator may act in" -}}
{{- end -}}
{{- end -}}

{{/*
The rules the operator needs in every namespace it serves: exactly the calls it makes.
Peering rules are added by the callers (their scope depends on watchNamespaces).
*/}}
{{- define "tensorgate.rules" -}}
# kopf lists and watches ModelDeployments (the watch drives every object); the operator
# re-reads one (get) before each decision. Nothing writes the object itself: no kopf
# annotations, no finalizer, and commands are acknowledged in status.
- apiGroups: ["tensorgate.dev"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch"]
# The status is written after every decision through the status subresource.
- apiGroups: ["tensorgate.dev"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
{{- if .Values.rbac.ownerReferencesPermissionEnforcement }}
# Owned objects carry blockOwnerDeletion: the OwnerReferencesPermissionEnforcement admission
# plugin demands update on the owner's finalizers for that.
- apiGroups: ["tensorgate.dev"]
  resources: ["modeldeployments/finalizers"]
  verbs: ["update"]
{{- end }}
# One TF Serving Deployment per track (stable, canary): applied, observed, canary deleted.
# list/watch: the operator's informer of its children (observations cost no requests).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The user-facing and per-track Services; the replica router patches the selector.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The serving ConfigMap (model config, monitoring); golden sets referenced by configMapRef.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
# Pods of a track, to report why they do not schedule and which are Ready (informer).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Ready endpoints of a track, which smoke inference and the golden set are sent to.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
{{- if .Values.rbac.goldenSetSecrets }}
# Secrets named by spec.goldenSet.credentialsSecret: keys for s3:// and gs:// golden sets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
# kopf posts Events (core/v1; POST only, never updated).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rbac.gatewayAPI }}
# Weighted routing with the Gateway API router.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "create", "patch"]
{{- end }}
{{- end -}}

{{/* kopf peering: list+watch the peering objects, patch only ours (keep-alives). */}}
{{- define "tensorgate.peeringRules" -}}
{{- $resource := ternary "clusterkopfpeerings" "kopfpeerings" (empty .Values.watchNamespaces) -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ $resource | quote }}]
  verbs: ["list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ $resource | quote }}]
  resourceNames: [{{ include "tensorgate.peeringName" . | quote }}]
  verbs: ["patch"]
{{- end -}}
