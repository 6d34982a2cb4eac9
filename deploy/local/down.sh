#!/usr/bin/env bash
# Stops the services started by up.sh, then the broker and Redis.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
for name in console revisit notifier sla-timer dispatcher-xinjiekou dispatcher-xicheng dispatcher-city classifier intake webhook-sink; do
  f=$WHISTLE_DATA/$name.pid
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    log "$name stopped"
  fi
  rm -f "$f"
done
"$WHISTLE_ROOT/deploy/local/infra.sh" stop
