#!/usr/bin/env bash
# make chaos: the platform under faults (tests/chaos, target/release/whistle-chaos)
# on a fresh broker, Redis and SMTP server of its own (their own ports, data
# under .local/chaos-infra, removed afterwards), the services built for
# release. The services' config and logs stay under .local/chaos/<run>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$WHISTLE_ROOT"

export WHISTLE_DATA=$WHISTLE_ROOT/.local/chaos-infra
export KAFKA_PORT=${CHAOS_KAFKA_PORT:-19192} REDIS_PORT=${CHAOS_REDIS_PORT:-16479} SMTP_PORT=${CHAOS_SMTP_PORT:-12625}
export SMTP_MAILDIR=$WHISTLE_DATA/mail
if [ "$WHISTLE_BROKER" = nisshi ]; then export WHISTLE__KAFKA__FETCH_WAIT_MS=${CHAOS_FETCH_WAIT_MS:-500}; else export WHISTLE__KAFKA__FETCH_WAIT_MS=${CHAOS_FETCH_WAIT_MS:-100}; fi

log "building the services for release"
cargo build --release --bins

fresh() {
  deploy/local/infra.sh stop >/dev/null 2>&1 || true
  # The broker's and Redis's logs stay beside the services'.
  if [ -d "$WHISTLE_DATA/logs" ]; then mkdir -p .local/chaos && cp -r "$WHISTLE_DATA/logs" ".local/chaos/infra-logs-$(date +%s)"; fi
  rm -rf "$WHISTLE_DATA"
}
trap fresh EXIT
fresh
deploy/local/infra.sh start
target/release/whistle-chaos
