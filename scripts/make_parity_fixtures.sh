#!/usr/bin/env bash
# Regenerates the PyTorch parity fixtures tests/fixtures/parity_*.safetensors that tests/test_parity.c
# checks the C forward/backward and AdamW against, with the float64 reference tests/parity_reference.py.
# Needs Debian's PyTorch (LOGLINEAR_TORCH=1 ./scripts/setup.sh, or apt-get install python3-torch);
# `make test` only reads the committed fixtures. Usage: ./scripts/make_parity_fixtures.sh [outdir]
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's python3 (/usr/bin/python3) has python3-torch; a pyenv python3 earlier on PATH may not.
PY=/usr/bin/python3
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "make_parity_fixtures: $PY cannot import torch; install it with: LOGLINEAR_TORCH=1 ./scripts/setup.sh" >&2
    exit 1
fi
"$PY" tests/parity_reference.py "${1:-tests/fixtures}"
