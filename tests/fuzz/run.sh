#!/usr/bin/env bash
# Runs each libFuzzer harness for SECONDS over its seed corpus (tests/fuzz/corpus/<name>, read-only) and a
# working corpus of what it found (build/fuzz/corpus/<name>). A crash, leak, sanitizer error or timeout
# fails the run; the input that caused it is kept as build/fuzz/crash-<name>-*.
#   usage: tests/fuzz/run.sh SECONDS build/fuzz/fuzz_config ...
set -u
secs=$1; shift
failed=()
# The harnesses write each input to a file under $TMPDIR (fuzz_util.h): a private one, removed at the end.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
for f in "$@"; do
    name=$(basename "$f")
    seeds=tests/fuzz/corpus/${name#fuzz_}
    work=build/fuzz/corpus/${name#fuzz_}
    mkdir -p "$work"
    echo "=== $name (${secs} s)"
    if ! ASAN_OPTIONS=detect_leaks=1 "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
            -print_final_stats=1 -artifact_prefix="build/fuzz/crash-$name-" "$work" "$seeds" > "build/fuzz/$name.log" 2>&1; then
        tail -40 "build/fuzz/$name.log"
        failed+=("$name")
    else
        grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "build/fuzz/$name.log" | tail -1
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "FUZZING FOUND PROBLEMS: ${failed[*]} (inputs in build/fuzz/crash-*)"
    exit 1
fi
echo "all $# fuzzers ran clean"
