#!/usr/bin/env bash
# Submits the array and its dependent merge:
#   submit.sh VIDEOS.txt REFS_DIR RUN_DIR TASKS [KAO-EXTRACT OPTION...]
# (docs/scale-out.md). Prints the array's job id, then the merge's. Run it again after
# failures: finished videos are skipped.
set -euo pipefail
usage="usage: submit.sh VIDEOS.txt REFS_DIR RUN_DIR TASKS [KAO-EXTRACT OPTION...]"
list=${1:?$usage}
refs=${2:?$usage}
run=${3:?$usage}
tasks=${4:?$usage}
shift 4
here=$(dirname "$0")
array=$(sbatch --parsable --array=0-$((tasks - 1)) "$here/kao-array.sbatch" "$list" "$refs" "$run" "$@")
echo "${array%%;*}"
sbatch --parsable --dependency="afterany:${array%%;*}" "$here/kao-merge.sbatch" "$run"
