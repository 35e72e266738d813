#!/usr/bin/env bash
# The aiflags benchmark: one command, loopback only, one table.
#
#   bench/run.sh            full run (production build, 10 s per load, 1,000 streams)
#   bench/run.sh --smoke    seconds; exits non-zero if any target failed to serve
#
# Targets, each measured with the same POST /v1/chat/completions load, once at a
# fixed concurrency (wrk) and once at a fixed rate of 1,000 req/s (oha, latency
# corrected), then SSE streams:
#   (a) nginx returning a fixed chat.completion body      (the upstream itself)
#   (b) nginx as a plain reverse proxy in front of an upstream like (a)
#   (c) the aiflags sidecar, a 90/10 flag with fallback (bench/flags.yaml),
#       access log off like nginx's; (g) the same with its default access log
#   (j) the floor: a reverse proxy on the sidecar's stack (hyper, tokio,
#       mimalloc) that only forwards (aiflags-dev bare-proxy)
#   (i) the same sidecar serving 1,000 flags, each with a model glob, the one
#       the load matches last (bench/lib/many_flags.py)
#   (d) the LiteLLM proxy, two weighted deployments plus a fallback
#   (h) the Portkey gateway, the same split and fallback (bench/portkey/config.json)
#   (e) SSE streams straight to the sidecar's mock upstream
#   (f) the same streams through the sidecar
#   (r) paired rounds: (a), (b), (j), (c), (g) and (i) side by side, loaded in
#       turn with shorter loads, five rounds; the goals compare within a round
#   (x) the ablation: what each part of a request's work costs. (b), (j) and
#       the sidecar's ablation build (the `ablation` feature) with parts
#       switched off (AIFLAGS_ABLATE: the answer judge, the report) and with a
#       request no flag matches, in paired rounds of the fixed-concurrency
#       load. In a full run only when asked for (BENCH_CASES=x runs it alone,
#       into bench/results/ablation.md); always in the smoke run.
# The server under test runs alone on core 0 (nginx: 1 worker process; sidecar:
# --workers 1; LiteLLM: 1 worker; Portkey: one Node process); load generator
# and upstream share core 1.
# Measurements run in a private network namespace holding only loopback, so
# nothing here can reach another address. Results: bench/results/latest.md
# (a smoke run writes bench/results/smoke.md.tmp instead).
#
# Environment: BENCH_SIDECAR=/path/to/aiflags-sidecar skips the build (the
# mock upstream, aiflags-dev, is taken from the same directory or BENCH_DEV)
# (BENCH_SIDECAR_SOURCE then labels it in the report, e.g. "commit abc1234");
# AIFLAGS_BIN_DIR (set by the test command) supplies the debug binary for --smoke;
# BENCH_CASES=cg runs a subset; BENCH_PROFILE=1 profiles the sidecar under the
# fixed-concurrency load with perf and prints where its CPU goes;
# BENCH_ABLATION_SIDECAR=/path skips the ablation build for (x).
set -euo pipefail
bench="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$bench")"

mode=full
in_netns=0
for arg in "$@"; do
  case "$arg" in
    --smoke) mode=smoke ;;
    --in-netns) in_netns=1 ;;
    *) echo "usage: bench/run.sh [--smoke]" >&2; exit 2 ;;
  esac
done

