#!/usr/bin/env bash
# The main job: the aiflags sidecar serving the example flags.
#
# Without OPENAI_API_KEY (no cluster, no key): the demo. The sidecar runs in
# front of its built-in upstream, simulated users send traffic, and it prints
# the observed split, fallbacks, latency, tokens and cost; /metrics stays up
# on http://127.0.0.1:15090 until Ctrl-C. The terminal shows a progress line
# and the report; the sidecar's log (one access-log line per request) goes to
# the file the demo names (--log-file PATH to choose it). Nothing leaves this
# machine.
#
# With OPENAI_API_KEY set: the sidecar proxies to the real OpenAI API on
# http://127.0.0.1:15080 - point your app at it with
#   OPENAI_BASE_URL=http://127.0.0.1:15080/v1
# and its SDK's own key is passed through.
#
# Extra arguments go to the demo (e.g. --requests 10000 --exit) or the proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${OPENAI_API_KEY:-}" ]; then
  cargo build --release --quiet -p aiflags-sidecar
  exec target/release/aiflags-sidecar --flags examples/ --admin-listen 127.0.0.1:15090 "$@"
fi
# The demo (the sidecar in-process, the mock upstream, simulated users) lives
# in the dev tools binary, never in the sidecar's.
cargo build --release --quiet -p aiflags-devtools
exec target/release/aiflags-dev demo --admin-listen 127.0.0.1:15090 "$@"
