#!/usr/bin/env bash
# Installs BullMQ into a scratch folder (.local/bullmq-bench) once and runs
# bench.mjs against $REDIS_URL. Prints progress on stderr and one JSON line of
# figures on stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../../deploy/local/env.sh"
scratch=$WHISTLE_DATA/bullmq-bench
mkdir -p "$scratch"
cp "$here/package.json" "$here/bench.mjs" "$scratch/"
if ! command -v node >/dev/null; then
  log "installing nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d "$scratch/node_modules/bullmq" ]; then
  (cd "$scratch" && npm install --no-audit --no-fund --silent >&2)
fi
cd "$scratch"
exec node bench.mjs
