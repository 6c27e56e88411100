#!/usr/bin/env bash
# Passkey retrieval (the paper's S-NIAH-1 style needle test) by context length and needle depth for the five
# models (Transformer, Mamba-2, Log-Linear Mamba-2, Gated DeltaNet, Log-Linear GDN) after a short training
# on the real corpus: each is trained briefly, then `./evaluate --passkey` hides a 5-digit number at each
# depth of filler text of each length and checks that the model continues "The pass key is" with it
# (greedy, exact match).
#
#   scripts/passkey.sh [--quick] [--out DIR] [--threads N] [--models "a b"] [--steps N] [--runs DIR]
#                      [--lengths L,...] [--depths D,...] [--trials N]
#
# Settings:
#   default  configs/<model>.json (d = 256, 4 layers, GPT-2 vocabulary, T = 256), 300 steps x 8 sequences,
#            then lengths 256,512,1024,2048 x depths 0,0.25,0.5,0.75,1 x 4 trials: expected ~1.5 hours on
#            2 cores (~13 min of training and ~5 min of passkey decoding per model)
#   quick    (--quick) configs/tiny_<model>.json (byte level), 4 steps, lengths 64,128, depths 0,1, 1 trial: ~10 s
# --runs DIR evaluates trained run directories DIR/<model> (e.g. runs/lm/runs from scripts/lm.sh) instead
# of training. Such short trainings leave the models far from retrieving a passkey (expect accuracies near
# 0 at this scale; the paper trains 50B tokens): the script measures the pipeline and the trend, not the
# paper's numbers. Resumable: finished runs (DIR/done) and evaluations (passkey.json) are skipped, an
# interrupted run resumes. Writes under OUT (default runs/passkey[_quick]): runs/<model>/ (checkpoints,
# passkey.json, passkey.csv), results.tsv, table.md (accuracy by length x depth per model, and the mean
# by length), passkey.png (mean accuracy vs length, one line per model) and passkey_heatmap.png (accuracy by
# length x depth, a panel per model), each with its .gp script. Needs jq; without gnuplot, no PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/experiment_lib.sh

quick=0 out="" threads=$(nproc) models_arg="" steps="" runs="" lengths="" depths="" trials=""
while [ $# -gt 0 ]; do
    xp_check_value passkey "--quick -h --help" "$@"
    case "$1" in
        --quick) quick=1; shift ;;
        --out) out=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --models) models_arg=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --lengths) lengths=$2; shift 2 ;;
        --depths) depths=$2; shift 2 ;;
        --trials) trials=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
        *) echo "passkey: unexpected argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ $quick = 1 ]; then
    prefix=tiny_ out=${out:-runs/passkey_quick} steps=${steps:-4} lengths=${lengths:-64,128} depths=${depths:-0,1}
    trials=${trials:-1}
    settings=(--eval_every 4 --eval_batches 1 --save_every 4 --log_every 1 --sample_every 0 --warmup_steps 1)
else
    prefix="" out=${out:-runs/passkey} steps=${steps:-300} lengths=${lengths:-256,512,1024,2048}
    depths=${depths:-0,0.25,0.5,0.75,1} trials=${trials:-4}
    settings=(--eval_every 100 --save_every 100)
fi
xp_need passkey ./train ./evaluate jq
models=(transformer mamba2 loglinear_mamba2 gated_deltanet loglinear_gated_deltanet)
[ -n "$models_arg" ] && read -r -a models <<< "$models_arg"
mkdir -p "$out/runs"

for m in "${models[@]}"; do
    res="$out/runs/$m"
    if [ -n "$runs" ]; then
        dir="$runs/$m"
        [ -f "$dir/latest" ] || { echo "passkey: $dir has no checkpoint (train it first, or drop --runs)" >&2; exit 1; }
        mkdir -p "$res"
    else
        dir=$res
        xp_train "passkey $m" "$dir" "configs/$prefix$m.json" "$threads" --steps "$steps" --keep_last 1 "${settings[@]}"
    fi
    if [ ! -f "$res/passkey.json" ]; then
        echo "== passkey $m: lengths $lengths, depths $depths, $trials trial(s)"
        ./evaluate --checkpoint "$dir" --passkey --lengths "$lengths" --depths "$depths" --trials "$trials" \
            --threads "$threads" --csv "$res/passkey.csv" --json "$res/passkey.tmp" > "$res/passkey.txt"
        mv "$res/passkey.tmp" "$res/passkey.json"
    fi
    jq -r --arg m "$m" '"   \($m) (step \(.step)): mean accuracy \([.results[].accuracy] | add / length * 100 | round)%"' \
        "$res/passkey.json"
done