# The cases: by default every one but the ablation (x) in a full run (it
# needs a build of its own and ten minutes), and every one in the smoke run,
# which is there so that no case can rot.
if [ "$mode" = smoke ]; then default_cases=abcjigrxdhef; else default_cases=abcjigrdhef; fi
BENCH_CASES="${BENCH_CASES:-$default_cases}"
export BENCH_CASES

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# Phase 1, with the network: install tools, build the sidecar, then re-enter
# this script inside a network namespace that has nothing but loopback.
if [ "$in_netns" = 0 ]; then
  "$bench/setup.sh"
  if [[ "$BENCH_CASES" == *x* ]] && [ -z "${BENCH_ABLATION_SIDECAR:-}" ]; then
    # (x)'s sidecar: the same profile with the `ablation` feature, set aside
    # under its own name before the shipped build below (cargo keeps both
    # builds of the crate, so going back to the shipped one is a link).
    profile=production out="$root/target/production"
    if [ "$mode" = smoke ]; then profile=dev out="$root/target/debug"; fi
    log "building the sidecar's ablation build ($profile profile)"
    (cd "$root" && cargo build --quiet --locked --profile "$profile" -p aiflags-sidecar --features ablation)
    cp "$out/aiflags-sidecar" "$out/aiflags-sidecar-ablation"
    BENCH_ABLATION_SIDECAR="$out/aiflags-sidecar-ablation"
    # Back to the shipped binary, unless the full run's build below makes it.
    if [ -n "${BENCH_SIDECAR:-}" ] || [ "$mode" = smoke ]; then
      (cd "$root" && cargo build --quiet --locked --profile "$profile" -p aiflags-sidecar)
    fi
  fi
  if [ -z "${BENCH_SIDECAR:-}" ]; then
    # The report names the source: this commit, plus a mark if sidecar/ or
    # api/ had uncommitted changes when it was built.
    dirty="$(cd "$root" && git status --porcelain -- sidecar api Cargo.toml Cargo.lock 2>/dev/null | head -n1)"
    BENCH_SIDECAR_SOURCE="commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)${dirty:+ with uncommitted changes}"
    if [ "$mode" = smoke ] && [ -x "${AIFLAGS_BIN_DIR:-}/aiflags-sidecar" ]; then
      BENCH_SIDECAR="$AIFLAGS_BIN_DIR/aiflags-sidecar"
    elif [ "$mode" = smoke ]; then
      (cd "$root" && cargo build --quiet --locked -p aiflags-sidecar -p aiflags-devtools)
      BENCH_SIDECAR="$root/target/debug/aiflags-sidecar"
    else
      # The profile that ships (Cargo.toml's `production`: fat LTO, one
      # codegen unit), for the floor's binary too.
      log "building the sidecar and the dev tools (production profile)"
      (cd "$root" && cargo build --quiet --locked --profile production -p aiflags-sidecar -p aiflags-devtools)
      BENCH_SIDECAR="$root/target/production/aiflags-sidecar"
    fi
  fi
  export BENCH_SIDECAR BENCH_SIDECAR_SOURCE="${BENCH_SIDECAR_SOURCE:-given as $BENCH_SIDECAR}"
  export BENCH_ABLATION_SIDECAR="${BENCH_ABLATION_SIDECAR:-}"
  args=(--in-netns)
  if [ "$mode" = smoke ]; then args+=(--smoke); fi
  if unshare --net true 2>/dev/null; then
    exec unshare --net -- bash -c 'ip link set lo up && exec "$@"' bash "$0" "${args[@]}"
  fi
  log "warning: no private network namespace (unshare --net refused); running on the host's loopback"
  exec "$0" "${args[@]}"
fi

# Phase 2: measure.
if [ "$mode" = smoke ]; then
  seconds=2 warmup=0 concurrency=50 rate=1000 streams=50 stream_secs=0.5 ramp=0.5 rounds=1 round_secs=1
else
  seconds=10 warmup=2 concurrency=50 rate=1000 streams=1000 stream_secs=10 ramp=3 rounds=5 round_secs=4
fi
# Flags in case (i)'s config, the smoke run included: it is the config's size
# that is under test, and loading 1,000 flags takes well under a second.
many_flags=1000
sidecar_bin="${BENCH_SIDECAR:?}"
# The mock upstream ships in the dev tools binary, built beside the sidecar.
dev_bin="${BENCH_DEV:-$(dirname "$sidecar_bin")/aiflags-dev}"
oha="${CARGO_HOME:-$HOME/.cargo}/bin/oha"
litellm="$bench/.venv/bin/litellm"
portkey="$bench/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
work="$bench/results/run.tmp"
results="$work/results.jsonl"
rm -rf "$work"
mkdir -p "$work"
: >"$results"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Fixed ports are safe: the namespace is ours alone.
UPSTREAM_DIRECT=18100 UPSTREAM=18101 NGINX_PROXY=18102 SIDECAR=18103 SIDECAR_ADMIN=18104
LITELLM=18105 MOCK=18106 PORTKEY=18107 BARE=18108
SIDECAR_LOGGING=18109 SIDECAR_LOGGING_ADMIN=18110 SIDECAR_MANY=18111 SIDECAR_MANY_ADMIN=18112
RAW=18113

# The request every non-streaming load sends, and the API key every client
# presents (LiteLLM insists on a master key; the others ignore it). The load
# generators read both from the environment, and one extra header when a case
# sets BENCH_EXTRA_HEADER ("name: value"; Portkey takes its config that way).
BENCH_BODY="$(<"$bench/lib/request.json")"
BENCH_KEY="sk-bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
BENCH_EXTRA_HEADER=
export BENCH_BODY BENCH_KEY BENCH_EXTRA_HEADER

