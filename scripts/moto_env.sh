#!/usr/bin/env bash
# Sets up (idempotently) the venv of the local S3 server the object-storage tests run against
# (tests/shards.rs starts and stops it): moto's server from PyPI, pinned. Prints nothing when
# already set up; `--bin` prints the server's path.
set -euo pipefail
venv="${XDG_CACHE_HOME:-$HOME/.cache}/kao/moto"
PINS="moto[server]==5.2.5"
marker="$venv/.kao-pins"
if [ ! -x "$venv/bin/moto_server" ] || [ "$(cat "$marker" 2>/dev/null)" != "$PINS" ]; then
  echo "kao: setting up the S3 test server's venv in $venv" >&2
  mkdir -p "$(dirname "$venv")"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $PINS >&2
  printf '%s' "$PINS" > "$marker"
fi
[ "${1:-}" != --bin ] || echo "$venv/bin/moto_server"
