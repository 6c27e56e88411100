#!/bin/sh
# bench_side_by_side.sh — loglinear.c's benchmarks and the plain PyTorch peers (what a user would run
# instead) in one run, same machine, same thread counts, and the ratios PyTorch ms / loglinear.c ms.
#
#   ./scripts/bench_side_by_side.sh [--peers DIR] [--threads "2 16"] [--python PYTHON]
#
# DIR holds peer_scan_bench.py and peer_transformer_bench.py (default: $LOGLINEAR_PEERS, else
# ../shared/peers beside the checkout); they are not part of the project. PYTHON (default: $PYTHON, else
# python3) must import torch, otherwise only loglinear.c's figures are printed. Threads default to 2 and
# all cores. The peers run with the OpenBLAS core our benchmarks use (OPENBLAS_CORETYPE), so a torch
# built on OpenBLAS gets the same fast kernels; one built with MKL ignores it.
# Compared (forward + backward, B=1, 8 heads, d_k = d_v = 64, Mamba-2 N = 64, chunk 64): softmax attention,
# Mamba-2 SSD, Gated DeltaNet, log-linear Mamba-2, log-linear GDN at T = 1024..8192, and the Transformer
# training step of `make bench` (d=512, 8 layers, T=1024, B=4, V=50257).
set -eu
cd "$(dirname "$0")/.."
peers=${LOGLINEAR_PEERS:-../shared/peers}
python=${PYTHON:-python3}
threads=$(printf '2\n%s\n' "$(nproc)" | sort -n -u | tr '\n' ' ')
while [ $# -gt 0 ]; do
    case $1 in
        --peers) peers=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
have_torch=1
if [ ! -f "$peers/peer_scan_bench.py" ] || [ ! -f "$peers/peer_transformer_bench.py" ]; then
    echo "note: no peers in $peers (peer_scan_bench.py, peer_transformer_bench.py); give --peers DIR. loglinear.c only."
    have_torch=0
elif ! "$python" -c 'import torch' 2>/dev/null; then
    echo "note: $python cannot import torch (LOGLINEAR_TORCH=1 ./scripts/setup.sh installs it); loglinear.c only."
    have_torch=0
fi
make -s build/rel/bench_scan build/rel/bench_model
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
Ts="1024 2048 4096 8192"
for n in $threads; do
    echo "=== $n thread(s): loglinear.c ==="
    : > "$tmp/ours.$n"
    for b in "build/rel/bench_scan" "build/rel/bench_model --transformer-only"; do
        # shellcheck disable=SC2086
        { OMP_NUM_THREADS=$n ./$b && echo 0 > "$tmp/rc" || echo $? > "$tmp/rc"; } | tee -a "$tmp/ours.$n"
        [ "$(cat "$tmp/rc")" = 0 ] || { echo "error: ./$b failed at $n threads" >&2; exit 1; }
    done
    awk -f scripts/bench_parse.awk "$tmp/ours.$n" > "$tmp/ms.$n"
    : > "$tmp/peer.$n"
    if [ $have_torch = 1 ]; then
        core=$(sed -n 's/.*OpenBLAS core \([A-Za-z0-9]*\).*/\1/p' "$tmp/ours.$n" | head -1)
        echo "=== $n thread(s): PyTorch peers ($python, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$core}) ==="
        # shellcheck disable=SC2086
        OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$core} "$python" "$peers/peer_scan_bench.py" bench --tag "threads$n" \
            --threads "$n" --T $Ts --out "$tmp/peer.$n.json"
        "$python" - "$tmp/peer.$n.json" >> "$tmp/peer.$n" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["runs"]:
    if "median_ms" in r:
        print(f"peer/{r['mixer']}/T{r['T']}\t{r['median_ms']:.2f}")
EOF
        OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$core} "$python" "$peers/peer_transformer_bench.py" 512 8 1024 4 50257 "$n" |
            tee "$tmp/peer_tf.$n"
        sed -n 's/.* \([0-9.]*\) ms\/step.*/peer\/transformer_step\t\1/p' "$tmp/peer_tf.$n" >> "$tmp/peer.$n"
    fi
done

echo
echo "=== side by side (ms; ratio = PyTorch / loglinear.c, > 1: loglinear.c is faster) ==="
for n in $threads; do
    echo
    echo "$n thread(s), $(sed -n 's/^scan benchmark: //p' "$tmp/ours.$n" | head -1)"
    awk -v Ts="$Ts" '
        { v[$1] = $2 }
        END {
            nT = split(Ts, T, " ")
            split("softmax mamba2 gdn ll_mamba2 ll_gdn", peer, " ")
            split("attention/c-/N- ssd/c64/N64 gdn/c64/N64 loglinear/c64/N64 ll-gdn/c64/N64", ours, " ")
            printf "%-22s %6s | %14s | %11s | %6s\n", "mixer (fwd+bwd)", "T", "loglinear.c", "PyTorch", "ratio"
            for (m = 1; m <= 5; m++)
                for (i = 1; i <= nT; i++) {
                    a = v["scan/" ours[m] "/T" T[i]]; b = v["peer/" peer[m] "/T" T[i]]
                    if (a == "") continue
                    printf "%-22s %6d | %14.2f | %11s | %6s\n", peer[m], T[i], a, b == "" ? "-" : sprintf("%.2f", b),
                           b == "" ? "-" : sprintf("%.2fx", b / a)
                }
            a = v["model/transformer_step"]; b = v["peer/transformer_step"]
            if (a != "")
                printf "%-22s %6d | %14.0f | %11s | %6s\n", "Transformer step", 1024, a, b == "" ? "-" : b,
                       b == "" ? "-" : sprintf("%.2fx", b / a)
            for (i = 1; i <= nT; i++) {
                a = v["scan/loglinear/c64/N64/T" T[i]]; b = v["scan/ssd/c64/N64/T" T[i]]
                if (a != "" && b != "") printf "loglinear.c log-linear / Mamba-2 (chunk 64) at T=%d: %.2fx\n", T[i], a / b
            }
        }' "$tmp/ms.$n" "$tmp/peer.$n"
done