# Every server runs in its own session, so stopping it by session id takes
# nginx's worker or Python's children with it.
sessions=()
cleanup() {
  local sid
  for sid in "${sessions[@]}"; do kill -TERM -- "-$sid" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pgrep -s "$(IFS=,; echo "${sessions[*]:-0}")" >/dev/null || return 0
    sleep 0.3
  done
  for sid in "${sessions[@]}"; do kill -KILL -- "-$sid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CORE COMMAND...: runs COMMAND pinned to CORE; sets $sid.
start() {
  local name="$1" core="$2"
  shift 2
  setsid taskset -c "$core" "$@" >"$work/$name.log" 2>&1 </dev/null &
  sid=$!
  sessions+=("$sid")
}

stop() {
  local target="$1"
  kill -TERM -- "-$target" 2>/dev/null || true
  for _ in $(seq 1 30); do
    pgrep -s "$target" >/dev/null || return 0
    sleep 0.2
  done
  kill -KILL -- "-$target" 2>/dev/null || true
}

# wait_ready NAME URL [SECONDS]: polls until URL answers 2xx, or fails the run
# (at once if the server $sid has exited).
wait_ready() {
  local name="$1" url="$2" limit="${3:-30}"
  for _ in $(seq 1 $((limit * 10))); do
    if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then return 0; fi
    if ! kill -0 "$sid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  tail -n 20 "$work/$name.log" >&2 || true
  die "$name did not become ready at $url within ${limit}s"
}

# extra_header_args: curl/oha arguments for BENCH_EXTRA_HEADER, if set.
extra_header_args() {
  if [ -n "$BENCH_EXTRA_HEADER" ]; then printf '%s\0' -H "$BENCH_EXTRA_HEADER"; fi
}

# check_chat CASE URL [HEADER [VALUE]]: one request must come back 200 as a
# chat.completion (and with HEADER, equal to VALUE when given), or the target
# does not serve as configured and the run fails.
check_chat() {
  local name="($1)" url="$2" header="${3:-}" want="${4:-}" out="$work/check-$1"
  local code extra=()
  mapfile -d '' extra < <(extra_header_args)
  code="$(curl -sS -o "$out.body" -D "$out.head" -w '%{http_code}' --max-time 10 \
    -H 'Content-Type: application/json' -H "Authorization: Bearer $BENCH_KEY" "${extra[@]}" \
    -d "$BENCH_BODY" "$url/v1/chat/completions")" || code=000
  if [ "$code" != 200 ] || ! grep -q '"chat.completion"' "$out.body"; then
    head -c 600 "$out.body" >&2 || true
    die "$name answered $code instead of a chat.completion"
  fi
  if [ -z "$header" ]; then return 0; fi
  local got
  got="$(grep -i "^$header:" "$out.head" | head -n1 | cut -d: -f2- | tr -d ' \r')"
  if [ -z "$got" ]; then
    die "$name answered without the $header header: its routing config was not applied"
  fi
  if [ -n "$want" ] && [ "$got" != "$want" ]; then
    die "$name answered $header: $got, not $want"
  fi
}

# check_access_log NAME on|off: a stopped sidecar's log holds access-log
# lines, or holds none, as its case says (a case labelled "access log off"
# that logged every request compared nothing).
check_access_log() {
  local lines
  lines="$(grep -c 'aiflags::access' "$work/$1.log" || true)"
  case "$2" in
    on) [ "$lines" -gt 0 ] || die "$1 ran with its access log on but wrote no access-log line" ;;
    off) [ "$lines" -eq 0 ] || die "$1 ran with its access log off but wrote $lines access-log lines" ;;
  esac
}

record() { printf '%s\n' "$1" >>"$results"; }

usage_of() { python3 "$bench/lib/proc.py" "$1"; }

# measure CASE SERVER_SID LOAD_KIND COMMAND...: runs one load, records its
# output merged with the server's CPU seconds over that load.
measure() {
  local case="$1" server="$2" load="$3"
  shift 3
  local before after output started ended
  before="$(usage_of "$server")"
  started="$(date +%s.%N)"
  output="$(taskset -c 1 timeout $((seconds * 3 + 60)) "$@")" || die "$case: load generator failed ($load)"
  ended="$(date +%s.%N)"
  after="$(usage_of "$server")"
  record "$(python3 - "$case" "$load" "$output" "$before" "$after" "$started" "$ended" <<'EOF'
import json, sys
case, load, output, before, after, started, ended = sys.argv[1:]
line = {"case": case, "load": load}
line.update(json.loads([l for l in output.splitlines() if l.startswith("{")][-1]))
before, after = json.loads(before), json.loads(after)
line["server_cpu_s"] = round(after["cpu_s"] - before["cpu_s"], 2)
line["server_user_s"] = round(after["user_s"] - before["user_s"], 2)
line["server_sys_s"] = round(after["sys_s"] - before["sys_s"], 2)
line["wall_s"] = round(float(ended) - float(started), 2)
print(json.dumps(line))
EOF
)"
}

