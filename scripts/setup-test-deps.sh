#!/usr/bin/env bash
# Installs what the end-to-end tests need beyond the Rust toolchain, idempotently:
# a Python venv with the official openai SDK and pytest, and the official openai
# Node SDK, and helm v4 for the chart tests. Safe to run again; does nothing
# when everything is present.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import openai, pytest, kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
fi

if [ ! -d tests/node/node_modules/openai ]; then
  (cd tests/node && npm install --no-audit --no-fund --loglevel=error)
fi

# helm v4 (and kubectl) for the chart tests, into .tools/bin.
scripts/setup-helm.sh
