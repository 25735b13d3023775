#!/usr/bin/env bash
# README's main command: installs what kao needs (idempotently), builds it, and runs the main job
# on the generated sample video with a reference photo that is not in the video.
# Outputs: out/demo/dataset/ (crops by identity, manifest.parquet), and a small
# labelled face set for notebooks/thresholds.ipynb (out/demo/labelled/, out/demo/labelled.parquet).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/fixtures.sh
cargo build --release --locked
bin=target/release
out=out/demo
# The reference: a third photo of Obama (the sample shows two others, then Biden and an astronaut).
mkdir -p "$out/refs/obama"
cp tests/fixtures/photos/obama3.jpg "$out/refs/obama/"
# A fresh folder each time: a kept one from another kao version may hold other columns.
rm -rf "$out/dataset"
"$bin/kao-extract" tests/fixtures/sample.mp4 --ref "$out/refs" --out "$out/dataset"
"$bin/kao-cat" "$out/dataset/manifest.parquet" --summary
# The sample's photos by person, embedded with kao's own stages: the notebooks' labelled face set.
for who in obama biden astronaut; do mkdir -p "$out/labelled/$who"; done
cp tests/fixtures/photos/obama.jpg tests/fixtures/photos/obama2.jpg tests/fixtures/photos/obama3.jpg \
  tests/fixtures/photos/obama_partial_face.jpg "$out/labelled/obama/"
cp tests/fixtures/photos/biden.jpg "$out/labelled/biden/"
cp tests/fixtures/photos/astronaut.png "$out/labelled/astronaut/"
"$bin/kao-decode" "$out"/labelled/*/* | "$bin/kao-detect" --detector mmod --detect-width 640 \
  | "$bin/kao-embed" -o "$out/labelled.parquet"
echo "kao: crops in $out/dataset/obama/, every face record in $out/dataset/manifest.parquet;" \
  "for tables and an HTML page: just report (kao-report $out/dataset)" >&2
