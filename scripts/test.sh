#!/usr/bin/env bash
# README's test command: installs what the tests need (idempotently), builds once in the release
# profile, runs every test of the workspace, and checks that the CUDA build compiles (running it
# needs an NVIDIA GPU: see README, "GPU"). Ends with one line counting every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/fixtures.sh
cargo build --release --locked --workspace
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --release --locked --workspace 2>&1 | tee "$log"
cargo check --release --locked -p kao-embed -p kao-detect -p kao-match -p kao-extract --features kao-embed/cuda,kao-detect/cuda,kao-match/cuda,kao-extract/cuda
count() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'; }
echo "tests: $(count passed) passed, $(count failed) failed"
