#!/usr/bin/env bash
# The Rust notebooks in notebooks/ (evcxr's Jupyter kernel), installed idempotently:
#   scripts/notebooks.sh check   run every notebook top to bottom, headless; fail on any cell error
#                                (executed copies in out/notebooks/); CI runs this from scripts/test.sh
#   scripts/notebooks.sh lab     start JupyterLab on notebooks/
#   scripts/notebooks.sh install install what `check` needs, and stop
# Needs the output of ./scripts/demo.sh (out/demo/), which `check` makes when it is missing.
# Installs: evcxr_jupyter (cargo install, ~10 min once) under ~/.cache/kao/evcxr, a Python venv
# with nbclient (check) or JupyterLab (lab) under ~/.cache/kao/jupyter, the kernel spec "rust"
# (~/.local/share/jupyter/kernels/rust).
# The notebooks' own build (polars and the kao crates, at evcxr's opt-level) is kept in
# /tmp/kao-evcxr-UID (KAO_EVCXR_DIR), so a second run compiles nothing again.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-check}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kao"
evcxr_root="$cache/evcxr"
venv="$cache/jupyter"
evcxr_version=0.22.0

if ! grep -qs "^\"evcxr_jupyter $evcxr_version " "$evcxr_root/.crates.toml"; then
  echo "kao: installing evcxr_jupyter $evcxr_version (once; about 10 minutes on 2 cores)" >&2
  # At opt-level 1: less to compile than at the default 3 (rust-analyzer's crates; not timed
  # alone), and the kernel's own work per cell is small next to compiling the cell.
  cargo install --locked --quiet --config profile.release.opt-level=1 evcxr_jupyter \
    --version "$evcxr_version" --root "$evcxr_root"
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
case "$mode" in
  check|install) "$venv/bin/python" -c 'import nbclient, nbformat' 2>/dev/null \
           || "$venv/bin/pip" install --quiet 'nbclient==0.10.*' 'nbformat==5.*' 'jupyter_client==8.*' ;;
  lab)   "$venv/bin/python" -c 'import jupyterlab' 2>/dev/null || "$venv/bin/pip" install --quiet 'jupyterlab==4.*' ;;
  *)     echo "usage: scripts/notebooks.sh [check|lab|install]" >&2; exit 2 ;;
esac
# The kernel spec "rust" (in ~/.local/share/jupyter/kernels/rust, pointing at this evcxr_jupyter).
"$evcxr_root/bin/evcxr_jupyter" --install >/dev/null
# One evcxr build folder for every notebook and run, with the workspace's versions of the crates.
# Not inside the workspace (cargo would take evcxr's crate for a stray workspace member) and not
# under $HOME: rustc's relative rpath from evcxr's code library to the toolchain's libstd is one
# level short when both lie under the same home folder, and the library then fails to load.
export EVCXR_TMPDIR="${KAO_EVCXR_DIR:-${TMPDIR:-/tmp}/kao-evcxr-$(id -u)}"
mkdir -p "$EVCXR_TMPDIR"
[ -f "$EVCXR_TMPDIR/Cargo.lock" ] || cp Cargo.lock "$EVCXR_TMPDIR/Cargo.lock"

[ "$mode" = install ] && exit 0
if [ "$mode" = lab ]; then
  exec "$venv/bin/jupyter" lab notebooks/
fi
# The check compiles the notebooks' dependencies at opt-level 0 (evcxr's default is 2, for
# JupyterLab): polars then builds in about half the time, and the demo's data is small.
export EVCXR_CONFIG_DIR="$EVCXR_TMPDIR/check-config"
mkdir -p "$EVCXR_CONFIG_DIR"
printf '[evcxr]\nopt_level = "0"\n' >"$EVCXR_CONFIG_DIR/evcxr.toml"
[ -f out/demo/dataset/manifest.parquet ] && [ -f out/demo/labelled.parquet ] || ./scripts/demo.sh
mkdir -p out/notebooks
"$venv/bin/python" - notebooks/*.ipynb <<'EOF'
import sys, time, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
failed = 0
for path in sys.argv[1:]:
    book = nbformat.read(path, as_version=4)
    start = time.time()
    client = NotebookClient(book, kernel_name="rust", timeout=1800, resources={"metadata": {"path": "notebooks"}})
    try:
        client.execute()
        status = "ok"
    except CellExecutionError as e:
        failed += 1
        # evcxr puts the compiler's message in the error output's value, not in a traceback.
        errors = [o.get("evalue", "") for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        status = "FAILED\n" + str(e)[-3000:] + "\n" + "\n".join(errors)[-3000:]
    out = "out/notebooks/" + path.rsplit("/", 1)[-1]
    nbformat.write(book, out)
    print(f"notebook {path}: {status} ({time.time() - start:.0f} s, executed copy in {out})", file=sys.stderr)
sys.exit(1 if failed else 0)
EOF
