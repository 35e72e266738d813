#!/usr/bin/env bash
# Every check and every test, as CI runs them. Usage: scripts/test.sh
# Installs what the tests need (Python venv, npm packages, helm, Prometheus,
# cargo-fuzz, and the benchmark's nginx/wrk/oha/LiteLLM/Portkey) idempotently
# on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

# A one-shot build: incremental state would be written for nothing (it was
# 1.8 GB of a fresh clone's 7 GB), and CI machines' disks can be small.
export CARGO_INCREMENTAL=0

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, mock API server, in-process proxy, CRD drift)"
cargo test --workspace --locked

step "end-to-end test dependencies"
scripts/setup-test-deps.sh
# The e2e tests drive the debug binaries that cargo test just built.
cargo build --workspace --bins --locked
export AIFLAGS_BIN_DIR="$root/target/debug"

step "end-to-end tests (official openai and anthropic Python SDKs; dashboards, alerts and progressive rollouts against a real Prometheus, promtool, helm)"
.venv/bin/python -m pytest -q tests/e2e

step "chart tests (helm v4 lint and template, Kubernetes 1.33 schemas, the webhook's pod)"
.venv/bin/python -m pytest -q tests/chart

step "end-to-end tests (official openai Node SDK)"
(cd tests/node && node --test)

step "dashboards against Grafana's schema (@grafana/schema)"
(cd dashboards && node --test)

step "fuzz: the SSE stream filter, the request rewrite, body decoding and the answer judge (bounded)"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" scripts/fuzz.sh

step "benchmark report: paired rounds' medians and goals, on synthetic results"
.venv/bin/python -m pytest -q bench/lib

step "benchmark harness, smoke mode (seconds per target, so it cannot rot)"
bench/run.sh --smoke

step "lean-layer harness (bench/lean.sh), smoke mode, so it cannot rot"
bench/lean.sh --smoke
