# experiment_lib.sh — helpers shared by the experiment scripts (mqar.sh, lm.sh, lambda.sh, passkey.sh,
# efficiency.sh); sourced, not run. Each script computes its results and tables without gnuplot and keeps a
# gnuplot script beside every plot, so that rerunning it where gnuplot exists draws the PNGs from the saved
# results (finished runs are skipped) without computing anything again.

# The paper's names of the five models, by model_type.
xp_model_name() {
    case "$1" in
        transformer) echo "Transformer" ;;
        mamba2) echo "Mamba-2" ;;
        loglinear_mamba2) echo "Log-Linear Mamba-2" ;;
        gated_deltanet) echo "Gated DeltaNet" ;;
        loglinear_gated_deltanet) echo "Log-Linear Gated DeltaNet" ;;
        *) echo "$1" ;;
    esac
}

# Dies (exit 1) unless every named tool is an executable file or on PATH.
xp_need() {
    local who=$1 t
    shift
    for t in "$@"; do
        if [[ $t == */* ]]; then
            [ -x "$t" ] || { echo "$who: $t is missing; run make" >&2; exit 1; }
        else
            command -v "$t" >/dev/null || { echo "$who: $t is missing; run scripts/setup.sh" >&2; exit 1; }
        fi
    done
}

# xp_check_value WHO "FLAGS" "$@" (at the top of an option loop): exits 2 when the option $1 is not one of
# the space-separated FLAGS (options without a value) and no value follows it.
xp_check_value() {
    local who=$1 flags=" $2 "
    shift 2
    if [[ $1 == -* && $flags != *" $1 "* && $# -lt 2 ]]; then
        echo "$who: $1 needs a value (see --help)" >&2
        exit 2
    fi
}

# xp_plot WHO GP_FILE: draws the plot that GP_FILE (a gnuplot script writing its own PNG) describes, or,
# without gnuplot, says once per script that the plots were left for a rerun. Never fails the script for a
# missing gnuplot; a gnuplot error does fail it. GNUPLOT names the program (default gnuplot).
xp_plot_noted=0
xp_have_gnuplot() { command -v "${GNUPLOT:-gnuplot}" >/dev/null; }
xp_plot() {
    local who=$1 gp=$2
    if xp_have_gnuplot; then
        "${GNUPLOT:-gnuplot}" "$gp"
    elif [ $xp_plot_noted = 0 ]; then
        echo "$who: note: gnuplot is not installed, so no PNG is drawn; the tables and the plot data are written." \
             "Rerun the same command where gnuplot exists (scripts/setup.sh installs it) to draw the plots from" \
             "the saved results (nothing is recomputed), or run gnuplot on the .gp files beside them."
        xp_plot_noted=1
    fi
}

# xp_params FILE.safetensors: the number of parameters stored in a checkpoint (from its JSON header).
xp_params() {
    local f=$1 len
    len=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
    tail -c +9 "$f" | head -c "$len" |
        jq '[to_entries[] | select(.key != "__metadata__") | .value.shape | reduce .[] as $x (1; . * $x)] | add'
}

# xp_embedding_params FILE.safetensors: the parameters of the embedding and LM head matrices (vocab x d).
xp_embedding_params() {
    local f=$1 len
    len=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
    tail -c +9 "$f" | head -c "$len" |
        jq '[to_entries[] | select(.key | test("embed|embedding|lm_head")) | .value.shape
             | reduce .[] as $x (1; . * $x)] | add // 0'
}

# xp_train WHO DIR CONFIG THREADS [TRAIN OPTIONS...]: trains one run into DIR unless DIR/done exists;
# an interrupted run (DIR/latest exists, no DIR/done) resumes from its newest checkpoint with the same
# options. ./train's output goes to DIR.train.log. Exits the script when the run did not reach its last step.
xp_train() {
    local who=$1 dir=$2 cfg=$3 threads=$4
    shift 4
    if [ -f "$dir/done" ]; then
        echo "== $who: $dir done, skipping"
        return 0
    fi
    mkdir -p "$(dirname "$dir")"
    if [ -f "$dir/latest" ]; then
        echo "== $who: resuming $dir"
        ./train --resume "$dir" --threads "$threads" "$@" >> "$dir.train.log"
    else
        echo "== $who: training $dir ($cfg)"
        ./train --config "$cfg" --run_dir "$dir" --overwrite --threads "$threads" "$@" > "$dir.train.log"
    fi
    # done only when the newest checkpoint is at the run's last step (not after an early --stop-at)
    local ck step total
    ck=$(xp_latest "$dir")
    step=$(jq .step "$ck/state.json") total=$(jq .train.steps "$ck/train_config.json")
    if [ "$step" != "$total" ]; then
        echo "$who: $dir stopped at step $step of $total; rerun to continue it" >&2
        exit 1
    fi
    touch "$dir/done"
}

# xp_latest DIR: the newest checkpoint directory of a run.
xp_latest() { echo "$1/$(cat "$1/latest")"; }

# xp_color N: the N-th (1-based) colour of the plots, colour-blind safe (Okabe-Ito), readable on white.
xp_color() {
    local c=('#0072b2' '#d55e00' '#009e73' '#cc79a7' '#e69f00' '#56b4e9' '#000000')
    echo "${c[$((($1 - 1) % ${#c[@]}))]}"
}
