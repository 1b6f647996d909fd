#!/usr/bin/env bash
# Set up .venv for diffvm: `scripts/setup.sh` for running, `scripts/setup.sh dev` for the tests.
# The venv sees system site-packages, so a torch that is already installed is left alone; where
# torch is missing, the CPU build is installed before diffvm, so pip never pulls CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
TORCH_CPU=${TORCH_CPU:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: torch not found; installing the CPU build ($TORCH_CPU)"
  .venv/bin/pip install -q "$TORCH_CPU"
fi
if [ "${1:-}" = "dev" ]; then
  .venv/bin/pip install -q -e ".[dev,kernels]"
else
  .venv/bin/pip install -q -e .
fi
