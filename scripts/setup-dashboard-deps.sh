#!/usr/bin/env bash
# Installs what the dashboard and alert tests need, idempotently: Debian's
# prometheus package (prometheus and promtool; its service is not used, the
# tests run their own on loopback), Grafana's foundation SDK and matplotlib in
# the repo's .venv, and Grafana's schema package under dashboards/.
# Called by scripts/setup-test-deps.sh, which creates the .venv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Another install may hold the dpkg lock: wait for it rather than fail.
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends prometheus
fi

if ! .venv/bin/python -c 'import grafana_foundation_sdk, matplotlib, yaml' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r dashboards/requirements.txt
fi

if [ ! -d dashboards/node_modules/@grafana/schema ]; then
  (cd dashboards && npm ci --no-audit --no-fund --loglevel=error)
fi

# helm renders the chart's dashboards and alerts in the tests.
scripts/setup-helm.sh >/dev/null
