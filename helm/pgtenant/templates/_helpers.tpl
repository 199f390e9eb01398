{{/*
Helpers. Every helper takes a context with .Values (this chart's values) and
.Release, so an application chart that has pgtenant as a dependency can call the
sidecar helpers with (dict "Values" .Values.pgtenant "Release" .Release).
*/}}

{{/* The image tag used when image.tag is empty: keep equal to Chart.yaml appVersion (a test checks). */}}
{{- define "pgtenant.defaultTag" -}}0.1.0{{- end -}}

{{- define "pgtenant.name" -}}
{{- default "pgtenant" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pgtenant.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "pgtenant" .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pgtenant.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgtenant.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pgtenant.labels" -}}
{{ include "pgtenant.selectorLabels" . }}
app.kubernetes.io/version: {{ include "pgtenant.tag" . | quote }}
app.kubernetes.io/component: proxy
app.kubernetes.io/part-of: pgtenant
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if .Chart }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end -}}

{{- define "pgtenant.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pgtenant.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pgtenant.tag" -}}
{{- default (include "pgtenant.defaultTag" .) .Values.image.tag -}}
{{- end -}}

{{- define "pgtenant.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "pgtenant.tag" .) -}}
{{- end -}}
{{- end -}}

{{/* Name of the environment variable holding region NAME's password. */}}
{{- define "pgtenant.regionPasswordEnv" -}}
{{- printf "PGTENANT_REGION_%s_PASSWORD" (regexReplaceAll "[^A-Za-z0-9]" . "_" | upper) -}}
{{- end -}}

{{/* Name of the environment variable holding region NAME's admin password. */}}
{{- define "pgtenant.regionAdminPasswordEnv" -}}
{{- printf "PGTENANT_REGION_%s_ADMIN_PASSWORD" (regexReplaceAll "[^A-Za-z0-9]" . "_" | upper) -}}
{{- end -}}

{{/*
pgtenant.config renders the proxy's config.yaml: the `config` values plus
listen addresses, spool directory, regions and secret references. It refuses
inline secrets. pgtenant.adminConfig is the same file for the setup Job and
the sealing CronJob, plus each region's admin_password_env: the proxy pods
never get the admin passwords.
*/}}
{{- define "pgtenant.config" -}}
{{- include "pgtenant.renderConfig" (dict "Values" .Values "Release" .Release "admin" false) -}}
{{- end -}}

{{- define "pgtenant.adminConfig" -}}
{{- include "pgtenant.renderConfig" (dict "Values" .Values "Release" .Release "admin" true) -}}
{{- end -}}

{{- define "pgtenant.renderConfig" -}}
{{- $v := .Values -}}
{{- $admin := .admin -}}
{{- $cfg := deepCopy (default (dict) $v.config) -}}
{{- if hasKey $cfg "regions" -}}
{{- fail "pgtenant: set backends under `regions`, not `config.regions`" -}}
{{- end -}}
{{- if hasKey $cfg "admin_listen" -}}
{{- fail "pgtenant: config.admin_listen is set by the chart from ports.admin" -}}
{{- end -}}
{{- $auth := deepCopy (default (dict) $cfg.auth) -}}
{{- range $k := list "hs256_secret" "hs256_secret_env" "hs256_secret_file" "public_keys" "jwks_file" -}}
{{- if hasKey $auth $k -}}
{{- fail (printf "pgtenant: config.auth.%s must not be set: use jwt.hs256Secret / jwt.keysSecret (secrets are never inlined)" $k) -}}
{{- end -}}
{{- end -}}
{{- if $v.jwt.hs256Secret.name -}}
{{- $_ := set $auth "hs256_secret_env" "PGTENANT_JWT_SECRET" -}}
{{- end -}}
{{- if $v.jwt.publicKeyFiles -}}
{{- if not $v.jwt.keysSecret -}}{{- fail "pgtenant: jwt.publicKeyFiles needs jwt.keysSecret" -}}{{- end -}}
{{- $keys := list -}}
{{- range $f := $v.jwt.publicKeyFiles -}}{{- $keys = append $keys (printf "/etc/pgtenant/jwt/%s" $f) -}}{{- end -}}
{{- $_ := set $auth "public_keys" $keys -}}
{{- end -}}
{{- if $v.jwt.jwksFile -}}
{{- if not $v.jwt.keysSecret -}}{{- fail "pgtenant: jwt.jwksFile needs jwt.keysSecret" -}}{{- end -}}
{{- $_ := set $auth "jwks_file" (printf "/etc/pgtenant/jwt/%s" $v.jwt.jwksFile) -}}
{{- end -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- $listen := $cfg.listen -}}
{{- if not $listen -}}
{{- if eq $v.mode "sidecar" -}}
{{- $listen = printf "127.0.0.1:%v" $v.ports.postgres -}}
{{- else -}}
{{- $listen = printf "0.0.0.0:%v" $v.ports.postgres -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- $_ := set $cfg "admin_listen" (printf "0.0.0.0:%v" $v.ports.admin) -}}
{{- $audit := deepCopy (default (dict) $cfg.audit) -}}
{{- range $k := list "spool_dir" "checkpoint_dir" "seal_public_key" "init" -}}
{{- if hasKey $audit $k -}}
{{- fail (printf "pgtenant: config.audit.%s is set by the chart (spool, sealing and init values)" $k) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $audit "spool_dir" "/var/lib/pgtenant/spool" -}}
{{- /* the setup Job creates the audit schema as the admin role; the proxy never holds that role's password */ -}}
{{- if $v.init.enabled -}}{{- $_ := set $audit "init" false -}}{{- end -}}
{{- if $v.sealing.enabled -}}
{{- $_ := set $audit "checkpoint_dir" $v.sealing.checkpoints.mountPath -}}
{{- if $v.sealing.publicKeySecret.name -}}
{{- $_ := set $audit "seal_public_key" (printf "/etc/pgtenant/seal-public/%s" ($v.sealing.publicKeySecret.key | default "seal.pub")) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "audit" $audit -}}
{{- $regions := dict -}}
{{- range $name, $r := $v.regions -}}
{{- if or (hasKey $r "password") (hasKey $r "password_env") (hasKey $r "password_file") -}}
{{- fail (printf "pgtenant: regions.%s: give the password as passwordSecret {name, key}, never inline" $name) -}}
{{- end -}}
{{- if not $r.host -}}{{- fail (printf "pgtenant: regions.%s.host is required" $name) -}}{{- end -}}
{{- if not $r.user -}}{{- fail (printf "pgtenant: regions.%s.user is required" $name) -}}{{- end -}}
{{- if not (and $r.passwordSecret $r.passwordSecret.name) -}}
{{- fail (printf "pgtenant: regions.%s.passwordSecret.name is required" $name) -}}
{{- end -}}
{{- if or (hasKey $r "admin_password") (hasKey $r "admin_password_env") (hasKey $r "admin_password_file") -}}
{{- fail (printf "pgtenant: regions.%s: give the admin password as adminPasswordSecret {name, key}, never inline" $name) -}}
{{- end -}}
{{- if and $r.adminPasswordSecret (not $r.admin_user) -}}
{{- fail (printf "pgtenant: regions.%s.adminPasswordSecret needs regions.%s.admin_user" $name $name) -}}
{{- end -}}
{{- $e := dict "host" $r.host "port" (default 5432 $r.port | int) "user" $r.user "password_env" (include "pgtenant.regionPasswordEnv" $name) -}}
{{- range $k := list "database" "sslmode" "sslrootcert" "connect_timeout" "admin_user" "audit_database" -}}
{{- if index $r $k -}}{{- $_ := set $e $k (index $r $k) -}}{{- end -}}
{{- end -}}
{{- if and $admin $r.adminPasswordSecret $r.adminPasswordSecret.name -}}
{{- $_ := set $e "admin_password_env" (include "pgtenant.regionAdminPasswordEnv" $name) -}}
{{- end -}}
{{- $_ := set $regions $name $e -}}
{{- end -}}
{{- if not $regions -}}
{{- fail "pgtenant: at least one region is required under `regions`" -}}
{{- end -}}
{{- $_ := set $cfg "regions" $regions -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Annotations that roll the pods when the configuration changes. */}}
{{- define "pgtenant.checksumAnnotation" -}}
checksum/pgtenant-config: {{ include "pgtenant.config" . | sha256sum }}
{{- end -}}

{{- define "pgtenant.env" -}}
{{- if .Values.jwt.hs256Secret.name }}
- name: PGTENANT_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.jwt.hs256Secret.name }}
      key: {{ .Values.jwt.hs256Secret.key | default "secret" }}
{{- end }}
{{- range $name, $r := .Values.regions }}
- name: {{ include "pgtenant.regionPasswordEnv" $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $r.passwordSecret.name }}
      key: {{ $r.passwordSecret.key | default "password" }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pgtenant container (one list item). */}}
{{- define "pgtenant.container" -}}
- name: pgtenant
  image: {{ include "pgtenant.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") .Values.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args: ["serve", "--config", "/etc/pgtenant/config.yaml"]
  ports:
    - name: pgtenant-pg
      containerPort: {{ .Values.ports.postgres }}
      protocol: TCP
    - name: pgtenant-admin
      containerPort: {{ .Values.ports.admin }}
      protocol: TCP
  env:
    {{- include "pgtenant.env" . | trim | nindent 4 }}
  startupProbe:
    httpGet:
      path: /healthz
      port: pgtenant-admin
    periodSeconds: {{ .Values.probes.startup.periodSeconds }}
    failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: pgtenant-admin
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: pgtenant-admin
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: pgtenant-config
      mountPath: /etc/pgtenant/config.yaml
      subPath: config.yaml
      readOnly: true
    - name: pgtenant-spool
      mountPath: /var/lib/pgtenant/spool
    {{- if .Values.jwt.keysSecret }}
    - name: pgtenant-jwt
      mountPath: /etc/pgtenant/jwt
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The pod volumes the container mounts (list items). */}}
{{- define "pgtenant.volumes" -}}
- name: pgtenant-config
  configMap:
    name: {{ include "pgtenant.fullname" . }}
