#!/usr/bin/env bash
# Data-parallel scaling: tokens/s of ./train with 1, 2, 4, ... ranks of --threads T threads each (weak
# scaling: every rank keeps its batch, so R ranks process R times the tokens per step), the scaling
# efficiency tok/s(R) / (R x tok/s(1)), and the same with the gradient reduction after the backward instead
# of overlapped with it (LOGLINEAR_DP_OVERLAP=0), which shows what the overlap saves. Prints a Markdown table.
#
#   scripts/bench_mpi.sh [--config FILE] [--ranks "1 2 4"] [--threads T] [--steps N] [--KEY VALUE ...]
#
# Defaults: configs/loglinear_mamba2.json, ranks "1 2", 1 thread per rank, 8 steps (the first step is not
# timed), no evaluation, samples or checkpoints. Other --KEY VALUE pairs go to ./train (e.g. --batch_size 4).
# Use ranks x threads <= the cores of the machine: beyond that the numbers measure oversubscription.
set -euo pipefail
cd "$(dirname "$0")/.."

config="loglinear_mamba2.json" ranks="1 2" threads=1 steps=8 extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        --*) extra+=("$1" "$2"); shift 2 ;;
        *) echo "bench_mpi.sh: unexpected argument '$1' (see --help)" >&2; exit 1 ;;
    esac
done
command -v mpirun >/dev/null || { echo "bench_mpi.sh: mpirun not found: ./scripts/setup.sh installs OpenMPI" >&2; exit 1; }
[ -x ./train ] || make -j"$(nproc)" train
cores=$(nproc)
out=$(mktemp -d /tmp/bench_mpi_XXXXXX)
trap 'rm -rf "$out"' EXIT

# Median tokens/s over the timed steps of a run's log.jsonl (every step line has "tokens_per_s").
median_tps() {
    grep '"tokens_per_s"' "$1/log.jsonl" | tail -n +2 | sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench R OVERLAP -> prints the median tok/s of an R-rank run
bench() {
    local r=$1 overlap=$2 dir="$out/r$1_o$2"
    local mpi=(mpirun -np "$r" -x LOGLINEAR_DP_OVERLAP --allow-run-as-root)
    [ "$threads" -gt 1 ] && mpi+=(--bind-to none)
    [ $((r * threads)) -gt "$cores" ] && mpi+=(--oversubscribe)
    LOGLINEAR_DP_OVERLAP=$overlap "${mpi[@]}" ./train --config "$config" --threads "$threads" --steps "$steps" \
        --warmup_steps 1 --eval_every 0 --sample_every 0 --save_every 0 --log_every 1000 --run_dir "$dir" \
        "${extra[@]}" > "$dir.out" 2>&1 || { cat "$dir.out" >&2; exit 1; }
    median_tps "$dir"
}

echo "config $config, $threads thread(s) per rank, $steps steps (median of steps 2..$steps), $cores cores, $(hostname)"
echo
echo "| ranks | cores used | tok/s | efficiency | tok/s, reduction after the backward | efficiency |"
echo "|---|---|---|---|---|---|"
base=""
for r in $ranks; do
    tps=$(bench "$r" 1)
    if [ "$r" -eq 1 ]; then no=$tps; else no=$(bench "$r" 0); fi
    [ -z "$base" ] && base=$(awk -v t="$tps" -v r="$r" 'BEGIN { print t / r }')
    awk -v r="$r" -v c=$((r * threads)) -v t="$tps" -v n="$no" -v b="$base" -v cores="$cores" 'BEGIN {
        printf "| %d | %d%s | %.0f | %.1f%% | %.0f | %.1f%% |\n", r, c, (c > cores ? " (oversubscribed)" : ""),
               t, 100 * t / (r * b), n, 100 * n / (r * b) }'
done