# warm_up URL SECONDS: the fixed-concurrency load, unmeasured (none for 0).
warm_up() {
  if [ "$2" != 0 ]; then
    taskset -c 1 wrk -t1 -c"$concurrency" -d"${2}s" -s "$bench/lib/post.lua" "$1/v1/chat/completions" >/dev/null
  fi
}

# load_concurrency CASE SID URL [SECONDS [WARMUP [LOAD]]]: wrk at fixed
# concurrency, recorded as LOAD (default "concurrency").
load_concurrency() {
  local case="$1" server="$2" url="$3" secs="${4:-$seconds}" warm="${5:-$warmup}" load="${6:-concurrency}"
  warm_up "$url" "$warm"
  measure "$case" "$server" "$load" \
    wrk -t1 -c"$concurrency" -d"${secs}s" --timeout 10s -s "$bench/lib/post.lua" "$url/v1/chat/completions"
}

# load_rate CASE SID URL [SECONDS [LOAD]]: oha at a fixed rate, recorded as
# LOAD (default "rate").
load_rate() {
  local case="$1" server="$2" url="$3" secs="${4:-$seconds}" load="${5:-rate}" extra=()
  mapfile -d '' extra < <(extra_header_args)
  measure "$case" "$server" "$load" python3 "$bench/lib/oha_json.py" "$oha" \
    -z "${secs}s" -q "$rate" -c 50 --latency-correction \
    -m POST -H 'Content-Type: application/json' -H "Authorization: Bearer $BENCH_KEY" "${extra[@]}" \
    -d "$BENCH_BODY" "$url/v1/chat/completions"
}

# memory CASE SID [KIND]: the server's memory now, as load KIND ("memory", the
# default, after the loads; "idle", after one sanity request and no load).
memory() {
  local case="$1" server="$2" kind="${3:-memory}"
  record "$(usage_of "$server" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["case"]=sys.argv[1]; d["load"]=sys.argv[2]; print(json.dumps(d))' "$case" "$kind")"
}

nginx_conf() { # nginx_conf NAME PORT LOCATION_BODY
  cat >"$work/$1.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/$1.pid;
error_log $work/$1.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $work/$1.body;
  proxy_temp_path $work/$1.proxy;
  upstream chat { server 127.0.0.1:$UPSTREAM; keepalive 128; }
  server {
    listen 127.0.0.1:$2 reuseport backlog=4096;
    location / {
$3
    }
  }
}
EOF
}

start_nginx() { # start_nginx NAME CORE
  start "$1" "$2" nginx -e "$work/$1.err" -p "$work" -c "$work/$1.conf"
}

# One upstream answer, the shape a real chat completion has (nginx returns it as is).
fixed_body="$(<"$bench/lib/answer.json")"
upstream_location="      default_type application/json;
      return 200 '$fixed_body';"
nginx_conf upstream-direct "$UPSTREAM_DIRECT" "$upstream_location"
nginx_conf upstream "$UPSTREAM" "$upstream_location"
nginx_conf nginx-proxy "$NGINX_PROXY" "      proxy_pass http://chat;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";"

# bench_target CASE NAME URL SID: idle memory, both loads, memory. The
# caller has sent the sanity request.
bench_target() {
  log "($1) $2: fixed concurrency $concurrency, then $rate req/s, ${seconds}s each"
  memory "$1" "$4" idle
  load_concurrency "$1" "$4" "$3"
  load_rate "$1" "$4" "$3"
  memory "$1" "$4"
  echo "{\"case\":\"$1\",\"load\":\"name\",\"name\":\"$2\"}" >>"$results"
}

# start_sidecar NAME UPSTREAM_PORT [ACCESS_LOG [FLAGS [PORT ADMIN_PORT]]]: the
# access log (--access-log: off, stderr) is off unless asked for, as nginx's
# is here; FLAGS defaults to bench/flags.yaml, the ports to $SIDECAR and
# $SIDECAR_ADMIN.
start_sidecar() {
  local port="${5:-$SIDECAR}" admin="${6:-$SIDECAR_ADMIN}"
  start "$1" 0 env AIFLAGS_LOG=info "$sidecar_bin" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --access-log "${3:-off}" --flags "${4:-$bench/flags.yaml}" --workers 1 \
    --openai-upstream "http://127.0.0.1:$2" --anthropic-upstream "http://127.0.0.1:$2"
  wait_ready "$1" "http://127.0.0.1:$admin/readyz"
}

