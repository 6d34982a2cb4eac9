#!/usr/bin/env bash
# Starts, checks or stops the local broker (Tansu, SQLite storage under
# $WHISTLE_DATA/tansu; or, with WHISTLE_BROKER=nisshi, nisshi on SQLite under
# $WHISTLE_DATA/nisshi), redis-server (append-only file under
# $WHISTLE_DATA/redis) and an SMTP server (aiosmtpd, mail under
# $SMTP_MAILDIR), all on loopback. Idempotent: starting twice is fine.
#   infra.sh start | stop | status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

cmd=${1:-start}
mkdir -p "$WHISTLE_DATA/logs" "$WHISTLE_DATA/$WHISTLE_BROKER" "$WHISTLE_DATA/redis"

start_redis() {
  if port_open "$REDIS_HOST" "$REDIS_PORT"; then
    log "redis already listening on $REDIS_HOST:$REDIS_PORT"
    return
  fi
  redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --daemonize yes \
    --dir "$WHISTLE_DATA/redis" --appendonly yes --save "" \
    --pidfile "$WHISTLE_DATA/redis.pid" --logfile "$WHISTLE_DATA/logs/redis.log" >/dev/null
  wait_port "$REDIS_HOST" "$REDIS_PORT" 20 redis
  log "redis started on $REDIS_HOST:$REDIS_PORT"
}

# start_broker NAME BINARY ENGINE [ARG...]: the broker NAME, its data under
# $WHISTLE_DATA/NAME, its log and pid beside the others'.
start_broker() {
  local name=$1 bin=$2 engine=$3
  shift 3
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    log "broker already listening on $KAFKA_HOST:$KAFKA_PORT"
    return
  fi
  [ -x "$bin" ] || "$WHISTLE_ROOT/deploy/local/install.sh"
  (
    cd "$WHISTLE_DATA/$name"
    nohup "$bin" broker \
      --listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
      --advertised-listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
      --storage-engine "$engine" "$@" \
      >>"$WHISTLE_DATA/logs/$name.log" 2>&1 &
    echo $! >"$WHISTLE_DATA/$name.pid"
  )
  wait_port "$KAFKA_HOST" "$KAFKA_PORT" 30 "$name"
  log "broker ($name) started on $KAFKA_HOST:$KAFKA_PORT, data in $WHISTLE_DATA/$name"
}

start_smtp() {
  if port_open "$SMTP_HOST" "$SMTP_PORT"; then
    log "smtp already listening on $SMTP_HOST:$SMTP_PORT"
    return
  fi
  mkdir -p "$SMTP_MAILDIR"
  nohup "$SMTP_PYTHON" "$WHISTLE_ROOT/deploy/local/smtp_sink.py" --host "$SMTP_HOST" --port "$SMTP_PORT" --dir "$SMTP_MAILDIR" \
    >>"$WHISTLE_DATA/logs/smtp.log" 2>&1 &
  echo $! >"$WHISTLE_DATA/smtp.pid"
  wait_port "$SMTP_HOST" "$SMTP_PORT" 20 smtp
  log "smtp (aiosmtpd) started on $SMTP_HOST:$SMTP_PORT, mail in $SMTP_MAILDIR"
}

stop_pid() {
  local f=$WHISTLE_DATA/$1.pid pid
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    log "$1 stopped"
  fi
  rm -f "$f"
}

case "$cmd" in
  start)
    command -v redis-server >/dev/null && [ -x "$TANSU_BIN" ] && "$SMTP_PYTHON" -c 'import aiosmtpd' 2>/dev/null \
      || "$WHISTLE_ROOT/deploy/local/install.sh"
    start_redis
    case "$WHISTLE_BROKER" in
      tansu) start_broker tansu "$TANSU_BIN" "sqlite://tansu.db" ;;
      nisshi) start_broker nisshi "$NISSHI_BIN" "sqlite://nisshi.db" --group-initial-rebalance-delay 0s ;;
      *) die "WHISTLE_BROKER is tansu or nisshi, not $WHISTLE_BROKER" ;;
    esac
    start_smtp
    ;;
  stop)
    stop_pid smtp
    stop_pid tansu
    stop_pid nisshi
    stop_pid redis
    ;;
  status)
    port_open "$KAFKA_HOST" "$KAFKA_PORT" && echo "broker: up on $KAFKA_HOST:$KAFKA_PORT" || echo "broker: down"
    port_open "$REDIS_HOST" "$REDIS_PORT" && echo "redis:  up on $REDIS_HOST:$REDIS_PORT" || echo "redis:  down"
    port_open "$SMTP_HOST" "$SMTP_PORT" && echo "smtp:   up on $SMTP_HOST:$SMTP_PORT" || echo "smtp:   down"
    ;;
  *) die "usage: infra.sh start|stop|status" ;;
esac
