#!/usr/bin/env bash
# The log-linear design choices, on Log-Linear Mamba-2 and Log-Linear Gated DeltaNet, small models on the
# real corpus:
#  1. per-level λ vs λ tied across levels. With one λ_t shared by every level, the log-linear output is
#     λ_t times the linear model's output (the Fenwick levels partition the past, so their sum is the whole
#     linear recurrence; tests/test_scan_loglinear.c and tests/test_deltanet.c prove it for the kernels):
#     tied λ is the linear model with a per-token, per-head output scale. The comparison is therefore the
#     log-linear model against its linear model (Mamba-2, Gated DeltaNet), trained identically. (The linear
#     model lacks that scale; the head's output norm of both families absorbs most of it.)
#  2. chunk size: the chunked scans give the same result for any chunk up to float rounding, at different
#     speed; each log-linear model trains a few steps at every chunk size from the same seed, and the table
#     shows that the losses agree while the tokens/s differ.
#
#   scripts/lambda.sh [--quick] [--out DIR] [--threads N] [--steps N] [--val-batches N] [--chunk-steps N]
#                     [--chunks "16 32"]
#
# Settings:
#   default  configs/<model>.json (d = 256, 4 layers, GPT-2 vocabulary, data/tokens); part 1: T = 256, 200 steps
#            x 8 sequences, the whole validation set; part 2: T = 1024, 2 sequences, 40 steps at chunks
#            16 32 64 128: expected ~50 min on 2 cores (~8 min per part-1 run, ~1.5 min per part-2 run)
#   quick    (--quick) configs/tiny_<model>.json (byte level), part 1: 4 steps; part 2: T = 64, 3 steps at
#            chunks 16 32: ~15 s
# --val-batches N limits part 1's evaluation to N batches (default: the whole validation set).
# Resumable: a finished run (DIR/done) and evaluation (eval.json) are skipped, an interrupted run resumes.
# Writes under OUT (default runs/lambda[_quick]): runs/<model>/ and runs/<model>-chunk<C>/ (checkpoints,
# log.jsonl), tied.tsv, chunk.tsv, table.md, tied.png (training loss, linear vs log-linear) and chunk.png
# (training loss at every chunk size, and tokens/s vs chunk size), each with its .gp script. Needs jq;
# without gnuplot everything but the PNGs is written (rerun where gnuplot exists to draw them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/experiment_lib.sh

quick=0 out="" threads=$(nproc) val_batches="" steps="" chunk_steps="" chunks=""
while [ $# -gt 0 ]; do
    xp_check_value lambda "--quick -h --help" "$@"
    case "$1" in
        --quick) quick=1; shift ;;
        --out) out=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --val-batches) val_batches=$2; shift 2 ;;
        --chunk-steps) chunk_steps=$2; shift 2 ;;
        --chunks) chunks=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
        *) echo "lambda: unexpected argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ $quick = 1 ]; then
    prefix=tiny_ out=${out:-runs/lambda_quick} steps=${steps:-4} chunk_steps=${chunk_steps:-3} chunks=${chunks:-16 32}
    eval_batches=4 chunk_shape=(--seq_len 64 --batch_size 4)
    settings=(--eval_every 2 --eval_batches 1 --save_every 2 --log_every 1 --sample_every 0 --warmup_steps 1)
else
    prefix="" out=${out:-runs/lambda} steps=${steps:-200} chunk_steps=${chunk_steps:-40} chunks=${chunks:-16 32 64 128}
    eval_batches="" chunk_shape=(--seq_len 1024 --batch_size 2)
    settings=(--eval_every 50 --save_every 50 --log_every 1 --sample_every 0)
fi
[ -n "$val_batches" ] && eval_batches=$val_batches
xp_need lambda ./train ./evaluate jq
families=("mamba2 loglinear_mamba2" "gated_deltanet loglinear_gated_deltanet")
mkdir -p "$out/runs"

