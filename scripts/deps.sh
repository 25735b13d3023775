#!/usr/bin/env bash
# Installs what kao needs to build and run, idempotently: Debian packages (FFmpeg libraries and
# CLI, clang for bindgen), the model files (python3 models/fetch.py), and ONNX Runtime's library
# for user-supplied ONNX models (PyPI's onnxruntime wheel in a venv: scripts/onnx_env.sh), and
# GStreamer's RTSP server for the live-input tests, Slurm for the scale-out test, and moto's S3
# server (PyPI, in a venv: scripts/moto_env.sh) for the object-storage test.
# `deps.sh --browser` also installs Debian's chromium, for the report's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's libavcodec comes with libx264, the H.264 encoder kao-preview writes with.
packages=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
          libavdevice-dev libavfilter-dev pkg-config clang libclang-dev ffmpeg
          # The RTSP tests' server (tests/rtsp_server.py): GStreamer's RTSP server from Python.
          python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
          gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
          # The scale-out test's single-node Slurm (tests/shards.rs starts its own daemons).
          slurmctld slurmd slurm-client munge)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
[ "${1:-}" = --browser ] && packages+=(chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "kao: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 models/fetch.py
./scripts/onnx_env.sh
./scripts/moto_env.sh
