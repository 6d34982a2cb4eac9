#!/usr/bin/env bash
# Installs what Whistle needs on a Debian machine, skipping what is there:
# redis-server (Debian package), the Tansu broker built with SQLite storage
# (cargo install, pinned), and Rust if cargo is missing. Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
command -v cc >/dev/null || need_pkgs+=(build-essential)
command -v make >/dev/null || need_pkgs+=(make)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v curl >/dev/null || need_pkgs+=(curl ca-certificates)
if [ ${#need_pkgs[@]} -gt 0 ]; then apt_install "${need_pkgs[@]}"; fi

if ! command -v cargo >/dev/null; then
  if command -v rustup >/dev/null; then
    rustup default stable
  else
    apt_install cargo rustc
  fi
fi

installed_tansu_version() {
  [ -x "$TANSU_BIN" ] && "$TANSU_BIN" --version 2>/dev/null | awk '{print $2}'
}

if [ "$(installed_tansu_version || true)" != "$TANSU_VERSION" ]; then
  log "building Tansu $TANSU_VERSION with SQLite storage into $WHISTLE_TOOLS (takes ~12 minutes once)"
  mkdir -p "$WHISTLE_TOOLS"
  cargo install tansu --version "$TANSU_VERSION" --locked --features libsql --root "$WHISTLE_TOOLS" --quiet
fi
# The SMTP server for development and tests (aiosmtpd, from PyPI) in a venv.
if ! "$SMTP_PYTHON" -c 'import aiosmtpd' 2>/dev/null; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  log "installing aiosmtpd into $WHISTLE_TOOLS/venv"
  python3 -m venv "$WHISTLE_TOOLS/venv"
  "$WHISTLE_TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
"$TANSU_BIN" --help | grep -q 'Storage engines: .*libsql' || die "$TANSU_BIN was built without SQLite storage (libsql); remove it and rerun"
log "tools ready: $(redis-server --version | awk '{print $1, $2, $3}'), tansu $(installed_tansu_version), aiosmtpd $("$SMTP_PYTHON" -c 'import aiosmtpd; print(aiosmtpd.__version__)')"