# The shared upstream of (b)-(d), on core 1 with the load generator.
upstream_sid=
need_upstream() {
  if [ -n "$upstream_sid" ]; then return 0; fi
  start_nginx upstream 1
  upstream_sid=$sid
  wait_ready upstream "http://127.0.0.1:$UPSTREAM/"
}

# The mock upstream of (e) and (f), also on core 1, beside the stream client.
mock_sid=
need_mock() {
  if [ -n "$mock_sid" ]; then return 0; fi
  start mock 1 "$dev_bin" mock-upstream --listen "127.0.0.1:$MOCK"
  mock_sid=$sid
  wait_ready mock "http://127.0.0.1:$MOCK/mock/requests/ready"
}

stream_load() { # stream_load CASE NAME URL SID
  log "($1) $2: $streams concurrent SSE streams"
  memory "$1" "$4" idle
  measure "$1" "$4" streams python3 "$bench/lib/streams.py" "$3/v1/chat/completions" mock-slow-stream \
    --clients "$streams" --duration "$stream_secs" --ramp "$ramp"
  memory "$1" "$4"
  echo "{\"case\":\"$1\",\"load\":\"name\",\"name\":\"$2\"}" >>"$results"
}

case_a() { # the upstream itself, alone on core 0
  start_nginx upstream-direct 0
  wait_ready upstream-direct "http://127.0.0.1:$UPSTREAM_DIRECT/"
  check_chat a "http://127.0.0.1:$UPSTREAM_DIRECT"
  bench_target a "nginx upstream (direct)" "http://127.0.0.1:$UPSTREAM_DIRECT" "$sid"
  stop "$sid"
}

