#!/usr/bin/env bash
# README's main command: installs what kao needs (idempotently), builds it, and runs the main job
# on the generated sample video with a reference photo that is not in the video.
# Outputs: out/demo/dataset/ (crops by identity, manifest.parquet).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/fixtures.sh
cargo build --release --locked --workspace
bin=target/release
out=out/demo
# The reference: a third photo of Obama (the sample shows two others, then Biden and an astronaut).
mkdir -p "$out/refs/obama"
cp tests/fixtures/photos/obama3.jpg "$out/refs/obama/"
"$bin/kao-extract" tests/fixtures/sample.mp4 --ref "$out/refs" --out "$out/dataset"
"$bin/kao-cat" "$out/dataset/manifest.parquet" --summary
echo "kao: crops in $out/dataset/obama/, every face record in $out/dataset/manifest.parquet" >&2
