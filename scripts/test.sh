#!/usr/bin/env bash
# The test command: installs what is missing, builds, prepares the byte-level test corpus, and runs every
# test suite (under AddressSanitizer/UBSan) plus the end-to-end checks. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
make -j"$(nproc)" WERROR=1 all
./data/build_corpus.sh
make -j"$(nproc)" WERROR=1 test
