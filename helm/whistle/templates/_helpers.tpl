{{- define "whistle.name" -}}{{ .Release.Name }}{{- end -}}

{{- define "whistle.labels" -}}
app.kubernetes.io/name: whistle
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The selector of one component: (root, component). */}}
{{- define "whistle.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
Every service as a Deployment, with its PodDisruptionBudget:
(root, component, binary, args, values, config section, gRPC port or 0, HTTP port or 0).
*/}}
{{- define "whistle.deployment" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $bin := index . 2 -}}
{{- $args := index . 3 -}}
{{- $values := index . 4 -}}
{{- $section := index . 5 -}}
{{- $grpc := index . 6 -}}
{{- $http := index . 7 -}}
{{- $extraEnv := index . 8 -}}
{{- $resources := $values.resources | default $root.Values.resources -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "whistle.name" $root }}-{{ $component }}
  labels:
    {{- include "whistle.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  {{- /* The scaler owns a consumer's replicas; the console consumes nothing and keeps its own. */}}
  {{- if or (not $root.Values.autoscaling.enabled) (eq $component "console") }}
  replicas: {{ $values.replicas | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "whistle.selector" (list $root $component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "whistle.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
      annotations:
        checksum/config: {{ $root.Values.config | sha256sum }}
        checksum/city: {{ $root.Values.city.file | sha256sum }}
        prometheus.io/scrape: "true"
        prometheus.io/port: "9090"
        prometheus.io/path: /metrics
    spec:
      automountServiceAccountToken: false
      securityContext: {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ $component }}
          image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag }}"
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["/usr/local/bin/{{ $bin }}"]
          args: {{ toJson $args }}
          env:
            - { name: WHISTLE_CONFIG, value: /etc/whistle/whistle.toml }
            - { name: WHISTLE__DEPLOYMENT__PROFILE, value: production }
            - { name: WHISTLE__KAFKA__BROKERS, value: {{ $root.Values.kafka.brokers | quote }} }
            - { name: WHISTLE__KAFKA__REPLICATION, value: {{ $root.Values.kafka.replication | quote }} }
            - { name: WHISTLE__KAFKA__CREATE_TOPICS, value: {{ $root.Values.kafka.createTopics | quote }} }
            - { name: WHISTLE__REDIS__URL, value: {{ $root.Values.redis.url | quote }} }
            {{- with $root.Values.redis.clusterNodes }}
            - { name: WHISTLE__REDIS__CLUSTER_NODES, value: {{ toJson . | quote }} }
            {{- end }}
            - { name: WHISTLE__TELEMETRY__OTLP_ENDPOINT, value: {{ $root.Values.telemetry.otlpEndpoint | quote }} }
            - { name: RUST_LOG, value: {{ $root.Values.logLevel | quote }} }
            - { name: WHISTLE__CITY__FILE, value: /etc/whistle/city/city.toml }
            - { name: WHISTLE__KAFKA__READY_MAX_LAG, value: {{ $values.readyMaxLag | default $root.Values.readyMaxLag | int64 | quote }} }
            # Inside a pod every server listens on all interfaces.
            - { name: WHISTLE__{{ $section }}__OPS_LISTEN, value: "0.0.0.0:9090" }
            {{- if $grpc }}
            - { name: WHISTLE__{{ $section }}__LISTEN, value: "0.0.0.0:{{ $grpc }}" }
            {{- end }}
            {{- if $http }}
            - { name: WHISTLE__{{ $section }}__HTTP_LISTEN, value: "0.0.0.0:{{ $http }}" }
            {{- end }}
            {{- range $e := $extraEnv }}
            - { name: {{ $e.name }}, value: {{ $e.value | quote }} }
            {{- end }}
          envFrom:
            - secretRef: { name: {{ $root.Values.existingSecret | quote }} }
          ports:
            - { name: metrics, containerPort: 9090, protocol: TCP }
            {{- if $grpc }}
            - { name: grpc, containerPort: {{ $grpc }}, protocol: TCP }
            {{- end }}
            {{- if $http }}
            - { name: http, containerPort: {{ $http }}, protocol: TCP }
            {{- end }}
          startupProbe:
            httpGet: { path: /healthz, port: metrics }
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet: { path: /healthz, port: metrics }
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: { path: /readyz, port: metrics }
            periodSeconds: 5
            failureThreshold: 2
          resources: {{- toYaml $resources | nindent 12 }}
          securityContext: {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - { name: config, mountPath: /etc/whistle/whistle.toml, subPath: whistle.toml, readOnly: true }
            - { name: city, mountPath: /etc/whistle/city, readOnly: true }
            - { name: tmp, mountPath: /tmp }
      volumes:
        - name: config
          configMap: { name: {{ include "whistle.name" $root }}-config }
        - name: city
          configMap: { name: {{ $root.Values.city.existingConfigMap | default (printf "%s-city" (include "whistle.name" $root)) }} }
        - name: tmp
          emptyDir: { sizeLimit: 64Mi }
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "whistle.name" $root }}-{{ $component }}
  labels:
    {{- include "whistle.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  maxUnavailable: {{ $root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "whistle.selector" (list $root $component) | nindent 6 }}
{{- end -}}

{{/*
Scaling on consumer lag (KEDA's Kafka scaler): (root, component, values, groups).
*/}}
{{- define "whistle.scaledobject" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $values := index . 2 -}}
{{- $groups := index . 3 -}}
{{- $a := $root.Values.autoscaling -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "whistle.name" $root }}-{{ $component }}
  labels:
    {{- include "whistle.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  scaleTargetRef:
    name: {{ include "whistle.name" $root }}-{{ $component }}
  minReplicaCount: {{ $a.minReplicas }}
  # A consumer group has no use for more members than partitions.
  maxReplicaCount: {{ min ($values.maxReplicas | default $root.Values.kafka.partitions) $root.Values.kafka.partitions }}
  pollingInterval: {{ $a.pollingInterval }}
  cooldownPeriod: {{ $a.cooldownPeriod }}
  triggers:
    {{- range $g := $groups }}
    - type: kafka
      metadata:
        bootstrapServers: {{ $root.Values.kafka.brokers | quote }}
        consumerGroup: {{ index $g 0 | quote }}
        topic: {{ index $g 1 | quote }}
        lagThreshold: {{ $a.lagThreshold | quote }}
        offsetResetPolicy: earliest
    {{- end }}
{{- end -}}
