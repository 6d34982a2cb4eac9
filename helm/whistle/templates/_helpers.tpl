{{- define "whistle.name" -}}{{ .Release.Name }}{{- end -}}

{{- define "whistle.labels" -}}
app.kubernetes.io/name: whistle
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The pod spec shared by every service: (root, binary, args, resources). */}}
{{- define "whistle.pod" -}}
{{- $root := index . 0 -}}
{{- $bin := index . 1 -}}
{{- $args := index . 2 -}}
{{- $resources := index . 3 -}}
containers:
  - name: {{ $bin }}
    image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag }}"
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: ["/usr/local/bin/{{ $bin }}"]
    args: {{ toJson $args }}
    env:
      - { name: WHISTLE_CONFIG, value: /etc/whistle/whistle.toml }
      - { name: WHISTLE__KAFKA__BROKERS, value: {{ $root.Values.kafka.brokers | quote }} }
      - { name: WHISTLE__KAFKA__REPLICATION, value: {{ $root.Values.kafka.replication | quote }} }
      - { name: WHISTLE__KAFKA__CREATE_TOPICS, value: {{ $root.Values.kafka.createTopics | quote }} }
      - { name: WHISTLE__REDIS__URL, value: {{ $root.Values.redis.url | quote }} }
      - { name: WHISTLE__TELEMETRY__OTLP_ENDPOINT, value: {{ $root.Values.telemetry.otlpEndpoint | quote }} }
      - { name: RUST_LOG, value: {{ $root.Values.logLevel | quote }} }
      # Inside a pod every server listens on all interfaces.
      - { name: WHISTLE__INTAKE__LISTEN, value: "0.0.0.0:50051" }
      - { name: WHISTLE__INTAKE__HTTP_LISTEN, value: "0.0.0.0:8031" }
      - { name: WHISTLE__DISPATCHER__LISTEN, value: "0.0.0.0:50052" }
      - { name: WHISTLE__REVISIT__LISTEN, value: "0.0.0.0:50056" }
      - { name: WHISTLE__REVISIT__HTTP_LISTEN, value: "0.0.0.0:8026" }
      - { name: WHISTLE__CITY__FILE, value: /etc/whistle/city/city.toml }
    {{- if $root.Values.existingSecret }}
    envFrom:
      - secretRef: { name: {{ $root.Values.existingSecret }} }
    {{- end }}
    resources: {{ toJson $resources }}
    volumeMounts:
      - { name: config, mountPath: /etc/whistle/whistle.toml, subPath: whistle.toml }
      - { name: city, mountPath: /etc/whistle/city }
volumes:
  - name: config
    configMap: { name: {{ include "whistle.name" $root }}-config }
  - name: city
    configMap: { name: {{ $root.Values.city.existingConfigMap | default (printf "%s-city" (include "whistle.name" $root)) }} }
terminationGracePeriodSeconds: 30
{{- end -}}
