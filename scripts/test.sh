#!/usr/bin/env bash
# README's test command: installs what the tests need (idempotently), builds once in the release
# profile, runs every test, and checks that the CUDA build compiles (running it needs an NVIDIA
# GPU: see docs/gpu.md). Ends with one line counting every test.
#
# Two steps, so the default build stays lean:
#   1. the stages: the workspace's default members (no polars), their tests, the CUDA check;
#   2. the analysis: kao-analysis and kao-report (polars), the report's browser test in headless
#      Chromium, and every notebook run top to bottom (scripts/notebooks.sh check).
# KAO_TEST_STEPS=stages runs step 1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${KAO_TEST_STEPS:-all}"
./scripts/deps.sh $([ "$steps" = stages ] || echo --browser)
./scripts/fixtures.sh
log=$(mktemp)
# Background jobs run in sessions of their own (setsid), so that an early exit stops them whole.
stop_jobs() {
  for pid in "${evcxr_pid:-}" "${notebooks_pid:-}"; do
    [ -z "$pid" ] || kill -- "-$pid" 2>/dev/null || true
  done
  rm -f "$log" "${evcxr_log:-}" "${notebooks_log:-}" "${default_build:-}" "${feature_build:-}"
}
trap stop_jobs EXIT
step() { echo "kao: $1 ($(date -u +%H:%M:%S))" >&2; }
if [ "$steps" != stages ]; then
  # evcxr_jupyter takes about 10 minutes of CPU to build: build it beside the stages, whose build
  # and tests leave one core idle much of the time.
  evcxr_log=$(mktemp)
  setsid ./scripts/notebooks.sh install >"$evcxr_log" 2>&1 &
  evcxr_pid=$!
fi

step "stages: build"
# fuzz/ is a workspace of its own with its own lock file, which a dependency change of the main
# workspace must refresh (`cargo +nightly metadata --offline --manifest-path fuzz/Cargo.toml`):
# say so now rather than at the fuzzing step, after the build and the tests.
if [ "${KAO_FUZZ_SECONDS:-20}" != 0 ] && rustup toolchain list | grep -q '^nightly' &&
  ! cargo +nightly metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null; then
  echo "kao: fuzz/Cargo.lock is out of date: run cargo +nightly metadata --offline --manifest-path fuzz/Cargo.toml" >&2
  exit 1
fi
# polars must stay out of the stage binaries (it would double the build).
if cargo tree --locked -e normal | grep -q polars; then echo "kao: polars reached the default members" >&2; exit 1; fi
cargo build --release --locked
step "stages: tests"
cargo test --release --locked 2>&1 | tee "$log"
# Object storage (docs/scale-out.md): kao-extract and kao-merge with kao-cli's `object-store` feature,
# tested against moto's S3 server (tests/shards.rs, the tests named s3_*). This build replaces
# kao-cli's binaries in target/release, so it comes after the tests of the default build; the
# plain `cargo build` after it puts the default binaries back (their artifacts are still there:
# nothing compiles). The default build already switches on every feature of a shared crate that the
# feature's crates ask for (kao-pipeline's Cargo.toml), so this step compiles only object_store
# and its HTTP stack, not arrow, parquet and burn again (docs/build-budget.md); compiled_twice.py
# fails the step when that stops being true.
# KAO_TEST_OBJECT_STORE=0 skips it.
if [ "${KAO_TEST_OBJECT_STORE:-1}" = 1 ]; then
  step "stages: object storage"
  object_store=kao-cli/object-store
  default_build=$(mktemp) feature_build=$(mktemp)
  cargo build --release --locked --message-format=json >"$default_build"
  cargo build --release --locked --features "$object_store" --message-format=json-render-diagnostics >"$feature_build"
  python3 scripts/compiled_twice.py "$default_build" "$feature_build"
  rm -f "$default_build" "$feature_build"
  cargo test --release --locked --features "$object_store,kao-tests/object-store" --test shards -- s3_ 2>&1 | tee -a "$log"
  cargo build --release --locked
else
  echo "kao: object-storage tests skipped (KAO_TEST_OBJECT_STORE=0)" >&2
