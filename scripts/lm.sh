#!/usr/bin/env bash
# The paper's language-modelling comparison at CPU scale: Transformer, Mamba-2, Log-Linear Mamba-2, Gated
# DeltaNet and Log-Linear Gated DeltaNet at (roughly) matched parameter count, trained on the real corpus
# with the same data, token budget, schedule and seed; then each is evaluated with ./evaluate on the
# validation set: loss, perplexity and the loss at every position of the context (the paper's per-position
# analysis: the log-linear variants are expected lower at late positions).
#
#   scripts/lm.sh [--quick] [--out DIR] [--threads N] [--models "a b"] [--steps N] [--val-batches N]
#                 [--eval_seq_len T] [--KEY VALUE ...]
#
# Settings:
#   default  configs/<model>.json (d = 256, 4 layers, GPT-2 vocabulary, 29.1-30.3M parameters, of which 25.7M are
#            the embedding and LM head: the totals match within 4%, the rest is 3.4M for the Transformer and
#            4.1-4.6M for the recurrent models; the table gives both), data/tokens, T = 256, 400 steps x 8 sequences (819k tokens), the whole
#            validation set: expected ~1.5 hours on 2 cores (~17 min per model)
#   quick    (--quick) configs/tiny_<model>.json (byte level), 6 steps of 4 x 64, 4 validation batches: ~15 s
# --val-batches N limits the final evaluation to N batches (default: the whole validation set);
# --eval_seq_len evaluates at a longer context than training (length extrapolation); other --KEY VALUE pairs
# go to ./train for every model (e.g. --batch_size 4 --lr 6e-4). Threads: --threads (default all cores).
# Resumable: a finished run (DIR/done) is skipped, an interrupted one resumes from its last checkpoint, a
# finished evaluation (eval.json) is kept. Writes under OUT (default runs/lm[_quick]): runs/<model>/
# (checkpoints, log.jsonl, eval.json, positions.csv), results.tsv, table.md (parameters, validation loss and
# perplexity, loss at the first / last quarter of the positions, tokens/s), loss.png (training loss and
# validation loss vs tokens) and per_position.png (validation loss by position), each with its .gp script.
# Needs jq; without gnuplot everything but the PNGs is written (rerun where gnuplot exists to draw them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/experiment_lib.sh

quick=0 out="" threads=$(nproc) val_batches="" models_arg="" steps="" eval_seq_len="" extra=()
while [ $# -gt 0 ]; do
    xp_check_value lm "--quick -h --help" "$@"
    case "$1" in
        --quick) quick=1; shift ;;
        --out) out=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --models) models_arg=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --val-batches) val_batches=$2; shift 2 ;;
        --eval_seq_len) eval_seq_len=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
        --*) [ $# -ge 2 ] || { echo "lm: $1 needs a value" >&2; exit 2; }; extra+=("$1" "$2"); shift 2 ;;
        *) echo "lm: unexpected argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ $quick = 1 ]; then
    prefix=tiny_ out=${out:-runs/lm_quick} steps=${steps:-6} eval_batches=4
    settings=(--eval_every 3 --eval_batches 1 --save_every 3 --log_every 1 --sample_every 0 --warmup_steps 1)
else
    prefix="" out=${out:-runs/lm} steps=${steps:-400} eval_batches=""
    settings=()
fi
[ -n "$val_batches" ] && eval_batches=$val_batches
xp_need lm ./train ./evaluate jq
models=(transformer mamba2 loglinear_mamba2 gated_deltanet loglinear_gated_deltanet)
[ -n "$models_arg" ] && read -r -a models <<< "$models_arg"
mkdir -p "$out/runs"

for m in "${models[@]}"; do
    dir="$out/runs/$m"
    xp_train "lm $m" "$dir" "configs/$prefix$m.json" "$threads" --steps "$steps" --keep_last 1 \
        "${settings[@]+"${settings[@]}"}" "${extra[@]+"${extra[@]}"}"
    if [ ! -f "$dir/eval.json" ]; then
        eval_args=(--threads "$threads" --json "$dir/eval.tmp" --positions "$dir/positions.csv")
        [ -n "$eval_batches" ] && eval_args+=(--batches "$eval_batches")
        [ -n "$eval_seq_len" ] && eval_args+=(--seq_len "$eval_seq_len" --batch_size 1)
        ./evaluate --checkpoint "$dir" "${eval_args[@]}" > "$dir/eval.txt"
        mv "$dir/eval.tmp" "$dir/eval.json"
    fi
    jq -r --arg m "$m" '"   \($m): validation loss \(.loss) (perplexity \(.perplexity)) at step \(.step)"' "$dir/eval.json"
done