# 1. per-level λ (the log-linear model) vs tied λ (its linear model)
for fam in "${families[@]}"; do
    for m in $fam; do
        dir="$out/runs/$m"
        xp_train "lambda $m" "$dir" "configs/$prefix$m.json" "$threads" --steps "$steps" --keep_last 1 "${settings[@]}"
        if [ ! -f "$dir/eval.json" ]; then
            ./evaluate --checkpoint "$dir" --threads "$threads" --json "$dir/eval.tmp" --positions "$dir/positions.csv" \
                $([ -n "$eval_batches" ] && echo --batches "$eval_batches") > "$dir/eval.txt"
            mv "$dir/eval.tmp" "$dir/eval.json"
        fi
    done
done
# 2. chunk sizes, from the same seed and data
for m in loglinear_mamba2 loglinear_gated_deltanet; do
    for c in $chunks; do
        xp_train "lambda $m chunk $c" "$out/runs/$m-chunk$c" "configs/$prefix$m.json" "$threads" --steps "$chunk_steps" \
            --chunk_size "$c" "${chunk_shape[@]}" --keep_last 1 --warmup_steps 1 --eval_every 0 --save_every "$chunk_steps" \
            --log_every 1 --sample_every 0
    done
done

last_quarter() {   # mean loss over the last quarter of the positions of positions.csv $1
    jq -Rrs '[split("\n")[1:][] | select(length > 0) | split(",") | map(tonumber)] as $r | ($r | length) as $n
        | $r[($n * 3 / 4 | floor):] as $g | ($g | map(.[1] * .[2]) | add) / ($g | map(.[2]) | add)' "$1"
}
{
    printf 'model\tval_loss\tval_ppl\tloss_last_quarter\n'
    for fam in "${families[@]}"; do for m in $fam; do
        d="$out/runs/$m"
        printf '%s\t%s\t%s\t%s\n' "$m" "$(jq -r .loss "$d/eval.json")" "$(jq -r .perplexity "$d/eval.json")" \
            "$(last_quarter "$d/positions.csv")"
    done; done
} > "$out/tied.tsv"
ref_chunk=$(for c in $chunks; do echo "$c"; done | grep -x 64 || echo "${chunks%% *}")
{
    printf 'model\tchunk\tfinal_loss\tmax_abs_diff_vs_chunk%s\ttokens_per_s\n' "$ref_chunk"
    for m in loglinear_mamba2 loglinear_gated_deltanet; do
        ref="$out/runs/$m-chunk$ref_chunk/log.jsonl"
        for c in $chunks; do
            log="$out/runs/$m-chunk$c/log.jsonl"
            printf '%s\t%s\t%s\t%s\t%s\n' "$m" "$c" "$(jq -s '[.[] | select(.loss != null)] | last | .loss' "$log")" \
                "$(jq -n --slurpfile a "$log" --slurpfile b "$ref" '
                    ([$a[] | select(.loss != null) | {key: (.step | tostring), value: .loss}] | from_entries) as $x
                    | [$b[] | select(.loss != null) | select($x[.step | tostring] != null)
                       | ($x[.step | tostring] - .loss) | fabs] | max')" \
                "$(jq -s '[.[] | select(.tokens_per_s != null and .step > 1) | .tokens_per_s] | add / length | round' "$log")"
        done
    done
} > "$out/chunk.tsv"

