#!/bin/sh
# Run CTest in each build tree given and print one total at the end.
# Usage: tests/run-all.sh build/plain [build/asan ...]
set -u
jobs=$(nproc 2>/dev/null || echo 2)
passed=0
failed=0
status=0
for dir in "$@"; do
    echo "=== tests in $dir ==="
    log=$(mktemp)
    (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 600) | tee "$log"
    rc=$?
    # CTest closes with "N% tests passed, F tests failed out of T".
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$line" ]; then
        echo "no CTest summary in $dir"
        status=1
        continue
    fi
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
    t=$(echo "$line" | sed -E 's/.* failed out of ([0-9]+).*/\1/')
    passed=$((passed + t - f))
    failed=$((failed + f))
    [ "$f" -ne 0 ] && status=1
done
echo
echo "total: $passed passed, $failed failed"
exit $status
