#!/usr/bin/env bash
# README's test command: installs what the tests need (idempotently), builds once in the release
# profile, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/fixtures.sh
cargo build --release --locked --workspace
cargo test --release --locked --workspace
