#!/usr/bin/env bash
# Runs the sidecar's cargo-fuzz targets for a bounded time each, starting from
# the committed seed corpus and the reproducers of past findings.
# Usage: scripts/fuzz.sh [target...]
#   FUZZ_SECONDS         seconds per target (default 20)
# Every seed and reproducer is first run once at its full size (the corpus
# holds one 1 MB body); fuzzing then mutates inputs of up to 16 KiB. New
# corpus entries go to a temporary copy and are thrown away. A failing input
# is printed, kept under sidecar/fuzz/artifacts/<target>/, and fails the run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/sidecar/fuzz"

seconds="${FUZZ_SECONDS:-20}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(sse_stream request_rewrite request_decode answer_judge)
fi

step() { printf '\n==> %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  start=$SECONDS
  cargo install cargo-fuzz --locked
  echo "installed in $((SECONDS - start))s"
fi

# cargo-fuzz passes rustc flags that are nightly-only for some sanitizers.
export RUSTC_BOOTSTRAP=1
# Coverage-guided libFuzzer with debug assertions and overflow checks, built
# with the dev profile of sidecar/fuzz/Cargo.toml, which optimises only the
# crates on the fuzzed path: a third of the CPU time of cargo-fuzz's default
# optimised build, and runs as fast. No AddressSanitizer: the sidecar's
# crates forbid unsafe code (the allocator, aiflags-alloc, is not on the
# fuzzed path), so it would mostly watch dependencies, at a
# slower build and a several times slower run.
build=(--dev --sanitizer none)

step "building fuzz targets"
start=$SECONDS
cargo fuzz build "${build[@]}"
echo "built in $((SECONDS - start))s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  step "fuzzing $target for ${seconds}s"
  corpus="$work/corpus/$target"
  artifacts="$work/artifacts/$target"
  log="$work/$target.log"
  mkdir -p "$corpus" "$artifacts"
  cp -R "corpus/$target/." "$corpus/"
  if [ -d "regressions/$target" ]; then
    cp -R "regressions/$target/." "$corpus/"
  fi
  # -runs=0: every input once, at its full size, and no fuzzing.
  if cargo fuzz run "${build[@]}" "$target" "$corpus" -- -runs=0 -timeout=60 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 &&
    cargo fuzz run "${build[@]}" "$target" "$corpus" -- \
      -max_total_time="$seconds" -max_len=16384 -timeout=10 \
      -dict="dict/$target.dict" -artifact_prefix="$artifacts/" >>"$log" 2>&1; then
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done )' "$log" || tail -n 3 "$log"
    continue
  fi
  failed+=("$target")
  # The panic message and stack, without the recommended dictionary.
  grep -v '^"' "$log" | tail -n 80
  mkdir -p "artifacts/$target"
  for input in "$artifacts"/*; do
    [ -e "$input" ] || continue
    name="$(basename "$input")"
    cp "$input" "artifacts/$target/"
    echo "--- failing input $name, base64:"
    base64 "$input"
    echo "--- replay: scripts/fuzz.sh is built with '${build[*]}';" \
      "RUSTC_BOOTSTRAP=1 cargo fuzz run ${build[*]} $target artifacts/$target/$name (in sidecar/fuzz)"
  done
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing passed: ${targets[*]}"
