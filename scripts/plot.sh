#!/usr/bin/env bash
# Draws a line plot as a self-contained SVG file, with no dependencies beyond awk.
#   scripts/plot.sh OUT.svg "title" "x label" "y label" NAME=FILE [NAME=FILE ...]
# Each FILE holds whitespace-separated "x y" rows (lines starting with # are skipped).
set -euo pipefail
if [ $# -lt 5 ]; then
    echo "usage: $0 OUT.svg TITLE XLABEL YLABEL NAME=FILE [NAME=FILE ...]" >&2
    exit 2
fi
out=$1 title=$2 xlabel=$3 ylabel=$4
shift 4
args=()
for s in "$@"; do
    name=${s%%=*} file=${s#*=}
    [ -r "$file" ] || { echo "plot: cannot read $file (series $name)" >&2; exit 1; }
    args+=("$name" "$file")
done
awk -v title="$title" -v xlabel="$xlabel" -v ylabel="$ylabel" '
BEGIN {
    n = ARGC - 1; ns = 0
    for (i = 1; i < ARGC; i += 2) { ns++; name[ns] = ARGV[i]; file[ns] = ARGV[i + 1] }
    xmin = ymin = 1e300; xmax = ymax = -1e300
    for (s = 1; s <= ns; s++) {
        cnt[s] = 0
        while ((getline line < file[s]) > 0) {
            if (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/) continue
            split(line, f, /[ \t]+/)
            if (f[1] == "" ) { f[1] = f[2]; f[2] = f[3] }
            if (f[1] !~ /^-?[0-9.eE+-]+$/ || f[2] !~ /^-?[0-9.eE+-]+$/) continue
            k = ++cnt[s]; X[s, k] = f[1] + 0; Y[s, k] = f[2] + 0
            if (X[s, k] < xmin) xmin = X[s, k]; if (X[s, k] > xmax) xmax = X[s, k]
            if (Y[s, k] < ymin) ymin = Y[s, k]; if (Y[s, k] > ymax) ymax = Y[s, k]
        }
        close(file[s])
    }
    if (xmax <= xmin) xmax = xmin + 1
    if (ymax <= ymin) ymax = ymin + 1
    pad = (ymax - ymin) * 0.05; ymin -= pad; ymax += pad
    W = 720; H = 440; L = 70; R = 180; T = 40; B = 50
    pw = W - L - R; ph = H - T - B
    split("#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b #e377c2 #7f7f7f", col, " ")
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"%d\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">%s</text>\n", L + pw / 2, esc(title)
    printf "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", L, T, pw, ph
    for (i = 0; i <= 5; i++) {
        xv = xmin + (xmax - xmin) * i / 5; yv = ymin + (ymax - ymin) * i / 5
        px = L + pw * i / 5; py = T + ph - ph * i / 5
        printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", px, T, px, T + ph
        printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, py, L + pw, py
        printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", px, T + ph + 16, fmt(xv)
        printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 6, py + 4, fmt(yv)
    }
    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", L + pw / 2, H - 10, esc(xlabel)
    printf "<text x=\"16\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">%s</text>\n", T + ph / 2, T + ph / 2, esc(ylabel)
    for (s = 1; s <= ns; s++) {
        c = col[(s - 1) % 8 + 1]
        pts = ""
        for (k = 1; k <= cnt[s]; k++)
            pts = pts sprintf("%.1f,%.1f ", L + pw * (X[s, k] - xmin) / (xmax - xmin), T + ph - ph * (Y[s, k] - ymin) / (ymax - ymin))
        printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"%s\"/>\n", c, pts
        ly = T + 10 + 20 * (s - 1)
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n", L + pw + 12, ly, L + pw + 32, ly, c
        printf "<text x=\"%d\" y=\"%d\">%s</text>\n", L + pw + 38, ly + 4, esc(name[s])
    }
    print "</svg>"
    exit
}
function fmt(v) { return (v == int(v) && v < 1e6) ? sprintf("%d", v) : sprintf("%.3g", v) }
function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
' "${args[@]}" > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
