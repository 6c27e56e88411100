#!/usr/bin/env bash
# Forward + backward time of each sequence mixer alone vs sequence length, the CPU analogue of the paper's
# kernel figure: softmax attention, Mamba-2 SSD, Log-Linear Mamba-2, Gated DeltaNet and Log-Linear GDN
# (B = 1, 8 heads of 64, Mamba-2 state N = 64, chunk 64; `build/rel/bench_scan sweep`), beside the plain
# PyTorch peers (peer_scan_bench.py) when they and an importable torch are there.
#
#   scripts/efficiency.sh [--quick] [--out DIR] [--threads N] [--T "512 1024 ..."] [--no-peers]
#
# Settings:
#   default  T = 512 1024 2048 4096 8192 16384, threads = all cores; expected ~3 min on 2 cores for
#            loglinear.c (softmax attention at T = 16384 alone takes ~1 min), ~10 min more with the peers
#   quick    (--quick) T = 128 256, 1 thread, one timing round each, no peers unless PEERS_DIR is set: ~5 s
# Peers: PEERS_DIR (default ../shared/peers) holds peer_scan_bench.py; PYTHON (default python3) must import
# torch, otherwise loglinear.c's figures alone are reported. The peer runs with the OpenBLAS core that
# bench_scan uses (OPENBLAS_CORETYPE), so a torch on OpenBLAS gets the same kernels; the peer skips softmax
# attention above T = 8192 (its materialised T x T mask).
# Resumable: each (T, side) result is a file under OUT/threadsN/ and is not measured again. Writes under
# OUT (default runs/efficiency[_quick]): threadsN/ours/T*.txt, threadsN/peer/T*.json, results_threadsN.tsv,
# table_threadsN.md (ms per mixer per T, the peer's ms and the ratio), time_threadsN.png (log-log, peers
# dashed) and its gnuplot script time_threadsN.gp. Without gnuplot everything but the PNG is written; without
# jq the measurements are still taken and saved, and a rerun where jq exists writes the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/experiment_lib.sh

quick=0 out="" threads="" Ts_arg="" peers_on=1
while [ $# -gt 0 ]; do
    xp_check_value efficiency "--quick --no-peers -h --help" "$@"
    case "$1" in
        --quick) quick=1; shift ;;
        --out) out=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --T) Ts_arg=$2; shift 2 ;;
        --no-peers) peers_on=0; shift ;;
        -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
        *) echo "efficiency: unexpected argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ $quick = 1 ]; then
    Ts="128 256" budget=0 threads=${threads:-1} out=${out:-runs/efficiency_quick}
    [ -n "${PEERS_DIR:-}" ] || peers_on=0
else
    Ts="512 1024 2048 4096 8192 16384" budget=1500 threads=${threads:-$(nproc)} out=${out:-runs/efficiency}
fi
[ -n "$Ts_arg" ] && Ts=$Ts_arg
peers=${PEERS_DIR:-../shared/peers} python=${PYTHON:-python3}
[[ $threads =~ ^[1-9][0-9]*$ ]] || { echo "efficiency: --threads needs a positive integer, got '$threads'" >&2; exit 2; }
make -s build/rel/bench_scan
if [ $peers_on = 1 ]; then
    if [ ! -f "$peers/peer_scan_bench.py" ]; then
        echo "efficiency: note: no $peers/peer_scan_bench.py (set PEERS_DIR); loglinear.c only"
        peers_on=0
    elif ! "$python" -c 'import torch' 2>/dev/null; then
        echo "efficiency: note: $python cannot import torch (LOGLINEAR_TORCH=1 scripts/setup.sh); loglinear.c only"
        peers_on=0
    fi
fi
dir="$out/threads$threads"
mkdir -p "$dir/ours" "$dir/peer"

mixers=(attention ssd loglinear gdn ll-gdn)
peer_of() {   # peer_scan_bench.py's name of a bench_scan mixer
    case "$1" in attention) echo softmax ;; ssd) echo mamba2 ;; loglinear) echo ll_mamba2 ;; gdn) echo gdn ;;
                 ll-gdn) echo ll_gdn ;; esac
}
label_of() {
    case "$1" in attention) echo "softmax attention" ;; ssd) echo "Mamba-2 (SSD)" ;; loglinear) echo "Log-Linear Mamba-2" ;;
                 gdn) echo "Gated DeltaNet" ;; ll-gdn) echo "Log-Linear GDN" ;; esac
}

