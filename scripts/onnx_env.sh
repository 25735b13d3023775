#!/usr/bin/env bash
# Sets up (idempotently) the Python venv used by the ONNX test-fixture scripts and by kao's ONNX
# support: ONNX Runtime's libonnxruntime.so comes from the PyPI wheel installed here.
#   ./scripts/onnx_env.sh            create/update the venv; prints nothing when already set up
#   ./scripts/onnx_env.sh --ort-lib  also print the absolute path of the wheel's libonnxruntime.so*
#                                    (for ORT_DYLIB_PATH)
#   ./scripts/onnx_env.sh --python   also print the venv's python
# The venv lives at ${XDG_CACHE_HOME:-$HOME/.cache}/kao/pyenv; a marker file in it holds the pinned
# list, and the venv is (re)installed whenever the marker differs from PINS below.
set -euo pipefail
venv="${XDG_CACHE_HOME:-$HOME/.cache}/kao/pyenv"
# Direct pins first, then their dependencies as pip resolved them (python 3.11).
PINS="numpy==2.4.6 onnx==1.23.2 onnxruntime==1.31.1 pillow==12.0.0 \
ml_dtypes==0.7.0 protobuf==7.36.2 typing_extensions==4.16.0 flatbuffers==25.12.19 packaging==26.4"
marker="$venv/.kao-pins"

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$marker" 2>/dev/null)" != "$PINS" ]; then
  echo "kao: setting up the ONNX venv in $venv" >&2
  mkdir -p "$(dirname "$venv")"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $PINS >&2
  printf '%s' "$PINS" > "$marker"
fi

for arg in "$@"; do
  case "$arg" in
    --ort-lib)
      capi=$("$venv/bin/python" -c 'import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')
      lib=$(ls "$capi"/libonnxruntime.so* 2>/dev/null | sort | head -n1)
      [ -n "$lib" ] || { echo "kao: no libonnxruntime.so* in $capi" >&2; exit 1; }
      readlink -f "$lib" ;;
    --python) echo "$venv/bin/python" ;;
    *) echo "usage: $0 [--ort-lib] [--python]" >&2; exit 2 ;;
  esac
done
