#!/usr/bin/env bash
# README's test command: installs what the tests need (idempotently), builds once in the release
# profile, runs every test of the workspace, and checks that the CUDA build compiles (running it
# needs an NVIDIA GPU: see README, "GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/fixtures.sh
cargo build --release --locked --workspace
cargo test --release --locked --workspace
cargo check --release --locked -p kao-embed -p kao-detect --features kao-embed/cuda,kao-detect/cuda