for T in $Ts; do
    f="$dir/ours/T$T.txt"
    if [ -f "$f" ]; then
        echo "== loglinear.c T=$T: done ($f), skipping"
    else
        echo "== loglinear.c T=$T ($threads threads)"
        OMP_NUM_THREADS=$threads build/rel/bench_scan sweep --T "$T" --budget-ms "$budget" > "$f.tmp"
        cat "$f.tmp"
        mv "$f.tmp" "$f"
    fi
    if [ $peers_on = 1 ]; then
        p="$dir/peer/T$T.json"
        if [ -f "$p" ]; then
            echo "== PyTorch peer T=$T: done ($p), skipping"
        else
            core=$(sed -n 's/.*OpenBLAS core \([A-Za-z0-9]*\).*/\1/p' "$f" | head -1)
            echo "== PyTorch peer T=$T ($python, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$core})"
            OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$core} "$python" "$peers/peer_scan_bench.py" bench --tag "T$T" \
                --threads "$threads" --T "$T" $([ $quick = 1 ] && echo --reps 1) --out "$p.tmp"
            mv "$p.tmp" "$p"
        fi
    fi
done

# The measurements need neither jq nor gnuplot (a benchmark machine may lack both); the tables need jq.
if ! command -v jq >/dev/null; then
    echo "efficiency: note: jq is not installed: the measurements are saved under $dir; rerun the same command" \
         "where jq exists (scripts/setup.sh installs it) to write the tables and plots from them (nothing is measured again)"
    exit 0
fi

# results_threadsN.tsv: mixer, T, ours fwd+bwd ms, peer fwd+bwd ms ("" where none)
res="$out/results_threads$threads.tsv"
{
    printf 'mixer\tT\tours_ms\tpeer_ms\n'
    for T in $Ts; do
        while read -r op _chunk _n t _f fb _tps; do
            [ "$t" = "$T" ] || continue
            pm=""
            [ -f "$dir/peer/T$T.json" ] && pm=$(jq -r --arg m "$(peer_of "$op")" --argjson T "$T" \
                '[.runs[] | select(.mixer == $m and .T == $T and has("median_ms")) | .median_ms][0] // ""' "$dir/peer/T$T.json")
            printf '%s\t%s\t%s\t%s\n' "$op" "$T" "$fb" "$pm"
        done < <(grep -E '^(attention|ssd|loglinear|gdn|ll-gdn) ' "$dir/ours/T$T.txt")
    done
} > "$res"
have_peer=$(jq -Rrs '[split("\n")[1:][] | split("\t") | select(length == 4 and .[3] != "")] | length' "$res")