# round_order ROUND TARGET...: the targets in the order round ROUND loads
# them, each round starting one target later than the one before.
round_order() {
  local round="$1"
  shift
  local targets=("$@") k
  for ((k = 0; k < ${#targets[@]}; k++)); do
    echo "${targets[$(((k + round - 1) % ${#targets[@]}))]}"
  done
}

# The two reference proxies on core 0, started and ready; each leaves $sid.
start_nginx_proxy() {
  start_nginx nginx-proxy 0
  wait_ready nginx-proxy "http://127.0.0.1:$NGINX_PROXY/"
}
start_bare_proxy() { # the floor: aiflags-dev bare-proxy, which only forwards
  start bare-proxy 0 env AIFLAGS_LOG=warn "$dev_bin" bare-proxy --listen "127.0.0.1:$BARE" --upstream "http://127.0.0.1:$UPSTREAM"
  wait_ready bare-proxy "http://127.0.0.1:$BARE/"
}

# HTTP/1.1 forwarding without hyper (aiflags-dev raw-proxy): what an HTTP
# layer of the sidecar's own could cost, for (x).
start_raw_proxy() {
  start raw-proxy 0 env AIFLAGS_LOG=warn "$dev_bin" raw-proxy --listen "127.0.0.1:$RAW" --upstream "http://127.0.0.1:$UPSTREAM"
  wait_ready raw-proxy "http://127.0.0.1:$RAW/"
}

case_b() {
  need_upstream
  start_nginx_proxy
  check_chat b "http://127.0.0.1:$NGINX_PROXY"
  bench_target b "nginx reverse proxy" "http://127.0.0.1:$NGINX_PROXY" "$sid"
  stop "$sid"
}

case_c() {
  need_upstream
  start_sidecar sidecar "$UPSTREAM"
  check_chat c "http://127.0.0.1:$SIDECAR" x-aiflags-flag bench-split
  local perf_pid=
  if [ -n "${BENCH_PROFILE:-}" ]; then
    # Samples the sidecar through warm-up and most of the fixed-concurrency load.
    perf record -F 299 -e cpu-clock --call-graph dwarf,32768 -p "$sid" -o "$work/perf.data" \
      -- sleep "$((warmup + seconds - 1))" >"$work/perf.log" 2>&1 &
    perf_pid=$!
  fi
  bench_target c "aiflags sidecar" "http://127.0.0.1:$SIDECAR" "$sid"
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || log "perf record failed: see $work/perf.log"
    perf script -i "$work/perf.data" -F ip,sym,dso 2>/dev/null | python3 "$bench/lib/profile.py" >"$work/profile.txt" || true
  fi
  curl -fsS --max-time 5 "http://127.0.0.1:$SIDECAR_ADMIN/metrics" >"$work/sidecar.metrics" || true
  stop "$sid"
  check_access_log sidecar off
}

case_g() { # the sidecar as shipped: one access-log line per request on stderr
  need_upstream
  start_sidecar sidecar-logging "$UPSTREAM" stderr
  check_chat g "http://127.0.0.1:$SIDECAR" x-aiflags-flag bench-split
  bench_target g "aiflags sidecar, access log on" "http://127.0.0.1:$SIDECAR" "$sid"
  stop "$sid"
  check_access_log sidecar-logging on
}

case_j() { # the floor: hyper and tokio forwarding, no sidecar logic (aiflags-dev bare-proxy)
  need_upstream
  start_bare_proxy
  check_chat j "http://127.0.0.1:$BARE"
  bench_target j "bare hyper proxy (the floor)" "http://127.0.0.1:$BARE" "$sid"
  stop "$sid"
}

case_i() { # (c) with 1,000 flags, the one the load matches last
  need_upstream
  python3 "$bench/lib/many_flags.py" "$many_flags" >"$work/flags-many.yaml"
  start_sidecar sidecar-many-flags "$UPSTREAM" "" "$work/flags-many.yaml"
  check_chat i "http://127.0.0.1:$SIDECAR" x-aiflags-flag bench-split
  bench_target i "aiflags sidecar, $(python3 -c "print(f'{$many_flags:,}')") flags" "http://127.0.0.1:$SIDECAR" "$sid"
  curl -fsS --max-time 5 "http://127.0.0.1:$SIDECAR_ADMIN/config" >"$work/many-flags.config" || true
  stop "$sid"
  check_access_log sidecar-many-flags off
}

# (r) paired rounds. A pass of the cases above loads each target once, minutes
# apart, and this machine's speed drifts within minutes (docs/benchmark.md):
# one pass can put nginx on a fast minute and the sidecar on a slow one. Here
# (a), (b), (j), (c), (g) and (i) run at once, each idle on core 0 until its
# turn, and take the same short loads in turn, round after round, each round
# starting one target later; report.py compares targets within a round and
# takes the median over the rounds.
case_r() {
  need_upstream
  local -A url server
  start_nginx upstream-direct 0
  server[a]=$sid url[a]="http://127.0.0.1:$UPSTREAM_DIRECT"
  wait_ready upstream-direct "${url[a]}/"
  start_nginx_proxy
  server[b]=$sid url[b]="http://127.0.0.1:$NGINX_PROXY"
  start_bare_proxy
  server[j]=$sid url[j]="http://127.0.0.1:$BARE"
  start_sidecar sidecar "$UPSTREAM"
  server[c]=$sid url[c]="http://127.0.0.1:$SIDECAR"
  start_sidecar sidecar-logging "$UPSTREAM" stderr "" "$SIDECAR_LOGGING" "$SIDECAR_LOGGING_ADMIN"
  server[g]=$sid url[g]="http://127.0.0.1:$SIDECAR_LOGGING"
  python3 "$bench/lib/many_flags.py" "$many_flags" >"$work/flags-many.yaml"
  start_sidecar sidecar-many-flags "$UPSTREAM" "" "$work/flags-many.yaml" "$SIDECAR_MANY" "$SIDECAR_MANY_ADMIN"
  server[i]=$sid url[i]="http://127.0.0.1:$SIDECAR_MANY"
  local targets=(a b j c g i) round t
  for t in "${targets[@]}"; do
    case "$t" in
      c | g | i) check_chat "$t" "${url[$t]}" x-aiflags-flag bench-split ;;
      *) check_chat "$t" "${url[$t]}" ;;
    esac
    warm_up "${url[$t]}" "$warmup"
  done
  for ((round = 1; round <= rounds; round++)); do
    log "(r) paired round $round of $rounds: $concurrency connections, then $rate req/s, ${round_secs}s each, for each of ${targets[*]}"
    for t in $(round_order "$round" "${targets[@]}"); do
      load_concurrency "r:$t" "${server[$t]}" "${url[$t]}" "$round_secs" 0 "concurrency:$round"
      load_rate "r:$t" "${server[$t]}" "${url[$t]}" "$round_secs" "rate:$round"
    done
  done
  for t in "${targets[@]}"; do stop "${server[$t]}"; done
  check_access_log sidecar off
  check_access_log sidecar-logging on
  check_access_log sidecar-many-flags off
}

# (x) The ablation: what each part of a request's work costs, by switching it
# off. Every sidecar here is the ablation build with its access log on (the
# default); x0 has everything on, and each next one less. A request no flag
# matches (x4, x5) is passed through: no flag selection, splice, answer judge
# or x-aiflags headers, only what every request gets. Paired rounds of the
# fixed-concurrency load, as (r), against (b), (j) and (k) in the same round:
# (k) forwards without hyper, the HTTP layer's cost without hyper's.
ABLATION=(b j k x0 x1 x2 x3 x4 x5)
case_x() {
  need_upstream
  [ -x "${BENCH_ABLATION_SIDECAR:-}" ] || die "(x) needs the sidecar's ablation build (BENCH_ABLATION_SIDECAR)"
  local -A url server off
  local flagged="$BENCH_BODY" unflagged
  unflagged="$(sed 's/"bench-model"/"bench-unflagged"/' <<<"$BENCH_BODY")"
  start_nginx_proxy
  server[b]=$sid url[b]="http://127.0.0.1:$NGINX_PROXY"
  start_bare_proxy
  server[j]=$sid url[j]="http://127.0.0.1:$BARE"
  start_raw_proxy
  server[k]=$sid url[k]="http://127.0.0.1:$RAW"
  off=([x0]="" [x1]=judge [x2]=report [x3]=judge,report [x4]="" [x5]=report)
  local t port=18120
  for t in x0 x1 x2 x3 x4 x5; do
    start "ablation-$t" 0 env AIFLAGS_ABLATE="${off[$t]}" AIFLAGS_LOG=info "$BENCH_ABLATION_SIDECAR" \
      --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 1))" --access-log stderr \
      --flags "$bench/flags.yaml" --workers 1 --openai-upstream "http://127.0.0.1:$UPSTREAM"
    wait_ready "ablation-$t" "http://127.0.0.1:$((port + 1))/readyz"
    server[$t]=$sid url[$t]="http://127.0.0.1:$port"
    port=$((port + 2))
  done
  body_for() { case "$1" in x4 | x5) BENCH_BODY="$unflagged" ;; *) BENCH_BODY="$flagged" ;; esac; }
  for t in "${ABLATION[@]}"; do
    body_for "$t"
    case "$t" in
      x0 | x1 | x2 | x3) check_chat "$t" "${url[$t]}" x-aiflags-flag bench-split ;;
      *) check_chat "$t" "${url[$t]}" ;;
    esac
    if [[ "$t" == x[45] ]] && grep -qi '^x-aiflags-flag:' "$work/check-$t.head"; then
      die "($t) was meant to match no flag, but a flag served it"
    fi
    warm_up "${url[$t]}" "$warmup"
  done
  local round
  for ((round = 1; round <= rounds; round++)); do
    log "(x) ablation round $round of $rounds: $concurrency connections, ${round_secs}s each, for each of ${ABLATION[*]}"
    for t in $(round_order "$round" "${ABLATION[@]}"); do
      body_for "$t"
      load_concurrency "x:$t" "${server[$t]}" "${url[$t]}" "$round_secs" 0 "concurrency:$round"
    done
  done
  BENCH_BODY="$flagged"
  # What was switched off was off, and only that: the report's access-log
  # lines and request counts, the judge's answer counts (a pass-through
  # request is never judged).
  port=18121
  for t in x0 x1 x2 x3 x4 x5; do
    curl -sf "http://127.0.0.1:$port/metrics" >"$work/ablation-$t.metrics" || die "($t) served no /metrics"
    port=$((port + 2))
  done
  for t in "${ABLATION[@]}"; do stop "${server[$t]}"; done
  local counted judged
  for t in x0 x1 x2 x3 x4 x5; do
    counted="$(grep -c '^aiflags_requests_total{' "$work/ablation-$t.metrics" || true)"
    judged="$(grep -c '^aiflags_answers_total{' "$work/ablation-$t.metrics" || true)"
    if [[ ",${off[$t]}," == *,report,* ]]; then
      check_access_log "ablation-$t" off
      [ "$counted" -eq 0 ] || die "($t) ran with its report off but counted requests"
    else
      check_access_log "ablation-$t" on
      [ "$counted" -gt 0 ] || die "($t) ran with its report on but counted no requests"
      if [[ ",${off[$t]}," == *,judge,* || "$t" == x4 ]]; then
        [ "$judged" -eq 0 ] || die "($t) was not to judge answers but counted verdicts"
      else
        [ "$judged" -gt 0 ] || die "($t) judged no answers"
      fi
    fi
  done
}