fi
# Fuzzing (docs/fuzzing.md): every target for KAO_FUZZ_SECONDS (default 20; 0 skips it) when
# a nightly toolchain is installed, two at a time on two cores, but not a target whose known
# crash awaits a fix (fuzz/regressions-open/). scripts/fuzz.sh's lean build of the targets (no
# AddressSanitizer, opt-level 0 outside the parsers: 11.4 CPU-minutes against cargo fuzz
# build's 28.9) and the runs add about 8 minutes on 2 cores. `cargo test` above always replays
# the corpora and regressions.
fuzz_seconds="${KAO_FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" != 0 ] && rustup toolchain list | grep -q '^nightly'; then
  step "stages: fuzzing"
  KAO_FUZZ_SECONDS="$fuzz_seconds" ./scripts/fuzz.sh
else
  echo "kao: timed fuzzing skipped (KAO_FUZZ_SECONDS=0 or no nightly toolchain); cargo test replayed the corpora" >&2
fi
if [ "$steps" != stages ]; then
  # The notebooks (evcxr compiling polars and kao-analysis, then running each notebook) beside
  # the CUDA check and the analysis build: both builds spend long stretches on one core.
  step "analysis: notebooks started"
  # The notebooks read the demo's output; made here, as its `cargo build` would otherwise wait
  # for the builds below to let go of target/.
  ./scripts/demo.sh >&2
  wait "$evcxr_pid" || { cat "$evcxr_log" >&2; echo "kao: installing the notebook kernel failed" >&2; exit 1; }
  evcxr_pid=
  notebooks_log=$(mktemp)
  setsid ./scripts/notebooks.sh check >"$notebooks_log" 2>&1 &
  notebooks_pid=$!
fi
step "stages: CUDA build check"
cargo check --release --locked -p kao-cli --features kao-cli/cuda
# Habits (docs/testing.md): formatting, clippy's lints as errors, and docs without broken links;
# after the CUDA check, whose check-mode dependencies clippy and rustdoc mostly reuse.
step "stages: fmt, clippy, doc"
cargo fmt --all --check
cargo clippy --release --locked --all-targets -- -D warnings
if [ "${KAO_TEST_OBJECT_STORE:-1}" = 1 ]; then
  # After the default clippy, so only the feature's crates are checked here.
  cargo clippy --release --locked --all-targets --features kao-cli/object-store,kao-tests/object-store -- -D warnings
fi
RUSTDOCFLAGS="-D warnings" cargo doc --release --locked --no-deps

if [ "$steps" != stages ]; then
  # polars at opt-level 0 here: its optimised build was the longest step of the run, and the
  # tests' data is small (`just report` builds it optimised, as users get it). Only polars'
  # own crates: the rest of the tree keeps the stage build's artifacts.
  unoptimised=()
  for crate in polars polars-arrow polars-arrow-format polars-async polars-buffer \
    polars-compute polars-config polars-core polars-dtype polars-error polars-io polars-ops \
    polars-parquet polars-parquet-format polars-row polars-schema polars-utils; do
    unoptimised+=(--config "profile.release.package.$crate.opt-level=0")
  done
  step "analysis: build (polars)"
  cargo build --release --locked "${unoptimised[@]}" -p kao-report
  step "analysis: tests"
  cargo test --release --locked "${unoptimised[@]}" -p kao-analysis -p kao-report 2>&1 | tee -a "$log"
  cargo clippy --release --locked "${unoptimised[@]}" -p kao-analysis -p kao-report --all-targets -- -D warnings
  RUSTDOCFLAGS="-D warnings" cargo doc --release --locked --no-deps "${unoptimised[@]}" -p kao-analysis -p kao-report
  # The default members with kao-tests' (empty) feature: the features the stage build resolved,
  # so nothing but the test itself compiles (`-p kao-tests` alone resolved fewer and rebuilt
  # ~70 crates).
  cargo test --release --locked --features kao-tests/report --test report 2>&1 | tee -a "$log"
  step "analysis: notebooks"
  notebooks_ok=true
  wait "$notebooks_pid" || notebooks_ok=false
  notebooks_pid=
  tee -a "$log" <"$notebooks_log"
  $notebooks_ok || { echo "kao: a notebook failed (above)" >&2; exit 1; }
fi
step "done"
count() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'; }
notebooks=$(grep -cE '^notebook .*: ok ' "$log" || true)
echo "tests: $(count passed) passed, $(count failed) failed; notebooks: ${notebooks} ran clean"
