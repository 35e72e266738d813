#!/usr/bin/env bash
# What a request's own work costs on a lean HTTP layer: nginx's reverse proxy
# against `aiflags-dev raw-proxy` (HTTP/1.1 without hyper) spending W ns of
# CPU on each request before forwarding it (`--work-ns W`), each loaded in
# turn by wrk at 50 connections, for a few rounds. Throughput per core is
# requests over the server's own CPU time (utime + stime from /proc), as in
# bench/run.sh; the server runs on core 0, wrk and the upstream nginx on
# core 1. The shipped sidecar (bench/flags.yaml, its default access log on)
# is loaded in the same rounds. docs/benchmark.md ("Below hyper") has what
# it found.
#
# Usage: bench/lean.sh [ROUNDS [SECONDS [W...]]]
#   defaults: 5 rounds of 6 s, W = 0 3500 5400 7000
#        bench/lean.sh --smoke
#   one 1-s round, W = 0 3500, on the debug binaries in $AIFLAGS_BIN_DIR (or
#   target/debug): checks that the harness runs, measures nothing
#   SIDECARS="NAME=BINARY ..." loads these sidecar builds in each round
#   instead of the one built here: an A/B of builds in paired rounds (each
#   round starts them one later, so none always follows another)
# Uses target/production/aiflags-dev and aiflags-sidecar (built if missing), nginx and wrk
# (bench/setup.sh installs them). Loopback only; stops by itself.
# scripts/test.sh runs it with --smoke, so the harness cannot rot.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "${1:-}" = --smoke ]; then
  smoke=1
  set -- 1 1 0 3500
