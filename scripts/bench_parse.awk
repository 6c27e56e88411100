# bench_parse.awk — turns the printed output of build/rel/bench_scan and build/rel/bench_model into
# "key<TAB>milliseconds" lines (forward + backward for the mixers, one training step for the models), for
# scripts/bench.sh (thread scaling) and scripts/bench_side_by_side.sh (ratios to the PyTorch peers).
#   scan/<op>/c<chunk>/N<state or d_k>/T<T>   e.g. scan/loglinear/c64/N64/T2048 (attention: c-, N-)
#   model/transformer_step                    the d=512, 8-layer Transformer step of bench_model
#   model/<model type>/T<T>                   bench_model's whole-model table
# bench_scan rows: op chunk N T fwd_ms fwd+bwd_ms tok/s
$1 ~ /^(ssd|loglinear|attention|gdn|ll-gdn)$/ && NF == 7 && $4 ~ /^[0-9]+$/ {
    printf "scan/%s/c%s/N%s/T%s\t%s\n", $1, $2, $3, $4, $6
    next
}
# bench_model: "Transformer d=512 ... T=1024: 7100 ms/step | ..."
/^Transformer d=512/ {
    for (i = 1; i < NF; i++) if ($(i + 1) == "ms/step") { printf "model/transformer_step\t%s\n", $i; break }
    next
}
# bench_model's table: a header "ms/step (tok/s) | T=1024 | ..." then "name | 293 ms (3495/s) | ..."
/^ms\/step \(tok\/s\)/ {
    nT = split($0, cells, "|")
    for (i = 2; i <= nT; i++) { t = cells[i]; gsub(/[^0-9]/, "", t); Tcol[i] = t }
    in_table = 1
    next
}
in_table && /\|/ {
    n = split($0, cells, "|")
    name = cells[1]
    gsub(/ /, "", name)
    for (i = 2; i <= n; i++) { split(cells[i], w, " "); if (w[1] ~ /^[0-9.]+$/) printf "model/%s/T%s\t%s\n", name, Tcol[i], w[1] }
    next
}
in_table { in_table = 0 }
