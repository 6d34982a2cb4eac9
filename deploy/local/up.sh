#!/usr/bin/env bash
# Starts the whole platform on this machine: installs what is missing, starts
# the broker and Redis, builds and starts every service in the background
# (logs and pids under .local/), and says where each listens.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$WHISTLE_ROOT"

"$WHISTLE_ROOT/deploy/local/install.sh"
"$WHISTLE_ROOT/deploy/local/infra.sh" start

log "building the services"
cargo build --quiet --bins

export WHISTLE_CONFIG=${WHISTLE_CONFIG:-$WHISTLE_ROOT/deploy/local/whistle.toml}
export WHISTLE__KAFKA__BROKERS=${WHISTLE__KAFKA__BROKERS:-$KAFKA_HOST:$KAFKA_PORT}
export WHISTLE__REDIS__URL=${WHISTLE__REDIS__URL:-redis://$REDIS_HOST:$REDIS_PORT/0}
mkdir -p "$WHISTLE_DATA/logs"

start() { # name, command...
  local name=$1; shift
  local pidfile=$WHISTLE_DATA/$name.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$name already running (pid $(cat "$pidfile"))"
    return
  fi
  nohup "$@" >>"$WHISTLE_DATA/logs/$name.log" 2>&1 &
  echo $! >"$pidfile"
}

start webhook-sink python3 deploy/local/webhook_sink.py --port 8025
start intake target/debug/whistle-intake
start classifier target/debug/whistle-classifier
start dispatcher-city target/debug/whistle-dispatcher --platform city
WHISTLE__DISPATCHER__LISTEN=127.0.0.1:50053 WHISTLE__DISPATCHER__OPS_LISTEN=127.0.0.1:9187 start dispatcher-xicheng target/debug/whistle-dispatcher --platform county:xicheng
WHISTLE__DISPATCHER__LISTEN=127.0.0.1:50054 WHISTLE__DISPATCHER__OPS_LISTEN=127.0.0.1:9188 start dispatcher-xinjiekou target/debug/whistle-dispatcher --platform street:xc-xinjiekou
start sla-timer target/debug/whistle-sla-timer
start notifier target/debug/whistle-notifier
start revisit target/debug/whistle-revisit
start console target/debug/whistle-console

wait_port 127.0.0.1 50051 60 intake
wait_port 127.0.0.1 8031 60 "intake (Open311)"
wait_port 127.0.0.1 50052 60 dispatcher
wait_port 127.0.0.1 50053 60 "county:xicheng dispatcher"
wait_port 127.0.0.1 50054 60 "street:xc-xinjiekou dispatcher"
wait_port 127.0.0.1 50056 60 revisit
wait_port 127.0.0.1 50057 60 "classifier (preview)"
wait_port 127.0.0.1 8040 60 console
# Each service's metrics, health and readiness port.
OPS_PORTS=(intake:9181 classifier:9182 dispatcher-city:9183 sla-timer:9184 notifier:9185 revisit:9186 dispatcher-xicheng:9187 dispatcher-xinjiekou:9188 console:9189)
for entry in "${OPS_PORTS[@]}"; do
  wait_port 127.0.0.1 "${entry#*:}" 60 "${entry%%:*} (metrics)"
done
sleep 1
for name in intake classifier dispatcher-city dispatcher-xicheng dispatcher-xinjiekou sla-timer notifier revisit console; do
  kill -0 "$(cat "$WHISTLE_DATA/$name.pid")" 2>/dev/null || die "$name exited; see $WHISTLE_DATA/logs/$name.log"
done

cat <<INFO

Whistle is running.
  console (web)       http://127.0.0.1:8040   sign in with a demo token:
                        city desk demo-city-desk, district demo-county-xicheng,
                        street demo-street-xc-xinjiekou, units demo-<unit code>
                        (demo-city-water, demo-xicheng-environment, demo-xc-xinjiekou-office),
                        the hotline agent's intake desk demo-agent
  broker (Tansu)      $KAFKA_HOST:$KAFKA_PORT   data: $WHISTLE_DATA/tansu
  redis               $REDIS_HOST:$REDIS_PORT   data: $WHISTLE_DATA/redis
  intake (gRPC)       127.0.0.1:50051
  Open311 GeoReport v2 http://127.0.0.1:8031/open311/v2   (demo key: demo-open311-key)
  tracking page       http://127.0.0.1:8031/track
  city desk (gRPC)    127.0.0.1:50052
  county:xicheng desk 127.0.0.1:50053   street:xc-xinjiekou desk 127.0.0.1:50054
  revisit (gRPC)      127.0.0.1:50056   citizens' answers (HTTP) 127.0.0.1:8026
  classifier preview  127.0.0.1:50057 (gRPC)
  sla-timer, notifier: Kafka consumers
  webhook + SMS sink  127.0.0.1:8025   messages: $WHISTLE_DATA/logs/webhook-sink.log
  SMTP (aiosmtpd)     $SMTP_HOST:$SMTP_PORT   mail: $SMTP_MAILDIR
  logs                $WHISTLE_DATA/logs/
$(for entry in "${OPS_PORTS[@]}"; do printf '  %-19s metrics http://127.0.0.1:%s/metrics   (/healthz, /readyz)\n' "${entry%%:*}" "${entry#*:}"; done)
  gRPC health and reflection on every gRPC port: grpcurl -plaintext 127.0.0.1:50051 list

Submit a request and follow it:
  target/debug/whistlectl submit "楼上漏水，已经三天了" --address "东城区景山街道3号楼" --phone 13800138000
  WHISTLE_TOKEN=demo-agent target/debug/whistlectl ticket <ticket number>   # or --phone 13800138000, as the citizen
  WHISTLE_TOKEN=demo-city-water target/debug/whistlectl complete <ticket number> --result "已更换水管"
  tail -f $WHISTLE_DATA/logs/webhook-sink.log

Revisit it the next working day (agents hold agent:<id> tokens), or answer as the citizen by SMS:
  WHISTLE_TOKEN=demo-agent target/debug/whistlectl revisits --all
  WHISTLE_TOKEN=demo-agent target/debug/whistlectl revisit <ticket number> unsatisfied --reason "还在漏水"
  curl -s -H 'Authorization: Bearer local-demo-sms-reply' -d '{"from": "13800138000", "text": "1"}' http://127.0.0.1:8026/sms/reply
  WHISTLE_TOKEN=demo-city-desk target/debug/whistlectl figures --from 2026-11-01 --to 2026-12-01 --scope units

A noise complaint in Xinjiekou starts at that street's desk:
  target/debug/whistlectl submit "晚上施工噪音扰民" --address "西城区新街口"
  WHISTLE_DESK=http://127.0.0.1:50054 WHISTLE_TOKEN=demo-street-xc-xinjiekou target/debug/whistlectl queue
  WHISTLE_DESK=http://127.0.0.1:50054 WHISTLE_TOKEN=demo-street-xc-xinjiekou target/debug/whistlectl whistle <ticket number> --reason "需要区里协调"

Submit and follow a request over Open311 (JSON or XML by the extension):
  curl -s http://127.0.0.1:8031/open311/v2/services.json
  curl -s -d api_key=demo-open311-key -d service_code=water -d address_string="东城区景山街道3号楼" -d phone=13800138000 -d description="楼道水管漏水" http://127.0.0.1:8031/open311/v2/requests.json
  curl -s http://127.0.0.1:8031/open311/v2/requests/<service_request_id>.xml
  in a browser: http://127.0.0.1:8031/track/<service_request_id>?phone=8000

A request the classifier is unsure of waits on the city desk's triage queue until an operator corrects it:
  target/debug/whistlectl submit "喂，那个事你们到底管不管"
  WHISTLE_TOKEN=demo-city-desk target/debug/whistlectl queue
  WHISTLE_TOKEN=demo-city-desk target/debug/whistlectl reclassify <ticket number> --category water --street dc-jingshan --reason "楼道水管漏水"

Classify requests offline, as the service would (one JSON object a line):
  echo '{"id": 1, "text": "엘리베이터에 갇혔어요", "address": "차오양구 왕징"}' | target/debug/whistle-classifier classify --json

Stop it with: make stop
INFO
