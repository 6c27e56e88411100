#!/usr/bin/env bash
# The paper's language-modelling comparison at CPU scale: Transformer, Mamba-2, Log-Linear Mamba-2, Gated
# DeltaNet and Log-Linear Gated DeltaNet, trained with the same data, token budget, schedule and seed, then
# evaluated on the whole validation set.
# Writes, under OUT (default runs/ablation_lm):
#   <model>/                 each run (checkpoints, log.jsonl) and positions.tsv (per-position val loss)
#   summary.md               final validation loss / perplexity, parameters, speed of each model
#   val_loss.svg             validation loss during training
#   per_position.svg         validation loss by position in the sequence (binned), the paper's Fig. 5 analogue
#
#   scripts/ablation_lm.sh [--quick] [--models "a b ..."] [--steps N] [--seq_len T] [--eval_seq_len T] [--out DIR]
#                          [--KEY VALUE ...]
# --quick uses the tiny byte-level configs (a minute, for checking the pipeline); otherwise the small GPT-2
# configs (configs/{transformer,mamba2,loglinear_mamba2,gated_deltanet,loglinear_gated_deltanet}.json; ~15 min per
# model on 2 cores at 400 steps). --models picks a subset (default: all five).
# --eval_seq_len evaluates at a longer context than training (length extrapolation). Other --KEY VALUE
# pairs are passed to ./train for every model (e.g. --batch_size 4 --lr 6e-4).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="" out="runs/ablation_lm" models_arg="" steps="" seq_len="" eval_seq_len="" extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) prefix="tiny_"; shift ;;
        --models) models_arg=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --seq_len) seq_len=$2; shift 2 ;;
        --eval_seq_len) eval_seq_len=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        --*) [ $# -ge 2 ] || { echo "ablation: $1 needs a value" >&2; exit 2; }; extra+=("$1" "$2"); shift 2 ;;
        *) echo "ablation: unexpected argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -x ./train ] || { echo "ablation: ./train is missing; run make (or scripts/quickstart.sh)" >&2; exit 1; }
models=(transformer mamba2 loglinear_mamba2 gated_deltanet loglinear_gated_deltanet)
[ -n "$models_arg" ] && read -r -a models <<< "$models_arg"
common=()
[ -n "$steps" ] && common+=(--steps "$steps")
[ -n "$seq_len" ] && common+=(--seq_len "$seq_len")
mkdir -p "$out"

for m in "${models[@]}"; do
    dir="$out/$m"
    if [ -f "$dir/done" ]; then
        echo "== $m: already trained ($dir/done exists), skipping"
    else
        if [ -f "$dir/latest" ]; then
            # interrupted earlier (Ctrl-C, SIGTERM, a crash): continue from its newest checkpoint
            echo "== resuming $m"
            ./train --resume "$dir" --keep_last 1 "${common[@]+"${common[@]}"}" "${extra[@]+"${extra[@]}"}" \
                | tee -a "$dir.train.log"
        else
            echo "== training $m"
            ./train --config "$prefix$m.json" --run_dir "$dir" --overwrite --keep_last 1 "${common[@]+"${common[@]}"}" \
                "${extra[@]+"${extra[@]}"}" | tee "$dir.train.log"
        fi
        touch "$dir/done"
    fi
    # the whole validation set (a sample of 200 batches in --quick mode)
    eval_args=(--eval --eval_batches "$([ -n "$prefix" ] && echo 200 || echo 100000)" --positions "$dir/positions.tsv")
    [ -n "$eval_seq_len" ] && eval_args+=(--seq_len "$eval_seq_len" --batch_size 1)
    ./train --resume "$dir" "${eval_args[@]}" | tee "$dir/eval.txt"
done

# summary table
{
    echo "# Language-modelling ablation ($(date -u +%Y-%m-%d), configs ${prefix}*.json${steps:+, $steps steps})"
    echo
    echo "| model | params | final val loss | val ppl | mean tok/s |"
    echo "|---|---|---|---|---|"
    for m in "${models[@]}"; do
        dir="$out/$m"
        params=$(grep -o '| [0-9.]*M params' "$dir.train.log" | head -1 | tr -d '| ' | sed 's/params//')
        loss=$(sed -n 's/.*val loss \([0-9.]*\).*/\1/p' "$dir/eval.txt" | tail -1)
        tps=$(awk -F'"tokens_per_s": ' 'NF > 1 { split($2, a, ","); s += a[1]; n++ } END { if (n) printf "%.0f", s / n }' "$dir/log.jsonl")
        ppl=$(awk -v l="$loss" 'BEGIN { printf "%.1f", exp(l) }')
        echo "| $m | $params | $loss | $ppl | $tps |"
    done
} > "$out/summary.md"
cat "$out/summary.md"

# plots: validation loss during training, and per-position loss in 16 bins
series_val=() series_pos=()
for m in "${models[@]}"; do
    dir="$out/$m"
    awk -F'[:,}]' '/"val_loss"/ { for (i = 1; i < NF; i++) { if ($i ~ /"step"/) s = $(i + 1); if ($i ~ /"val_loss"/) v = $(i + 1) } print s + 0, v + 0 }' \
        "$dir/log.jsonl" > "$dir/val_curve.txt"
    awk -F'\t' 'NR > 1 { n++; p[n] = $1; l[n] = $2 } END { bins = 16; if (n < bins) bins = n; w = n / bins
        for (b = 0; b < bins; b++) { s = 0; c = 0; for (i = int(b * w) + 1; i <= int((b + 1) * w); i++) { s += l[i]; c++ }
            if (c) print p[int(b * w) + 1] + (c - 1) / 2.0, s / c } }' "$dir/positions.tsv" > "$dir/position_curve.txt"
    series_val+=("$m=$dir/val_curve.txt")
    series_pos+=("$m=$dir/position_curve.txt")
done
./scripts/plot.sh "$out/val_loss.svg" "Validation loss during training" "step" "val loss (nats/token)" "${series_val[@]}"
./scripts/plot.sh "$out/per_position.svg" "Validation loss by position" "position in sequence" "loss (nats/token)" "${series_pos[@]}"
