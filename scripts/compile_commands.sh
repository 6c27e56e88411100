#!/usr/bin/env bash
# Prints compile_commands.json for a full build of this repository (`make compile_commands.json`): runs
# `make -n -B` for every target (nothing is built) and turns each compiler command into an entry.
# usage: scripts/compile_commands.sh CC MAKE
set -euo pipefail
cc=${1:-gcc}
make=${2:-make}
cd "$(dirname "$0")/.."
dir=$(pwd)
$make --no-print-directory -n -B all build-tests-and-benches 2>/dev/null | awk -v cc="$cc" -v dir="$dir" '
    function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return s }
    $1 == cc {
        file = ""
        for (i = 2; i <= NF; i++) if ($i ~ /\.c$/) { file = $i; break }
        if (file == "") next
        printf "%s\n  {\"directory\": \"%s\", \"command\": \"%s\", \"file\": \"%s\"}", (n++ ? "," : "["), esc(dir), esc($0), esc(file)
    }
    END { print (n ? "\n]" : "[]") }'
