#!/usr/bin/env bash
# Instructions per request through the sidecar, counted by valgrind's
# callgrind: the same binary, traffic and flags give the same count whatever
# else the machine is doing, so an A/B of two builds holds on a busy machine
# where bench/run.sh's throughput does not. (It counts user-space
# instructions only: syscalls and the kernel's work are bench/run.sh's part.)
#
# Usage: bench/instructions.sh [SIDECAR_BINARY] [REQUESTS]
#   default binary: target/production/aiflags-sidecar, Cargo.toml's shipping
#   profile (built if missing, with aiflags-dev beside it)
#   FLAGS=FILE serves FILE instead of bench/flags.yaml (bench/lib/many_flags.py
#   writes run.sh's 1,000-flag case)
#   ACCESS_LOG=off|stderr (default stderr: the sidecar's default)
#   UNFLAGGED=1 sends a request no flag matches (passed through)
#   AIFLAGS_ABLATE=judge,report reaches the sidecar: with the ablation build
#   (target/production/aiflags-sidecar-ablation, made by BENCH_CASES=x
#   bench/run.sh) it counts a request with those parts switched off
#   FLOOR=1 counts the floor instead: aiflags-dev bare-proxy (beside the
#   binary), which only forwards; RAW=1 counts aiflags-dev raw-proxy, which
#   forwards without hyper (bench/run.sh's (k)); NGINX_PROXY=1 counts nginx's
#   reverse proxy (bench/run.sh's (b)), master process off
# Prints one line: binary, requests, instructions, instructions per request.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/production/aiflags-sidecar}"
requests="${2:-4000}"
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --quiet --profile production --locked -p aiflags-sidecar -p aiflags-devtools)
fi
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port_up=18301 port=18302 admin=18303
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  server {
    listen 127.0.0.1:$port_up;
    location / {
      default_type application/json;
      return 200 '$(<"$root/bench/lib/answer.json")';
    }
  }
}
NGINX
nginx -e "$work/nginx.err" -p "$work" -c "$work/nginx.conf" &
if [ -n "${NGINX_PROXY:-}" ]; then
  # nginx's reverse proxy (bench/run.sh's (b)), one process: the worker's
  # work without a master, so callgrind sees it.
  cat >"$work/proxy.conf" <<PROXY
master_process off;
daemon off;
pid $work/proxy.pid;
error_log $work/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/proxy-body;
  proxy_temp_path $work/proxy-temp;
  upstream chat { server 127.0.0.1:$port_up; keepalive 128; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://chat;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
PROXY
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    nginx -e "$work/proxy.err" -p "$work" -c "$work/proxy.conf" >"$work/sidecar.log" 2>&1 &
  ready=(-s -o /dev/null "http://127.0.0.1:$port/")
  bin=nginx
elif [ -n "${FLOOR:-}${RAW:-}" ]; then
  # The floor (bench/run.sh's (j)): aiflags-dev bare-proxy from beside the
  # binary; or its raw-proxy ((k)).
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    "$(dirname "$bin")/aiflags-dev" "$([ -n "${RAW:-}" ] && echo raw-proxy || echo bare-proxy)" \
    --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$port_up" \
    >"$work/sidecar.log" 2>&1 &
  ready=(-s -o /dev/null "http://127.0.0.1:$port/")  # any answer: it has no probe
  bin="$(dirname "$bin")/aiflags-dev"
else
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    "$bin" --flags "${FLAGS:-$root/bench/flags.yaml}" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --openai-upstream "http://127.0.0.1:$port_up" --access-log "${ACCESS_LOG:-stderr}" \
    >"$work/sidecar.log" 2>&1 &
  ready=(-sf "http://127.0.0.1:$admin/readyz")
fi
sidecar=$!
for _ in $(seq 1 600); do
  curl "${ready[@]}" >/dev/null 2>&1 && break
  sleep 0.1
done
body="$(<"$root/bench/lib/request.json")"
if [ -n "${UNFLAGGED:-}" ]; then body="${body/\"bench-model\"/\"bench-unflagged\"}"; fi
# One request first, so the count is of steady-state requests only.
curl -sf -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
callgrind_control -z "$sidecar" >/dev/null 2>&1 || true
"${CARGO_HOME:-$HOME/.cargo}/bin/oha" -n "$requests" -c 16 --no-tui -m POST -H 'content-type: application/json' \
  -d "$body" "http://127.0.0.1:$port/v1/chat/completions" >"$work/oha.txt"
callgrind_control -d "$sidecar" >/dev/null 2>&1
total=$(ls "$work"/callgrind.out* | xargs -I{} sh -c "grep -h '^totals:\|^summary:' {} | awk '{print \$2}'" | sort -n | tail -1)
kill -TERM "$sidecar"; wait "$sidecar" 2>/dev/null || true
# PROFILE_DIR=dir keeps the callgrind profile for callgrind_annotate.
if [ -n "${PROFILE_DIR:-}" ]; then mkdir -p "$PROFILE_DIR" && cp "$work"/callgrind.out* "$PROFILE_DIR"/; fi
grep -q "\[200\] $requests responses" "$work/oha.txt" || { echo "not every request succeeded:" >&2; cat "$work/oha.txt" >&2; exit 1; }
awk -v b="$(basename "$bin")" -v n="$requests" -v t="$total" 'BEGIN { printf "%s requests=%d instructions=%d per_request=%d\n", b, n, t, t / n }'
