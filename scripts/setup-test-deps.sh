#!/usr/bin/env bash
# Installs what the end-to-end tests need beyond the Rust toolchain, idempotently:
# a Python venv with the official openai and anthropic SDKs and pytest (every
# package of tests/e2e/requirements.txt), the official openai Node SDK, helm v4
# for the chart tests, and Prometheus and Grafana's schema for the dashboards.
# Safe to run again; does nothing when everything is present.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Installs when any package named in requirements.txt is missing from the venv,
# so a requirement added there is installed on the next run.
requirements_present() {
  .venv/bin/python - tests/e2e/requirements.txt <<'EOF' 2>/dev/null
import importlib.metadata, re, sys
for line in open(sys.argv[1]):
    name = re.split(r"[<>=!~\[;\s]", line.split("#")[0].strip(), maxsplit=1)[0]
    if name:
        importlib.metadata.version(name)  # raises when it is not installed
EOF
}
if ! requirements_present; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
fi

if [ ! -d tests/node/node_modules/openai ]; then
  (cd tests/node && npm install --no-audit --no-fund --loglevel=error)
fi

# helm v4 (and kubectl) for the chart tests, into .tools/bin.
scripts/setup-helm.sh
scripts/setup-dashboard-deps.sh
