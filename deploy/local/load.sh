#!/usr/bin/env bash
# make load: the pipeline at speed, on a fresh broker, Redis and SMTP server
# of its own (their own ports, data under .local/load-infra, removed
# afterwards, so what `make test` left on the shared broker does not slow
# it), the services built for release, then tests/load
# (target/release/whistle-load). LOAD_BROKERS="tansu nisshi" runs it once on
# each broker, one after the other. The services' config and logs stay under
# .local/load/<run>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$WHISTLE_ROOT"

export WHISTLE_DATA=$WHISTLE_ROOT/.local/load-infra
export KAFKA_PORT=${LOAD_KAFKA_PORT:-19092} REDIS_PORT=${LOAD_REDIS_PORT:-16379} SMTP_PORT=${LOAD_SMTP_PORT:-12525}
export SMTP_MAILDIR=$WHISTLE_DATA/mail

log "building the services for release"
cargo build --release --bins

fresh() {
  deploy/local/infra.sh stop >/dev/null 2>&1 || true
  rm -rf "$WHISTLE_DATA"
}
trap fresh EXIT
for broker in ${LOAD_BROKERS:-$WHISTLE_BROKER}; do
  export WHISTLE_BROKER=$broker
  # nisshi answers a fetch as soon as it has data, so a long wait costs no
  # latency and saves idle fetches; Tansu holds every fetch, so keep it short.
  if [ "$broker" = nisshi ]; then export WHISTLE__KAFKA__FETCH_WAIT_MS=${LOAD_FETCH_WAIT_MS:-500}; else export WHISTLE__KAFKA__FETCH_WAIT_MS=${LOAD_FETCH_WAIT_MS:-100}; fi
  fresh
  deploy/local/infra.sh start
  target/release/whistle-load
done
