#!/usr/bin/env bash
# Submits the array and its dependent merge: submit.sh VIDEOS.txt REFS_DIR RUN_DIR TASKS
# (docs/scale-out.md). Run it again after failures: finished videos are skipped.
set -euo pipefail
list=${1:?usage: submit.sh VIDEOS.txt REFS_DIR RUN_DIR TASKS}
refs=${2:?usage: submit.sh VIDEOS.txt REFS_DIR RUN_DIR TASKS}
run=${3:?usage: submit.sh VIDEOS.txt REFS_DIR RUN_DIR TASKS}
tasks=${4:?usage: submit.sh VIDEOS.txt REFS_DIR RUN_DIR TASKS}
here=$(dirname "$0")
array=$(sbatch --parsable --array=0-$((tasks - 1)) "$here/kao-array.sbatch" "$list" "$refs" "$run")
sbatch --parsable --dependency="afterany:${array%%;*}" "$here/kao-merge.sbatch" "$run"