fi
rounds="${1:-5}" secs="${2:-6}"
shift $(($# < 2 ? $# : 2))
works=("$@")
[ ${#works[@]} -gt 0 ] || works=(0 3500 5400 7000)
# raw-proxy listens on 18610 + i, the sidecars from 18640.
[ ${#works[@]} -le 30 ] || { echo "at most 30 values of W" >&2; exit 1; }
read -ra sidecars <<<"${SIDECARS:-}"
for named in "${sidecars[@]}"; do
  [[ "$named" == ?*=?* ]] || { echo "SIDECARS: '$named' is not NAME=BINARY" >&2; exit 1; }
done
if [ -n "${smoke:-}" ]; then
  bin="${AIFLAGS_BIN_DIR:-$root/target/debug}"
  [ -x "$bin/aiflags-dev" ] && [ -x "$bin/aiflags-sidecar" ] ||
    (cd "$root" && cargo build --quiet --locked -p aiflags-devtools -p aiflags-sidecar)
else
  # Up to date with the tree (nothing to do when it is; the first build is
  # bench/run.sh's too).
  bin="$root/target/production"
  (cd "$root" && cargo build --quiet --profile production --locked -p aiflags-devtools -p aiflags-sidecar)
fi
dev="$bin/aiflags-dev" sidecar="$bin/aiflags-sidecar"
for tool in nginx wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (bench/setup.sh installs it)" >&2; exit 1; }
done
# In a private network namespace that holds only loopback, as bench/run.sh
# runs: its fixed ports meet nothing else, and nothing can leave the machine.
if [ -z "${LEAN_IN_NETNS:-}" ]; then
  export LEAN_IN_NETNS=1
  if command -v ip >/dev/null && unshare --net true 2>/dev/null; then
    exec unshare --net -- bash -c 'ip link set lo up && exec "$@"' bash "$0" ${smoke:+--smoke} "$rounds" "$secs" "${works[@]}"
  fi
  echo "warning: no private network namespace (unshare --net refused, or no ip); on the host's loopback" >&2
fi
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
up=18601 proxy=18602 flagged=18640
answer="$(<"$root/bench/lib/answer.json")"
cat >"$work/upstream.conf" <<NGINX
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $work/upstream-body;
  server { listen 127.0.0.1:$up; location / { default_type application/json; return 200 '$answer'; } }
}
NGINX
# One process (no master), so /proc's CPU times are the whole proxy's.
cat >"$work/proxy.conf" <<NGINX
master_process off; daemon off; pid $work/proxy.pid; error_log $work/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $work/proxy-body; proxy_temp_path $work/proxy-temp;
  upstream chat { server 127.0.0.1:$up; keepalive 128; }
  server {
    listen 127.0.0.1:$proxy;
    location / { proxy_pass http://chat; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
taskset -c 1 nginx -e "$work/upstream.err" -p "$work" -c "$work/upstream.conf" &
taskset -c 0 nginx -e "$work/proxy.err" -p "$work" -c "$work/proxy.conf" &
names=(nginx) ports=("$proxy") pids=($!)
for i in "${!works[@]}"; do
  port=$((18610 + i))
  taskset -c 0 "$dev" raw-proxy --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$up" \
    --work-ns "${works[$i]}" >"$work/raw-$i.log" 2>&1 &
  names+=("raw+${works[$i]}ns") ports+=("$port") pids+=($!)
done
n=0
[ ${#sidecars[@]} -gt 0 ] || sidecars=("sidecar=$sidecar")
first_sidecar=${#names[@]}
for named in "${sidecars[@]}"; do
  port=$((flagged + 2 * n)) n=$((n + 1))
  taskset -c 0 "${named#*=}" --flags "$root/bench/flags.yaml" --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$((port + 1))" --openai-upstream "http://127.0.0.1:$up" --workers 1 \
    --access-log stderr 2>"$work/sidecar-$n.log" >/dev/null &
  names+=("${named%%=*}") ports+=("$port") pids+=($!)
done
export BENCH_BODY="$(<"$root/bench/lib/request.json")"
# Each target answers a request before the rounds, or the run stops here.
for i in "${!names[@]}"; do
  until curl -sf -o /dev/null -H 'content-type: application/json' -d "$BENCH_BODY" \
    "http://127.0.0.1:${ports[$i]}/v1/chat/completions"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "${names[$i]} exited before serving; its log:" >&2
      cat "$work"/*.log "$work"/*.err 2>/dev/null | tail -n 20 >&2
      exit 1
    fi
    sleep 0.1
  done
done
printf '%-5s %-14s %8s %9s %13s %12s %7s\n' round target req/s per-core "user us/req" "sys us/req" "÷nginx"
count=$((${#names[@]} - first_sidecar))
for round in $(seq 1 "$rounds"); do
  base=0
  # nginx first (the round's base), then the forwarders, then the sidecars
  # starting one later each round.
  order=($(seq 0 $((first_sidecar - 1))))
  for k in $(seq 0 $((count - 1))); do
    order+=($((first_sidecar + (k + round - 1) % count)))
  done
  for i in "${order[@]}"; do
    url="http://127.0.0.1:${ports[$i]}/v1/chat/completions"
    taskset -c 1 wrk -t1 -c50 -d1s -s "$root/bench/lib/post.lua" "$url" >/dev/null
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/${pids[$i]}/stat")
    out="$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" -s "$root/bench/lib/post.lua" "$url")"
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/${pids[$i]}/stat")
    field() { grep -o "\"$1\":[0-9]*" <<<"$out" | cut -d: -f2 || true; }
    requests="$(field requests)" bad="$(field bad)" socket_errors="$(field socket_errors)"
    # No bad status; socket errors under 1 % (bench/run.sh's report allows 1 % of both).
    if [ "${bad:-1}" != 0 ] || [ "${requests:-0}" -le 0 ] || [ $((${socket_errors:-1} * 100)) -ge "${requests:-0}" ]; then
      echo "${names[$i]}: failed requests: $out" >&2
      exit 1
    fi
    tick="$(getconf CLK_TCK)"
    line="$(awk -v q="$requests" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$tick" -v secs="$secs" -v base="$base" \
      'BEGIN { pc = q / ((u + s) / t); printf "%d %.0f %d %.2f %.2f %s", pc, q / secs, pc, u * 1e6 / t / q, s * 1e6 / t / q, (base > 0 ? sprintf("%.2f", pc / base) : "-") }')"
    read -r per_core rps pc user sys ratio <<<"$line"
    [ "$i" = 0 ] && base="$per_core"
    printf '%-5s %-14s %8s %9s %13s %12s %7s\n' "$round" "${names[$i]}" "$rps" "$pc" "$user" "$sys" "$ratio"
  done
done