# results.tsv: model, parameters, of which embedding + LM head, val loss, ppl, loss at the first and last
# quarter of the positions, mean training tokens/s
quarter() {   # mean loss over the positions of quarter $2 (0 = first, 3 = last) of positions.csv $1
    jq -Rrs --argjson q "$2" '[split("\n")[1:][] | select(length > 0) | split(",") | map(tonumber)] as $r
        | ($r | length) as $n | [$r[($n * $q / 4 | floor):($n * ($q + 1) / 4 | floor)][] | .[1] * .[2]] as $s
        | [$r[($n * $q / 4 | floor):($n * ($q + 1) / 4 | floor)][] | .[2]] as $c | ($s | add) / ($c | add)' "$1"
}
{
    printf 'model\tparams\tembedding_params\tval_loss\tval_ppl\tloss_first_quarter\tloss_last_quarter\ttokens_per_s\n'
    for m in "${models[@]}"; do
        dir="$out/runs/$m" st="$(xp_latest "$out/runs/$m")/model.safetensors"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$(xp_params "$st")" "$(xp_embedding_params "$st")" \
            "$(jq -r .loss "$dir/eval.json")" "$(jq -r .perplexity "$dir/eval.json")" \
            "$(quarter "$dir/positions.csv" 0)" "$(quarter "$dir/positions.csv" 3)" \
            "$(jq -s '[.[] | select(.tokens_per_s != null) | .tokens_per_s] | add / length | round' "$dir/log.jsonl")"
    done
} > "$out/results.tsv"

# table.md
T=$(jq -r .seq_len "$out/runs/${models[0]}/eval.json")
tokens=$(jq -s '[.[] | select(.tokens != null) | .tokens] | max' "$out/runs/${models[0]}/log.jsonl")
{
    echo "Language modelling, ${prefix}<model>.json configs, $steps steps ($tokens training tokens each), trained at"
    echo "the config's T, evaluated at T = $T on $(jq -r .data "$out/runs/${models[0]}/eval.json") ($(jq -r .targets \
        "$out/runs/${models[0]}/eval.json") targets); loss in nats/token."
    echo
    echo "| model | parameters | non-embedding | val loss | val ppl | loss, first quarter of positions | loss, last quarter | train tokens/s |"
    echo "|---|---|---|---|---|---|---|---|"
    tail -n +2 "$out/results.tsv" | while IFS=$'\t' read -r m p e l ppl q0 q3 tps; do
        printf '| %s | %.3fM | %.3fM | %.4f | %.2f | %.4f | %.4f | %s |\n' "$(xp_model_name "$m")" \
            "$(jq -n "$p / 1e6")" "$(jq -n "($p - $e) / 1e6")" "$l" "$ppl" "$q0" "$q3" "$tps"
    done
} > "$out/table.md"
cat "$out/table.md"

# loss.png: training loss (thin) and validation loss (points) vs tokens seen; per_position.png: validation
# loss by position, averaged over 32 bins of positions
curves="" pos="" color=1
for m in "${models[@]}"; do
    dir="$out/runs/$m" name=$(xp_model_name "$m")
    jq -r 'select(.loss != null and .tokens != null) | "\(.tokens) \(.loss)"' "$dir/log.jsonl" > "$dir/train_loss.dat"
    per_step=$(jq -s '[.[] | select(.tokens != null and .step != null) | .tokens / .step] | first // 0' "$dir/log.jsonl")
    jq -r --argjson k "$per_step" 'select(.val_loss != null) | "\(.step * $k) \(.val_loss)"' "$dir/log.jsonl" > "$dir/val_loss.dat"
    jq -Rrs '[split("\n")[1:][] | select(length > 0) | split(",") | map(tonumber)] as $r | ($r | length) as $n
        | ([32, $n] | min) as $b | range(0; $b) as $i | $r[($n * $i / $b | floor):($n * ($i + 1) / $b | floor)] as $g
        | "\(($g | map(.[0]) | add) / ($g | length)) \(($g | map(.[1] * .[2]) | add) / ($g | map(.[2]) | add))"' \
        "$dir/positions.csv" > "$dir/per_position.dat"
    curves+="${curves:+, }'$dir/train_loss.dat' using 1:2 with lines lw 1 lc rgb '$(xp_color $color)' title '$name (train)'"
    curves+=", '$dir/val_loss.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '$(xp_color $color)' title '$name (validation)'"
    pos+="${pos:+, }'$dir/per_position.dat' using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '$(xp_color $color)' title '$name'"
    color=$((color + 1))
done
cat > "$out/loss.gp" <<EOF
set terminal pngcairo size 1000,650 font 'Sans,11'
set output '$out/loss.png'
set title 'Language modelling: loss during training (same data, token budget, schedule, seed)'
set xlabel 'training tokens'
set ylabel 'loss (nats/token)'
set key top right
set grid
plot $curves
EOF
cat > "$out/per_position.gp" <<EOF
set terminal pngcairo size 1000,650 font 'Sans,11'
set output '$out/per_position.png'
set title 'Validation loss by position in the context (T = $T, mean over 32 position bins)'
set xlabel 'position in the context (tokens)'
set ylabel 'validation loss (nats/token)'
set key top right
set grid
plot $pos
EOF
xp_plot lm "$out/loss.gp"
xp_plot lm "$out/per_position.gp"
echo "lm: wrote $out/table.md, $out/results.tsv$(xp_have_gnuplot && echo ", $out/loss.png and $out/per_position.png")"
