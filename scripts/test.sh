#!/usr/bin/env bash
# Every check and every test, as CI runs them. Usage: scripts/test.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

if [ -n "$(ls tests/e2e/test_*.py 2>/dev/null)" ] || [ -n "$(ls tests/node/*.test.mjs 2>/dev/null)" ]; then
  step "end-to-end test dependencies"
  scripts/setup-test-deps.sh
  # The e2e tests drive the debug binaries that cargo test just built.
  cargo build --workspace --bins --locked
  export AIFLAGS_BIN_DIR="$root/target/debug"
  if [ -n "$(ls tests/e2e/test_*.py 2>/dev/null)" ]; then
    step "end-to-end tests (Python openai SDK)"
    .venv/bin/python -m pytest -q tests/e2e
  fi
  if [ -n "$(ls tests/node/*.test.mjs 2>/dev/null)" ]; then
    step "end-to-end tests (Node openai SDK)"
    (cd tests/node && node --test)
  fi
fi
