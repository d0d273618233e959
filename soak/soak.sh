#!/bin/sh
# Soak test: run for DURATION seconds and fail on any error or memory growth.
#
#   soak/soak.sh DURATION [BUILD-DIR]          (BUILD-DIR default: build/plain)
#
# Two things run side by side for the whole duration:
#   1. soak/soak.c, built here against BUILD-DIR/libcancel_test.a: the core's
#      operations from SOAK_THREADS threads (default 4) with the invariants
#      checked, printing RSS and the library's live allocations every
#      SOAK_INTERVAL seconds (default 10); it fails if RSS grows past its
#      bound after the warm-up or anything is left allocated at the end;
#   2. the stress tests (BUILD-DIR/tests/stress_*), every case again and
#      again, each run with a random CANCEL_TEST_SEED and CANCEL_TEST_SCALE
#      (1-3); each run's exit status is checked and its peak RSS sampled.
# A failed stress run is kept in BUILD-DIR/soak/ with the line that
# replays it.  Exit 0 only if nothing failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
dur=${1:?usage: soak/soak.sh DURATION [BUILD-DIR]}
build=$(cd "${2:-$root/build/plain}" && pwd)
out=$build/soak
mkdir -p "$out"
rm -f "$out"/fail-*.log

lib=$build/libcancel_test.a
[ -f "$lib" ] || { echo "soak: no $lib (build the tests first: make build/plain/.built)" >&2; exit 1; }
${CC:-cc} -std=c11 -O2 -g -Wall -Wextra -pthread -D_GNU_SOURCE \
    -DCANCEL_TEST_HOOKS -I"$root/include" -I"$root/src" \
    -o "$out/soak" "$here/soak.c" "$lib" || exit 1

start=$(date +%s)
end=$((start + dur))
echo "soak: ${dur}s; soak program with ${SOAK_THREADS:-4} threads, and the stress tests in a loop"
"$out/soak" "$dur" "${SOAK_THREADS:-4}" "${SOAK_INTERVAL:-10}" >"$out/soak.log" 2>&1 &
soak_pid=$!

runs=0
fails=0
stats=$out/stress-runs
: >"$stats"
rand() { od -An -N4 -tu4 /dev/urandom | tr -d ' '; }
while [ "$(date +%s)" -lt "$end" ]; do
    for prog in "$build"/tests/stress_*; do
        [ -x "$prog" ] || continue
        for case in $("$prog" --list); do
            [ "$(date +%s)" -ge "$end" ] && break 3
            seed=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
            scale=$(($(rand) % 3 + 1))
            t0=$(date +%s)
            CANCEL_TEST_SEED=0x$seed CANCEL_TEST_SCALE=$scale \
                "$prog" "$case" >"$out/run.log" 2>&1 &
            pid=$!
            peak=0
            # Sample the run's RSS; kill it if it outlives its CTest timeout.
            while kill -0 "$pid" 2>/dev/null; do
                r=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null)
                [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
                if [ $(($(date +%s) - t0)) -gt 600 ]; then
                    kill -9 "$pid"
                    echo "(killed after 600 s: hang?)" >>"$out/run.log"
                fi
                sleep 0.2
            done
            wait "$pid"
            rc=$?
            runs=$((runs + 1))
            secs=$(($(date +%s) - t0))
            echo "$(basename "$prog").$case rc=$rc ${secs}s rss=${peak}KiB scale=$scale seed=0x$seed" >>"$stats"
            if [ $rc -ne 0 ]; then
                fails=$((fails + 1))
                f=$out/fail-$fails.log
                {
                    echo "replay: CANCEL_TEST_SEED=0x$seed CANCEL_TEST_SCALE=$scale $prog $case"
                    echo "exit status $rc"
                    cat "$out/run.log"
                } >"$f"
                echo "soak: FAIL $(basename "$prog").$case (exit $rc): $f"
            fi
        done
    done
done
wait "$soak_pid"
soak_rc=$?
cat "$out/soak.log"
echo
echo "stress runs: $runs, failed: $fails ($(($(date +%s) - start))s)"
# Per case: runs, and the range of peak RSS over the runs.
awk '{split($1, a, " "); n[$1]++; sub("rss=", "", $4); sub("KiB", "", $4);
      r = $4 + 0; if (!($1 in lo) || r < lo[$1]) lo[$1] = r;
      if (r > hi[$1]) hi[$1] = r}
     END {for (k in n) printf "  %-58s %4d runs, peak RSS %d-%d KiB\n", k, n[k], lo[k], hi[k]}' \
    "$stats" | sort
if [ $soak_rc -ne 0 ] || [ $fails -ne 0 ]; then
    echo "soak: FAILED (soak program exit $soak_rc, $fails stress failures)"
    exit 1
fi
echo "soak: PASS"
exit 0