- name: pgtenant-spool
  emptyDir:
    {{- if .Values.spool.medium }}
    medium: {{ .Values.spool.medium }}
    {{- end }}
    sizeLimit: {{ .Values.spool.sizeLimit }}
{{- if .Values.jwt.keysSecret }}
- name: pgtenant-jwt
  secret:
    secretName: {{ .Values.jwt.keysSecret }}
    defaultMode: 0440
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Sidecar mode: an application chart that depends on pgtenant (with mode: sidecar)
adds these to its pod template. Call with (dict "Values" .Values.pgtenant "Release" .Release):

  metadata:
    annotations:
      {{- include "pgtenant.sidecarPodAnnotations" $pg | nindent 8 }}
  spec:
    containers:
      {{- include "pgtenant.sidecarContainer" $pg | nindent 6 }}
    volumes:
      {{- include "pgtenant.sidecarVolumes" $pg | nindent 6 }}

The application then connects to 127.0.0.1:<ports.postgres> with its JWT as the password.
With sidecar.native (Kubernetes >= 1.29) put the container under initContainers instead:
it then starts before and stops after the application.
*/}}
{{- define "pgtenant.sidecarContainer" -}}
{{- if ne .Values.mode "sidecar" -}}
{{- fail "pgtenant.sidecarContainer: set pgtenant.mode to sidecar" -}}
{{- end -}}
{{- include "pgtenant.container" . -}}
{{- end -}}

{{- define "pgtenant.sidecarVolumes" -}}
{{- include "pgtenant.volumes" . -}}
{{- end -}}

{{- define "pgtenant.sidecarPodAnnotations" -}}
{{ include "pgtenant.checksumAnnotation" . }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{/*
Environment of the admin Jobs: each region's admin password and, with
withService, the service role's password (setup creates the role with it).
Never the JWT secret.
*/}}
{{- define "pgtenant.adminEnv" -}}
{{- $withService := .withService -}}
{{- range $name, $r := .Values.regions }}
{{- if and $r.adminPasswordSecret $r.adminPasswordSecret.name }}
- name: {{ include "pgtenant.regionAdminPasswordEnv" $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $r.adminPasswordSecret.name }}
      key: {{ $r.adminPasswordSecret.key | default "password" }}
{{- end }}
{{- if $withService }}
- name: {{ include "pgtenant.regionPasswordEnv" $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $r.passwordSecret.name }}
      key: {{ $r.passwordSecret.key | default "password" }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of the admin Jobs' pods (not the proxy's selector labels). */}}
{{- define "pgtenant.adminLabels" -}}
app.kubernetes.io/name: {{ include "pgtenant.name" . }}-admin
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: pgtenant
{{- end -}}
