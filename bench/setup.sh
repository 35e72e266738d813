#!/usr/bin/env bash
# Installs what the benchmark needs, idempotently: nginx, wrk, curl, ip (Debian),
# oha (crates.io: fixed-rate load with latency correction) into ~/.cargo/bin,
# the LiteLLM proxy (PyPI) in bench/.venv and the Portkey gateway (npm) in
# bench/portkey/node_modules. Does nothing that is already there.
# Usage: bench/setup.sh [--no-litellm] [--no-portkey]
set -euo pipefail
bench="$(cd "$(dirname "$0")" && pwd)"

want_litellm=1 want_portkey=1
for arg in "$@"; do
  case "$arg" in
    --no-litellm) want_litellm=0 ;;
    --no-portkey) want_portkey=0 ;;
    *) echo "usage: bench/setup.sh [--no-litellm] [--no-portkey]" >&2; exit 2 ;;
  esac
done

# Versions resolved when the harness was written; pinned so runs compare.
OHA_VERSION=1.16.0
# 1.108.7: the newest whose [proxy] extra resolves from PyPI (later ones need an
# unpublished litellm-proxy package); well clear of the compromised 1.82.7/1.82.8.
LITELLM_VERSION="${LITELLM_VERSION:-1.108.7}"
# The version bench/portkey/package-lock.json pins (checked below against what
# node_modules holds; change both together).
PORTKEY_VERSION=1.15.2

log() { printf '[setup] %s\n' "$*" >&2; }
timed() {
  local what="$1" start=$SECONDS
  shift
  "$@"
  log "$what took $((SECONDS - start)) s"
}

missing_debs=()
command -v nginx >/dev/null || missing_debs+=(nginx)
command -v wrk >/dev/null || missing_debs+=(wrk)
command -v curl >/dev/null || missing_debs+=(curl)
command -v ip >/dev/null || missing_debs+=(iproute2)
command -v pgrep >/dev/null || missing_debs+=(procps)
command -v taskset >/dev/null || missing_debs+=(util-linux)
if [ -n "${BENCH_PROFILE:-}" ]; then command -v perf >/dev/null || missing_debs+=(linux-perf); fi
if [ "${#missing_debs[@]}" -gt 0 ]; then
  log "apt-get install ${missing_debs[*]}"
  apt_install() {
    apt-get update -qq
    # policy-rc.d (present in container images) keeps dpkg from starting nginx on :80.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_debs[@]}" >/dev/null
  }
  timed "apt-get" apt_install
fi

# Into cargo's own bin directory, so a fresh clone on the same machine (CI)
# does not build it again.
oha="${CARGO_HOME:-$HOME/.cargo}/bin/oha"
if ! "$oha" --version 2>/dev/null | grep -qx "oha $OHA_VERSION"; then
  log "cargo install oha $OHA_VERSION (a few minutes on 2 cores)"
  timed "oha build" cargo install --quiet --locked --force oha --version "$OHA_VERSION"
fi

# Checked without importing it: LiteLLM's code runs only inside run.sh's
# loopback-only network namespace.
litellm_installed() {
  [ -x "$bench/.venv/bin/litellm" ] &&
    compgen -G "$bench/.venv/lib/python3*/site-packages/litellm-$LITELLM_VERSION.dist-info" >/dev/null
}
if [ "$want_litellm" = 1 ] && ! litellm_installed; then
  log "pip install litellm[proxy]==$LITELLM_VERSION into bench/.venv"
  install_litellm() {
    [ -x "$bench/.venv/bin/python" ] || python3 -m venv "$bench/.venv"
    "$bench/.venv/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
  }
  timed "litellm install" install_litellm
fi

# Portkey: exactly the lock file's packages, and none of their install scripts
# (the gateway's own is a patch-package call with nothing to patch). Checked
# by reading its package.json: its code runs only inside run.sh's namespace.
portkey_installed() {
  local manifest="$bench/portkey/node_modules/@portkey-ai/gateway/package.json"
  [ -f "$manifest" ] && grep -q "\"version\": \"$PORTKEY_VERSION\"" "$manifest"
}
if [ "$want_portkey" = 1 ] && ! portkey_installed; then
  command -v node >/dev/null || { log "node (20 or later) is needed for the Portkey gateway"; exit 1; }
  log "npm ci @portkey-ai/gateway@$PORTKEY_VERSION into bench/portkey"
  install_portkey() {
    (cd "$bench/portkey" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  }
  timed "portkey install" install_portkey
fi