case_d() {
  need_upstream
  sed "s|@UPSTREAM@|http://127.0.0.1:$UPSTREAM/v1|g" "$bench/litellm.yaml" >"$work/litellm.yaml"
  # Offline: the bundled cost map, no telemetry, no update checks. The namespace
  # would refuse any outside connection anyway; these keep startup from trying.
  start litellm 0 env LITELLM_MASTER_KEY="$BENCH_KEY" LITELLM_OFFLINE_MODE=true \
    LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=true \
    LITELLM_TELEMETRY=False LITELLM_LOG=ERROR DISABLE_SCHEMA_UPDATE=true NO_DOCS=true \
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    "$litellm" --config "$work/litellm.yaml" --host 127.0.0.1 --port "$LITELLM" --num_workers 1
  wait_ready litellm "http://127.0.0.1:$LITELLM/health/liveliness" 120
  check_chat d "http://127.0.0.1:$LITELLM"
  bench_target d "LiteLLM proxy" "http://127.0.0.1:$LITELLM" "$sid"
  stop "$sid"
}

case_h() {
  need_upstream
  # Portkey takes its routing config per request, in a header; the load
  # generators send it with every request. The gateway runs offline: no
  # account, no cache backend, no UI (--headless), production mode, and
  # bench/lib/loopback-only.cjs keeps it on loopback even outside the namespace.
  BENCH_EXTRA_HEADER="x-portkey-config: $(sed "s|@UPSTREAM@|http://127.0.0.1:$UPSTREAM/v1|g" "$bench/portkey/config.json" | tr -d '\n ')"
  export BENCH_EXTRA_HEADER
  start portkey 0 env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u REDIS_CONNECTION_STRING \
    NODE_ENV=production node --require "$bench/lib/loopback-only.cjs" "$portkey" --port="$PORTKEY" --headless
  wait_ready portkey "http://127.0.0.1:$PORTKEY/" 60
  check_chat h "http://127.0.0.1:$PORTKEY" x-portkey-last-used-option-index
  bench_target h "Portkey gateway" "http://127.0.0.1:$PORTKEY" "$sid"
  stop "$sid"
  BENCH_EXTRA_HEADER=
}

