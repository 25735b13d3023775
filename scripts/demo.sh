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
# Until matching and alignment land, the main job ends at embedded face records: decode two
# frames per second of the sample, detect the faces, embed them.
"$bin/kao-decode" tests/fixtures/sample.mp4 --fps 2 | "$bin/kao-detect" | "$bin/kao-embed" -o "$out/faces.parquet"
"$bin/kao-cat" "$out/faces.parquet" --summary
echo "kao: face records (boxes, landmarks, patches, embeddings) in $out/faces.parquet" >&2
