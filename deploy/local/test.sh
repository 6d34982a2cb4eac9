#!/usr/bin/env bash
# Runs every test of the workspace (the broker and Redis must be up: `make test`
# starts them) and closes with one line adding up all test binaries.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$WHISTLE_ROOT"
log=$(mktemp)
# The trace test runs the services as separate processes, as deployed.
cargo build --quiet --bins || exit $?
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
