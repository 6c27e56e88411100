#!/bin/sh
# bench.sh — `make bench`: runs every benchmark binary at 1, 2 and all cores (BENCH_THREADS="1 4 8"
# chooses others), prints their output, then the thread scaling of each measurement: milliseconds at each
# thread count and the speed-up over the fewest threads (and from 2 threads to the most, the issue's
# 2 -> 16 scaling on a 16-core machine).
#   ./scripts/bench.sh build/rel/bench_model build/rel/bench_scan
set -eu
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: $0 BENCH_BINARY..." >&2; exit 2; }
threads=${BENCH_THREADS:-$(printf '1\n2\n%s\n' "$(nproc)" | sort -n -u | tr '\n' ' ')}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in $threads; do
    echo "=== $n thread(s) ==="
    : > "$tmp/out.$n"
    for b in "$@"; do
        { OMP_NUM_THREADS=$n "./$b" && echo 0 > "$tmp/rc" || echo $? > "$tmp/rc"; } | tee -a "$tmp/out.$n"
        [ "$(cat "$tmp/rc")" = 0 ] || { echo "error: $b failed at $n threads" >&2; exit 1; }
        echo
    done
    awk -f scripts/bench_parse.awk "$tmp/out.$n" > "$tmp/ms.$n"
done

echo "=== thread scaling: ms (forward + backward for the mixers, a training step for the models) ==="
# shellcheck disable=SC2046
awk -v threads="$threads" '
    BEGIN { nt = split(threads, th, " ") }
    { key = $1; n = FILENAME; sub(/.*\./, "", n); ms[key, n] = $2; if (!(key in seen)) { seen[key] = 1; order[++nk] = key } }
    END {
        printf "%-34s", "measurement"
        for (i = 1; i <= nt; i++) printf " | %7s thr%s", th[i], (i > 1 ? "   (x)" : "")
        if (nt > 2 && th[2] == 2) printf " | 2 -> %s thr", th[nt]
        printf "\n"
        for (k = 1; k <= nk; k++) {
            key = order[k]
            printf "%-34s", key
            for (i = 1; i <= nt; i++) {
                v = ms[key, th[i]]
                if (v == "") { printf " | %11s%s", "-", (i > 1 ? "      " : ""); continue }
                printf " | %11.2f", v
                if (i > 1) { b = ms[key, th[1]]; if (b != "" && v > 0) printf " %5.2f", b / v; else printf " %5s", "-" }
            }
            if (nt > 2 && th[2] == 2) {
                a = ms[key, 2]; z = ms[key, th[nt]]
                if (a != "" && z != "" && z > 0) printf " | %9.2fx", a / z; else printf " | %10s", "-"
            }
            printf "\n"
        }
    }' $(for n in $threads; do echo "$tmp/ms.$n"; done)