# results.tsv: model, length, depth, trials, correct, accuracy
{
    printf 'model\tlength\tdepth\ttrials\tcorrect\taccuracy\n'
    for m in "${models[@]}"; do
        jq -r --arg m "$m" '.results[] | [$m, .length, .depth, .trials, .correct, .accuracy] | @tsv' "$out/runs/$m/passkey.json"
    done
} > "$out/results.tsv"
IFS=, read -r -a L <<< "$lengths"
IFS=, read -r -a D <<< "$depths"
acc() {   # accuracy (%) of model $1 at length $2 and depth $3, or the mean over depths when $3 is "mean"
    jq -r --arg m "$1" --argjson l "$2" --arg d "$3" '[.results[] | select(.length == $l and ($d == "mean" or
        .depth == ($d | tonumber))) | .accuracy] | if length == 0 then "–" else add / length * 100 | round end' \
        "$out/runs/$1/passkey.json"
}
{
    echo "Passkey retrieval accuracy (%), exact match, greedy; $trials trial(s) per cell; ${runs:-${prefix}<model>.json"
    echo "trained $steps steps}. Rows: context length (tokens); columns: needle depth (0 = start, 1 = end)."
    echo
    printf '| model | length |'; for d in "${D[@]}"; do printf ' depth %s |' "$d"; done; echo ' mean |'
    printf '|---|---|'; for d in "${D[@]}"; do printf -- '---|'; done; echo '---|'
    for m in "${models[@]}"; do
        for l in "${L[@]}"; do
            printf '| %s | %s |' "$(xp_model_name "$m")" "$l"
            for d in "${D[@]}"; do printf ' %s |' "$(acc "$m" "$l" "$d")"; done
            echo " $(acc "$m" "$l" mean) |"
        done
    done
    echo
    echo "Mean over depths (%):"
    echo
    printf '| model |'; for l in "${L[@]}"; do printf ' T = %s |' "$l"; done; echo
    printf '|---|'; for l in "${L[@]}"; do printf -- '---|'; done; echo
    for m in "${models[@]}"; do
        printf '| %s |' "$(xp_model_name "$m")"; for l in "${L[@]}"; do printf ' %s |' "$(acc "$m" "$l" mean)"; done; echo
    done
} > "$out/table.md"
cat "$out/table.md"

# passkey.png: mean accuracy vs length; passkey_heatmap.png: one panel per model, length (rows) x depth
lines="" color=1 panels="" n=${#models[@]}
for m in "${models[@]}"; do
    for l in "${L[@]}"; do echo "$l $(acc "$m" "$l" mean)"; done > "$out/runs/$m/mean.dat"
    jq -r --argjson L "$(printf '%s\n' "${L[@]}" | jq -s .)" --argjson D "$(printf '%s\n' "${D[@]}" | jq -s .)" \
        '.results as $r | range(0; $L | length) as $i | (range(0; $D | length) as $j
         | "\($j) \($i) \([$r[] | select(.length == $L[$i] and .depth == $D[$j]) | .accuracy][0] * 100)"), ""' \
        "$out/runs/$m/passkey.json" > "$out/runs/$m/heat.dat"
    lines+="${lines:+, }'$out/runs/$m/mean.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '$(xp_color $color)' title '$(xp_model_name "$m")'"
    panels+="set title '$(xp_model_name "$m")'
plot '$out/runs/$m/heat.dat' using 1:2:3 with image notitle
"
    color=$((color + 1))
done
xt="" yt=""
for j in "${!D[@]}"; do xt+="${xt:+, }'${D[$j]}' $j"; done
for i in "${!L[@]}"; do yt+="${yt:+, }'${L[$i]}' $i"; done
cat > "$out/passkey.gp" <<EOF
set terminal pngcairo size 1000,650 font 'Sans,11'
set output '$out/passkey.png'
set title 'Passkey retrieval: accuracy by context length (mean over needle depths, $trials trial(s) each)'
set xlabel 'context length (tokens)'
set ylabel 'exact-match accuracy (%)'
set logscale x 2
set yrange [-5:105]
set key top right
set grid
plot $lines
EOF
cat > "$out/passkey_heatmap.gp" <<EOF
set terminal pngcairo size $((300 * n)),420 font 'Sans,10'
set output '$out/passkey_heatmap.png'
set multiplot layout 1,$n title 'Passkey retrieval accuracy (%) by context length and needle depth'
set xlabel 'needle depth'
set ylabel 'context length (tokens)'
set xtics ($xt)
set ytics ($yt)
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#2c0f4f', 50 '#c43c4e', 100 '#fbe35b')
set xrange [-0.5:${#D[@]}-0.5]
set yrange [-0.5:${#L[@]}-0.5]
$panels
unset multiplot
EOF
xp_plot passkey "$out/passkey.gp"
xp_plot passkey "$out/passkey_heatmap.gp"
echo "passkey: wrote $out/table.md, $out/results.tsv$(xp_have_gnuplot && echo ", $out/passkey.png and $out/passkey_heatmap.png")"
