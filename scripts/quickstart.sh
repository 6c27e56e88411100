#!/usr/bin/env bash
# From a fresh Debian 12 machine to a trained model: installs what is missing, builds, builds the English
# corpus and its GPT-2 tokens, and trains the given config (default: loglinear_mamba2.json).
#   ./scripts/quickstart.sh [CONFIG] [--KEY VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-loglinear_mamba2.json}
[ $# -gt 0 ] && shift
./scripts/setup.sh
make -j"$(nproc)" all
./data/build_corpus.sh
./train --config "$config" "$@"