{
    echo "## Per-level λ vs λ tied across levels (= the linear model; see the header of scripts/lambda.sh)"
    echo
    echo "${prefix}<model>.json, $steps steps, same data, schedule and seed; validation loss (nats/token) of ./evaluate."
    echo
    echo "| family | tied λ (linear model): val loss | per-level λ (log-linear): val loss | Δ (log-linear − linear) | last-quarter positions: linear | log-linear |"
    echo "|---|---|---|---|---|---|"
    for fam in "${families[@]}"; do
        read -r lin ll <<< "$fam"
        jq -Rrs --arg a "$lin" --arg b "$ll" --arg name "$(xp_model_name "$lin")" '
            [split("\n")[1:][] | select(length > 0) | split("\t")] as $r
            | ($r | map(select(.[0] == $a))[0] | map(tonumber? // .)) as $x
            | ($r | map(select(.[0] == $b))[0] | map(tonumber? // .)) as $y
            | "| \($name) | \($x[1]) | \($y[1]) | \(($y[1] - $x[1]) * 10000 | round / 10000) | \($x[3] * 10000 | round / 10000) | \($y[3] * 10000 | round / 10000) |"' \
            "$out/tied.tsv"
    done
    echo
    echo "## Chunk size: same results, different speed"
    echo
    echo "${prefix}<model>.json with ${chunk_shape[*]}, $chunk_steps steps from the same seed at each chunk size;"
    echo "max |Δ loss| over the steps against chunk $ref_chunk; tokens/s averaged over steps 2..$chunk_steps ($threads thread(s))."
    echo
    echo "| model | chunk | final training loss | max abs. Δ loss vs chunk $ref_chunk | tokens/s |"
    echo "|---|---|---|---|---|"
    tail -n +2 "$out/chunk.tsv" | while IFS=$'\t' read -r m c l dl tps; do
        echo "| $(xp_model_name "$m") | $c | $l | $(printf "%.1e" "$dl") | $tps |"
    done
} > "$out/table.md"
cat "$out/table.md"

# tied.png: training loss of each pair; chunk.png: loss per step at every chunk (overlapping), tokens/s vs chunk
curves="" color=1
for fam in "${families[@]}"; do
    dt=1
    for m in $fam; do
        jq -r 'select(.loss != null) | "\(.step) \(.loss)"' "$out/runs/$m/log.jsonl" > "$out/runs/$m/train_loss.dat"
        curves+="${curves:+, }'$out/runs/$m/train_loss.dat' using 1:2 with lines lw 2 lc rgb '$(xp_color $color)' dt $dt title '$(xp_model_name "$m")$([ $dt = 1 ] && echo ' (linear = tied λ up to a scale)' || echo ' (per-level λ)')'"
        dt=2
    done
    color=$((color + 1))
done
losses="" speeds="" color=1
for m in loglinear_mamba2 loglinear_gated_deltanet; do
    for c in $chunks; do
        jq -r 'select(.loss != null) | "\(.step) \(.loss)"' "$out/runs/$m-chunk$c/log.jsonl" > "$out/runs/$m-chunk$c/train_loss.dat"
        losses+="${losses:+, }'$out/runs/$m-chunk$c/train_loss.dat' using 1:2 with linespoints lw 1 pt $((c % 13)) lc rgb '$(xp_color $color)' title '$(xp_model_name "$m"), chunk $c'"
    done
    jq -Rr --arg m "$m" 'split("\t") | select(.[0] == $m) | "\(.[1]) \(.[4])"' "$out/chunk.tsv" > "$out/speed_$m.dat"
    speeds+="${speeds:+, }'$out/speed_$m.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '$(xp_color $color)' title '$(xp_model_name "$m")'"
    color=$((color + 1))
done
cat > "$out/tied.gp" <<EOF
set terminal pngcairo size 1000,650 font 'Sans,11'
set output '$out/tied.png'
set title 'Per-level λ (log-linear, dashed) vs the linear model (λ tied across levels, solid): training loss'
set xlabel 'training step'
set ylabel 'training loss (nats/token)'
set key top right
set grid
plot $curves
EOF
cat > "$out/chunk.gp" <<EOF
set terminal pngcairo size 1300,550 font 'Sans,11'
set output '$out/chunk.png'
set multiplot layout 1,2 title 'Chunk size of the log-linear scans: same losses, different speed ($threads thread(s))'
set title 'training loss at every chunk size (the curves overlap)'
set xlabel 'training step'
set ylabel 'training loss (nats/token)'
set key top right
set grid
plot $losses
set title 'training speed'
set xlabel 'chunk size (tokens)'
set ylabel 'tokens/s'
set logscale x 2
set yrange [0:*]
set key bottom right
plot $speeds
unset multiplot
EOF
xp_plot lambda "$out/tied.gp"
xp_plot lambda "$out/chunk.gp"
echo "lambda: wrote $out/table.md, $out/tied.tsv, $out/chunk.tsv$(xp_have_gnuplot && echo ", $out/tied.png and $out/chunk.png")"
