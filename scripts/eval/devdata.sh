#!/usr/bin/env bash
# Runs kao-extract on every case of ../shared/devdata/cases.tsv and scores it with score.py.
# Usage: scripts/eval/devdata.sh [OUT_DIR] [extra kao-extract options...]
# Needs a release build, the models (scripts/deps.sh) and a python3 with pyarrow
# (set PYTHON=...; default: python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${KAO_DEVDATA:-../shared/devdata}
out=${1:-/tmp/kao-eval/devdata}
shift || true
python=${PYTHON:-python3}
mkdir -p "$out"
printf '%-22s %8s %8s %9s %7s %7s %6s\n' case frames wall_s recall precision fp_rows crops
tail -n +2 "$data/cases.tsv" | while IFS=$'\t' read -r case video frames _w _h ref_dir target _rest; do
  rm -rf "$out/$case"
  start=$(date +%s.%N)
  target/release/kao-extract "$data/$video" --ref "$data/$ref_dir" --out "$out/$case" -q "$@"
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  "$python" "$data/score.py" "$case" "$out/$case/manifest.parquet" > "$out/$case.score.json"
  "$python" - "$out/$case.score.json" "$case" "$frames" "$wall" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<22} {sys.argv[3]:>8} {float(sys.argv[4]):>8.1f} {j['recall'] if j['recall'] is not None else '-':>9} {j['precision'] if j['precision'] is not None else '-':>7} {j['fp_rows']:>7} {j['crops_written']:>6}")
PY
done
