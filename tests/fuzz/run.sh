#!/usr/bin/env bash
# Runs each libFuzzer harness for SECONDS over its seed corpus (tests/fuzz/corpus/<name>, read-only) and a
# working corpus of what it found (build/fuzz/corpus/<name>), JOBS harnesses at a time (default: one per
# CPU core, so each gets a whole core). A crash, leak, sanitizer error or timeout fails the run; the input
# that caused it is kept as build/fuzz/crash-<name>-*.
#   usage: tests/fuzz/run.sh [-j JOBS] SECONDS build/fuzz/fuzz_config ...
set -u
jobs=$(nproc 2>/dev/null || echo 1)
if [ "${1:-}" = "-j" ]; then jobs=$2; shift 2; fi
secs=$1; shift
case "$jobs" in ''|*[!0-9]*|0) echo "run.sh: -j needs a positive number of jobs, got '$jobs'" >&2; exit 2;; esac
# The harnesses write each input to a file under $TMPDIR named by their pid (fuzz_util.h): a private
# directory, removed at the end.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

# One harness; writes its exit status (0 = clean) to build/fuzz/<name>.status, its log to <name>.log.
fuzz_one() {
    local f=$1 name seeds work
    name=$(basename "$f")
    seeds=tests/fuzz/corpus/${name#fuzz_}
    work=build/fuzz/corpus/${name#fuzz_}
    mkdir -p "$work"
    ASAN_OPTIONS=detect_leaks=1 "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="build/fuzz/crash-$name-" "$work" "$seeds" > "build/fuzz/$name.log" 2>&1
    echo $? > "build/fuzz/$name.status"
}

echo "fuzzing $# harnesses for ${secs} s each, $jobs at a time"
running=0
for f in "$@"; do
    rm -f "build/fuzz/$(basename "$f").status"
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    fuzz_one "$f" &
    running=$((running + 1))
done
wait
# Reported in the order given, whatever order they finished in.
failed=()
for f in "$@"; do
    name=$(basename "$f")
    echo "=== $name (${secs} s)"
    if [ "$(cat "build/fuzz/$name.status" 2>/dev/null)" != 0 ]; then
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
