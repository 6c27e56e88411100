#!/usr/bin/env bash
# Runs each test binary given on the command line; prints a summary and fails if any failed.
set -u
failed=()
for t in "$@"; do
    echo "=== $t"
    start=$(date +%s)
    if ! "$t"; then failed+=("$t"); fi
    echo "    ($(( $(date +%s) - start )) s)"
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all $# test suites passed"
