#!/usr/bin/env bash
# Starts (or stops) a 3-node Redis Cluster on loopback for the timer tests:
# redis-server --cluster-enabled yes on $REDIS_CLUSTER_PORTS, joined with
# redis-cli --cluster create. Idempotent.
#   redis-cluster.sh start | stop
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
PORTS=${REDIS_CLUSTER_PORTS:-7101 7102 7103}
dir=$WHISTLE_DATA/redis-cluster
mkdir -p "$dir" "$WHISTLE_DATA/logs"

case "${1:-start}" in
  start)
    command -v redis-server >/dev/null || "$WHISTLE_ROOT/deploy/local/install.sh"
    nodes=()
    for p in $PORTS; do
      nodes+=("127.0.0.1:$p")
      if ! port_open 127.0.0.1 "$p"; then
        mkdir -p "$dir/$p"
        redis-server --bind 127.0.0.1 --port "$p" --cluster-enabled yes \
          --cluster-config-file "$dir/$p/nodes.conf" --cluster-node-timeout 5000 \
          --dir "$dir/$p" --appendonly no --save "" --daemonize yes \
          --pidfile "$dir/$p/redis.pid" --logfile "$WHISTLE_DATA/logs/redis-cluster-$p.log" >/dev/null
        wait_port 127.0.0.1 "$p" 20 "redis cluster node $p"
      fi
    done
    first=${nodes[0]#*:}
    # Nodes that knew each other before (restarted from their nodes.conf)
    # rejoin by themselves within seconds; only lone nodes are joined.
    if redis-cli -p "$first" cluster info | grep -q 'cluster_known_nodes:1\b'; then
      redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$WHISTLE_DATA/logs/redis-cluster-create.log" 2>&1 \
        || die "redis-cli --cluster create failed; see $WHISTLE_DATA/logs/redis-cluster-create.log"
    fi
    for _ in $(seq 300); do
      redis-cli -p "$first" cluster info | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
    redis-cli -p "$first" cluster info | grep -q 'cluster_state:ok' \
      || die "redis cluster did not become ready within 30 s: $(redis-cli -p "$first" cluster info | tr -d '\r' | grep -E 'state|known' | tr '\n' ' ')"
    log "redis cluster ready on ${nodes[*]}"
    ;;
  stop)
    for p in $PORTS; do
      pid=$(cat "$dir/$p/redis.pid" 2>/dev/null || true)
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
    done
    sleep 0.5
    rm -rf "$dir"
    log "redis cluster stopped"
    ;;
  *) die "usage: redis-cluster.sh start|stop" ;;
esac