# table_threadsN.md
cell() {   # the value of column $3 for mixer $1 at T $2, formatted
    jq -Rrs --arg m "$1" --arg T "$2" --argjson c "$3" '
        [split("\n")[1:][] | split("\t") | select(length == 4 and .[0] == $m and .[1] == $T)][0] as $r
        | if $r == null or $r[$c] == "" then "–" else $r[$c] end' "$res" | { read -r v; [ "$v" = "–" ] && echo "$v" || printf '%.2f' "$v"; }
}
ratio() {   # peer / ours for mixer $1 at T $2; $3 = "peer" or another mixer of ours (ratio ours $1 / ours $3)
    jq -Rrs --arg m "$1" --arg T "$2" --arg o "$3" '
        [split("\n")[1:][] | split("\t") | select(length == 4 and .[1] == $T)] as $rows
        | ($rows | map(select(.[0] == $m))[0]) as $a
        | (if $o == "peer" then (if $a == null or $a[3] == "" then null else ($a[3] | tonumber) / ($a[2] | tonumber) end)
           else ($rows | map(select(.[0] == $o))[0]) as $b
                | if $a == null or $b == null then null else ($a[2] | tonumber) / ($b[2] | tonumber) end end)
        | if . == null then "–" else "\(. * 100 | round / 100)x" end' "$res"
}
{
    header=$(head -1 "$dir/ours/$(ls "$dir/ours" | head -1)")
    echo "Forward + backward time of each mixer alone (ms, best of rounds), $threads thread(s); ${header#sweep: }."
    [ "$have_peer" -gt 0 ] && echo "PyTorch peer: $(jq -r '"torch \(.torch), \(.threads) threads, median of \(.runs[0].times_s | length)"' \
        "$dir/peer/$(ls "$dir/peer" | grep json$ | head -1)"); ratio = PyTorch ms / loglinear.c ms (> 1: loglinear.c faster)."
    echo
    printf '| mixer |'; for T in $Ts; do printf ' T = %s |' "$T"; done; echo
    printf '|---|'; for T in $Ts; do printf -- '---|'; done; echo
    for m in "${mixers[@]}"; do
        printf '| %s |' "$(label_of "$m")"; for T in $Ts; do printf ' %s |' "$(cell "$m" "$T" 2)"; done; echo
        if [ "$have_peer" -gt 0 ]; then
            printf '| %s, PyTorch peer |' "$(label_of "$m")"; for T in $Ts; do printf ' %s |' "$(cell "$m" "$T" 3)"; done; echo
            printf '| %s, ratio |' "$(label_of "$m")"; for T in $Ts; do printf ' %s |' "$(ratio "$m" "$T" peer)"; done; echo
        fi
    done
    printf '| Log-Linear Mamba-2 / Mamba-2 |'; for T in $Ts; do printf ' %s |' "$(ratio loglinear "$T" ssd)"; done; echo
    printf '| Log-Linear GDN / GDN |'; for T in $Ts; do printf ' %s |' "$(ratio ll-gdn "$T" gdn)"; done; echo
    printf '| Log-Linear Mamba-2 / softmax attention |'; for T in $Ts; do printf ' %s |' "$(ratio loglinear "$T" attention)"; done; echo
    printf '| Log-Linear GDN / softmax attention |'; for T in $Ts; do printf ' %s |' "$(ratio ll-gdn "$T" attention)"; done; echo
} > "$out/table_threads$threads.md"
cat "$out/table_threads$threads.md"

# time_threadsN.png: log-log, one line per mixer (loglinear.c solid, the peer dashed in the same colour)
plots="" color=1
for m in "${mixers[@]}"; do
    jq -Rrs --arg m "$m" '[split("\n")[1:][] | split("\t") | select(length == 4 and .[0] == $m)][] | "\(.[1]) \(.[2])"' \
        "$res" > "$dir/plot_ours_$m.dat"
    plots+="${plots:+, }'$dir/plot_ours_$m.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '$(xp_color $color)' dt 1 title '$(label_of "$m")'"
    if [ "$have_peer" -gt 0 ]; then
        jq -Rrs --arg m "$m" '[split("\n")[1:][] | split("\t") | select(length == 4 and .[0] == $m and .[3] != "")][]
            | "\(.[1]) \(.[3])"' "$res" > "$dir/plot_peer_$m.dat"
        [ -s "$dir/plot_peer_$m.dat" ] &&
            plots+=", '$dir/plot_peer_$m.dat' using 1:2 with linespoints lw 2 pt 6 lc rgb '$(xp_color $color)' dt 2 title '$(label_of "$m") (PyTorch)'"
    fi
    color=$((color + 1))
done
cat > "$out/time_threads$threads.gp" <<EOF
set terminal pngcairo size 1000,650 font 'Sans,11'
set output '$out/time_threads$threads.png'
set title 'Mixer forward + backward time vs sequence length (B = 1, 8 heads x 64, $threads thread(s))'
set xlabel 'sequence length T (tokens)'
set ylabel 'forward + backward time (ms)'
set logscale xy 2
set format y '%g'
set key top left
set grid
plot $plots
EOF
xp_plot efficiency "$out/time_threads$threads.gp"
echo "efficiency: wrote $out/table_threads$threads.md, $res$(xp_have_gnuplot && echo " and $out/time_threads$threads.png")"
