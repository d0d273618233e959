#!/bin/sh
# Run the tests of an unsanitized build under valgrind:
#
#   valgrind/run.sh BUILD-DIR [memcheck|threads|all]     (default: memcheck)
#
#   memcheck  every case of every unit and fault program (tests/unit/*.c,
#             tests/fault/*.c: `prog --list`, then `prog NAME`, one process
#             per case, as CTest runs them) under memcheck with
#             --leak-check=full, at their full iteration counts.  Any error
#             or leak fails the case; the only suppression
#             (valgrind/memcheck.supp) is justified there.  Any unsanitized
#             build (make check-valgrind: build/plain).
#   threads   every case of the stress programs (tests/stress/*.c) under
#             DRD, with their iterations divided by CANCEL_TEST_DIV (default
#             200).  Any DRD report fails the case; there is no suppression.
#             Needs a build configured with -DCANCEL_VALGRIND=ON, whose
#             synchronisation is annotated for DRD (make check-valgrind:
#             build/drd); see valgrind/README.md.  VALGRIND_THREADS=helgrind
#             runs helgrind instead, which does not honour every annotation
#             (see the README).
#   all       both, on one (annotated) tree.
#
# Cases run in parallel (JOBS, default nproc); each has a time limit
# (VALGRIND_TIMEOUT seconds, default 600).  The log of each failed case
# stays in BUILD-DIR/valgrind/, and the summary line in
# BUILD-DIR/valgrind/summary.  Exit status 0 only if every case passed.
set -u
here=$(cd "$(dirname "$0")" && pwd)

# One case: "run_case TOOL PROG NAME LOGDIR" prints
# "PASS|FAIL <seconds>s TOOL prog.name".
run_case() {
    tool=$1 prog=$2 name=$3 logs=$4
    base=$(basename "$prog").$name
    log=$logs/$tool.$base.log
    case $tool in
    memcheck)
        set -- --tool=memcheck --leak-check=full \
            --errors-for-leak-kinds=definite,indirect,possible \
            --suppressions="$here/memcheck.supp" ;;
    drd)
        # Merging segments every 100 new ones rather than every 10 keeps
        # DRD several times faster on the long stress cases (it changes
        # only the "other segment" shown in a report, not what is found).
        set -- --tool=drd --segment-merging-interval=100 ;;
    helgrind)
        set -- --tool=helgrind ;;
    *)
        echo "FAIL 0s $tool $base (unknown tool)"
        return ;;
    esac
    # The thread checkers run the stress loops shorter; memcheck runs every
    # case as CTest does.
    div=1
    [ "$tool" = memcheck ] || div=${CANCEL_TEST_DIV:-200}
    start=$(date +%s)
    # A valgrind error exits 97, a failed test its own status, a hang 124.
    (cd "$logs" && CANCEL_TEST_DIV=$div timeout "${VALGRIND_TIMEOUT:-600}" \
        valgrind -q --error-exitcode=97 "$@" "$prog" "$name") >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    if [ $rc -eq 0 ]; then
        echo "PASS ${secs}s $tool $base"
        rm -f "$log"
    else
        echo "FAIL ${secs}s $tool $base (exit $rc, log: $log)"
    fi
}

if [ "${1:-}" = --case ]; then
    shift
    run_case "$@"
    exit 0
fi

build=${1:?usage: valgrind/run.sh BUILD-DIR [memcheck|threads|all]}
what=${2:-memcheck}
build=$(cd "$build" && pwd)
tests=$build/tests
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
threads_tool=${VALGRIND_THREADS:-drd}
logs=$build/valgrind
command -v valgrind >/dev/null 2>&1 || {
    echo "valgrind/run.sh: valgrind not found (apt-get install valgrind)" >&2
    exit 1
}
[ -d "$tests" ] || { echo "valgrind/run.sh: no $tests" >&2; exit 1; }
if [ "$what" != memcheck ] &&
    ! grep -q '^CANCEL_VALGRIND:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
    echo "valgrind/run.sh: $what needs a tree configured with" \
        "-DCANCEL_VALGRIND=ON (make build/drd/.built)" >&2
    exit 2
fi
rm -rf "$logs"
mkdir -p "$logs"

# One line per case: "TOOL PROG NAME LOGDIR".
cases=$logs/cases
: >"$cases"
add_cases() {
    tool=$1
    shift
    for prog in "$@"; do
        [ -x "$prog" ] || continue
        "$prog" --list | while read -r name; do
            echo "$tool $prog $name $logs"
        done >>"$cases"
    done
}
# Cases that cannot run under valgrind, each with its reason: valgrind/skip.
skipped=$(grep -v '^#' "$here/skip" 2>/dev/null | grep -v '^ *$' || true)
filter_skips() {
    [ -z "$skipped" ] && return
    for k in $skipped; do
        prog=${k%%.*}
        name=${k#*.}
        grep -v " [^ ]*/$prog $name " "$cases" >"$cases.tmp"
        if ! cmp -s "$cases" "$cases.tmp"; then
            echo "valgrind: skipping $k (see valgrind/skip)"
        fi
        mv "$cases.tmp" "$cases"
    done
}
case $what in
memcheck) add_cases memcheck "$tests"/test_* "$tests"/fault_* ;;
threads) add_cases "$threads_tool" "$tests"/stress_* ;;
all)
    add_cases memcheck "$tests"/test_* "$tests"/fault_*
    add_cases "$threads_tool" "$tests"/stress_* ;;
*) echo "valgrind/run.sh: unknown mode $what" >&2; exit 2 ;;
esac
filter_skips

n=$(wc -l <"$cases")
echo "valgrind ($what): $n cases, $jobs at a time (logs: $logs)"
start=$(date +%s)
results=$logs/results
xargs -P "$jobs" -L 1 sh "$here/run.sh" --case <"$cases" | tee "$results"
secs=$(($(date +%s) - start))
pass=$(grep -c '^PASS' "$results")
fail=$(grep -c '^FAIL' "$results")
echo
echo "valgrind ($what): $pass passed, $fail failed, ${secs}s" | tee "$logs/summary"
echo "slowest:"
sort -k2 -n -r "$results" | head -n 5 | sed 's/^/  /'
if [ "$fail" -ne 0 ] || [ "$pass" -ne "$n" ]; then
    for f in "$logs"/*.log; do
        [ -f "$f" ] || continue
        echo "==== $f"
        head -n 80 "$f"
    done
    exit 1
fi
exit 0
