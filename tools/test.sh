#!/usr/bin/env bash
# The whole test suite: notebooks and package in sync, clean notebooks, notebook tests,
# docs pre-processing + HTML preview, README in step with nbs/index.ipynb, then pytest.
# Sample data: set MOUSEBEHAV_DATA_DIR to a local copy (e.g. ../shared/data) to run offline.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] && export PATH="$PWD/.venv/bin:$PATH"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MPLBACKEND=Agg PYTHONWARNINGS=ignore
# notebooks run with their own folder as working directory: make the data folder absolute
if [ -n "${MOUSEBEHAV_DATA_DIR:-}" ]; then
  [ -d "$MOUSEBEHAV_DATA_DIR" ] || { echo "MOUSEBEHAV_DATA_DIR=$MOUSEBEHAV_DATA_DIR is not a folder"; exit 2; }
  export MOUSEBEHAV_DATA_DIR="$(cd "$MOUSEBEHAV_DATA_DIR" && pwd)"
fi
t0=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - t0 )) s)"; }

step "notebooks and package in sync (nbdev_export), notebooks clean (nbdev_clean)"
before=$(git status --porcelain -- mousebehav nbs)
nbdev_export
nbdev_clean
after=$(git status --porcelain -- mousebehav nbs)
if [ "$before" != "$after" ]; then
  echo "nbdev_export/nbdev_clean changed files: the notebooks and the package were not in sync, or a notebook was not clean:"
  diff <(echo "$before") <(echo "$after") || true
  exit 1
fi

step "notebook tests (nbdev_test)"
nbdev_test --n_workers 2 --timing ${NBDEV_TEST_FLAGS:+--flags "$NBDEV_TEST_FLAGS"}

step "docs pre-processing (nbdev.serve.proc_nbs) and HTML preview (nbconvert)"
python tools/docs_check.py

step "README in step with nbs/index.ipynb"
python tools/readme.py --check

step "pytest"
python -m pytest -q tests
