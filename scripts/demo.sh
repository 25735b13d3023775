#!/usr/bin/env bash
# README's main command: installs what kao needs (idempotently), builds it, and runs the main job
# on the generated sample video. Outputs go to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/fixtures.sh
cargo build --release --locked --workspace
bin=target/release
out=out/demo
mkdir -p "$out"
# Until detection and embedding land, the main job is decoding: one frame per second of the sample.
"$bin/kao-decode" tests/fixtures/sample.mp4 --fps 1 -o "$out/frames.parquet"
"$bin/kao-cat" "$out/frames.parquet" --summary
echo "kao: frames written to $out/frames.parquet" >&2