case_e() {
  need_mock
  stream_load e "SSE direct to mock upstream" "http://127.0.0.1:$MOCK" "$mock_sid"
}

case_f() {
  need_mock
  start_sidecar sidecar-streams "$MOCK"
  stream_load f "SSE through the sidecar" "http://127.0.0.1:$SIDECAR" "$sid"
  stop "$sid"
}

# What was measured, for the report's header. LiteLLM's and Portkey's versions
# come from their package metadata: their code runs only as servers under test.
litellm_version="$(compgen -G "$bench/.venv/lib/python3*/site-packages/litellm-*.dist-info" | sed -E 's/.*litellm-([^/]*)\.dist-info/\1/' | head -n1)"
portkey_version="$(sed -nE 's/^  "version": "([^"]*)".*/\1/p' "$bench/portkey/node_modules/@portkey-ai/gateway/package.json" 2>/dev/null | head -n1)"
case "$sidecar_bin" in
  */production/*) build="production build" ;;
  */release/*) build="release build" ;;
  */debug/*) build="debug build" ;;
  *) build="build" ;;
esac
versions="sidecar $("$sidecar_bin" --version | awk '{print $2}') ($build, ${BENCH_SIDECAR_SOURCE:-unknown source}), $(nginx -v 2>&1 | sed 's|.*: ||'), LiteLLM ${litellm_version:-not installed}, Portkey gateway ${portkey_version:-not installed} on Node $(node --version 2>/dev/null | tr -d v), $(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}'), $("$oha" --version)"

load_at_start="$(cut -d' ' -f1 /proc/loadavg)"
cases="$BENCH_CASES"
log "mode $mode; cases $cases; sidecar $sidecar_bin; work dir $work"
for case in a b c j i g r x d h e f; do
  if [[ "$cases" == *"$case"* ]]; then "case_$case"; fi
done

# A smoke run must not overwrite the recorded full results.
report="$bench/results/latest.md"
if [ "$mode" = smoke ]; then report="$bench/results/smoke.md.tmp"; fi
# The ablation alone has its own report.
if [ "$cases" = x ] && [ "$mode" = full ]; then report="$bench/results/ablation.md"; fi
python3 "$bench/lib/report.py" "$results" "$report" --mode "$mode" --cases "$cases" \
  --concurrency "$concurrency" --rate "$rate" --streams "$streams" --seconds "$seconds" \
  --rounds "$rounds" --round-seconds "$round_secs" \
  --metrics "$work/sidecar.metrics" --versions "$versions" --load-start "$load_at_start"
if [ -s "$work/profile.txt" ]; then
  printf '\nProfile of the sidecar under %s connections (%s):\n' "$concurrency" "$work/perf.data"
  cat "$work/profile.txt"
fi
