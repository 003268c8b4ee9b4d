#!/usr/bin/env bash
# Set up a virtual environment in .venv with mousebehav installed (editable).
#   bash tools/setup.sh        # the package and its runtime needs
#   bash tools/setup.sh dev    # + notebooks, nbdev and test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision first: a pair that imports together (see README, "Installing")
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
if [ "${1:-}" = dev ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  .venv/bin/python -m pip install -q -e .
fi
.venv/bin/python -c "import mousebehav, torch, cv2; print('mousebehav', mousebehav.__version__, '| torch', torch.__version__, '| opencv', cv2.__version__)"
