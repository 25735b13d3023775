#!/usr/bin/env bash
# Coverage-guided fuzzing of the targets in fuzz/ (docs/fuzzing.md) on nightly Rust, as CI runs
# it: builds every target once (profile `fuzz` of fuzz/Cargo.toml: libFuzzer's coverage
# instrumentation, LeakSanitizer, debug assertions and overflow checks), then runs each for
# KAO_FUZZ_SECONDS (default 20), as many at a time as there are cores. Fails on a crash, a leak,
# an input using over 2 GB or one running over 30 s; the input is left in
# fuzz/artifacts/<target>/. A target with a known crash awaiting its fix
# (fuzz/regressions-open/<target>/) is skipped. New inputs go to a scratch folder, never to the
# committed corpora.
#
#   scripts/fuzz.sh                  every target
#   scripts/fuzz.sh dat tflite       these targets
#   KAO_FUZZ_SECONDS=300 scripts/fuzz.sh onnx
#
# No cargo-fuzz needed (its build takes 2.5 times the CPU: AddressSanitizer and one codegen unit on
# every crate; `cargo +nightly fuzz run` stays the tool for digging into one target).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${KAO_FUZZ_SECONDS:-20}"
jobs="${KAO_FUZZ_JOBS:-$(nproc)}"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi

triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
# --target keeps these flags (and the profile's) off build scripts and proc macros. The coverage
# flags are the profile's (per crate); the sanitizer must be the same on every crate.
RUSTFLAGS="--cfg fuzzing -Zsanitizer=leak" cargo +nightly build --locked \
  --manifest-path fuzz/Cargo.toml --target "$triple" --profile fuzz --bins
bin_dir="${CARGO_TARGET_DIR:-fuzz/target}/$triple/fuzz"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# One target: libFuzzer's own loop over the corpus, then new inputs for `seconds`.
run_one() {
  local target=$1
  mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
  local status=0
  # Allocations fail as they do outside the sanitizer (null, not a report), and their size alone
  # is no finding: arrow's IPC file reader asks for a block's declared length (288 PB in
  # fuzz/regressions/records_parquet/block_length_huge.arrow) and returns an error when it
  # cannot have it. What an input really uses is (RSS over 2 GB fails), and so is an infallible
  # allocation that fails (Rust aborts).
  LSAN_OPTIONS="allocator_may_return_null=1${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    "$bin_dir/$target" "$scratch/$target" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=1048576 \
    -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" >"$scratch/$target.log" 2>&1 || status=$?
  echo "$status" >"$scratch/$target.status"
}
ran=()
for target in "${targets[@]}"; do
  if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
    echo "kao: no fuzz target $target (fuzz/fuzz_targets/)" >&2
    exit 1
  fi
  if [ -n "$(ls -A "fuzz/regressions-open/$target" 2>/dev/null)" ]; then
    echo "kao: fuzz target $target skipped: open crash in fuzz/regressions-open/$target/" >&2
    continue
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_one "$target" &
  ran+=("$target")
done
wait

failed=()
for target in "${ran[@]}"; do
  log="$scratch/$target.log"
  status=$(cat "$scratch/$target.status")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
  if [ "$status" = 0 ]; then
    echo "kao: fuzz $target: ${runs:-?} runs in ${seconds} s, ${cov:-no coverage line}, clean" >&2
  else
    tail -n 40 "$log" >&2
    echo "kao: fuzz $target failed (exit $status): its input is in fuzz/artifacts/$target/" >&2
    failed+=("$target")
  fi
done
[ ${#failed[@]} = 0 ] || { echo "kao: fuzzing failed: ${failed[*]}" >&2; exit 1; }
