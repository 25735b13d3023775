#!/usr/bin/env bash
# README's test command: installs what the tests need (idempotently), builds once in the release
# profile, runs every test, and checks that the CUDA build compiles (running it needs an NVIDIA
# GPU: see README, "GPU"). Ends with one line counting every test.
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
trap 'rm -f "$log" "${evcxr_log:-}"; [ -z "${evcxr_pid:-}" ] || kill "$evcxr_pid" 2>/dev/null || true' EXIT
step() { echo "kao: $1 ($(date -u +%H:%M:%S))" >&2; }
if [ "$steps" != stages ]; then
  # evcxr_jupyter takes about 10 minutes of CPU to build: build it beside the stages, whose build
  # and tests leave one core idle much of the time.
  evcxr_log=$(mktemp)
  ./scripts/notebooks.sh install >"$evcxr_log" 2>&1 &
  evcxr_pid=$!
fi

step "stages: build"
# polars must stay out of the stage binaries (it would double the build).
if cargo tree --locked -e normal | grep -q polars; then echo "kao: polars reached the default members" >&2; exit 1; fi
cargo build --release --locked
step "stages: tests"
cargo test --release --locked 2>&1 | tee "$log"
step "stages: CUDA build check"
cargo check --release --locked -p kao-embed -p kao-detect -p kao-match -p kao-extract --features kao-embed/cuda,kao-detect/cuda,kao-match/cuda,kao-extract/cuda

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
  # The default members with kao-tests' (empty) feature: the features the stage build resolved,
  # so nothing but the test itself compiles (`-p kao-tests` alone resolved fewer and rebuilt
  # ~70 crates).
  cargo test --release --locked --features kao-tests/report --test report 2>&1 | tee -a "$log"
  step "analysis: notebooks"
  wait "$evcxr_pid" || { cat "$evcxr_log" >&2; echo "kao: installing the notebook kernel failed" >&2; exit 1; }
  ./scripts/notebooks.sh check 2>&1 | tee -a "$log"
fi
step "done"
count() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'; }
notebooks=$(grep -cE '^notebook .*: ok ' "$log" || true)
echo "tests: $(count passed) passed, $(count failed) failed; notebooks: ${notebooks} ran clean"
