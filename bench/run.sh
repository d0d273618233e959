#!/bin/sh
# Run the benchmarks (make bench): bench/run.sh <build dir of bench/>.
# Prints the timing table (bench_core), the memory table (bench_sizes) and,
# when strace is installed, the system calls of a libcancel-only workload;
# everything is also written to bench/last-run.txt.
set -u
dir=${1:-build/bench/bench}
here=$(cd "$(dirname "$0")" && pwd)
out=$here/last-run.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# strace -c prints "% time seconds usecs/call calls [errors] syscall".
calls_of() { # file syscall
    awk -v s="$2" '$NF == s { print $4; found = 1 } END { if (!found) print 0 }' "$1"
}

syscall_probe() {
    if ! command -v strace >/dev/null 2>&1; then
        echo "system calls: skipped (strace is not installed)"
        return 0
    fi
    strace -f -c -o "$tmp/none" "$dir/bench_core" --probe-none >/dev/null 2>&1
    if ! strace -f -c -o "$tmp/probe" "$dir/bench_core" --probe >/dev/null 2>&1 ||
        [ ! -s "$tmp/none" ]; then
        echo "system calls: skipped (strace could not trace: ptrace not permitted?)"
        return 0
    fi
    echo "System calls of a libcancel-only workload (strace -c -f), beside the"
    echo "same program doing nothing: 1M register+unregister pairs, one cancel"
    echo "running 1M callbacks, a parent canceling 100k linked children, 1M"
    echo "source create+free; no thread ever waits:"
    echo "    libcancel: futex $(calls_of "$tmp/probe" futex) (baseline $(calls_of "$tmp/none" futex))," \
        "all system calls $(calls_of "$tmp/probe" total) (baseline $(calls_of "$tmp/none" total))"
    if strace -f -c -o "$tmp/std" "$dir/bench_core" --probe-std >/dev/null 2>&1; then
        echo "    std::stop_token, 1M stop_callbacks + request_stop in a multi-threaded process:" \
            "futex $(calls_of "$tmp/std" futex), all system calls $(calls_of "$tmp/std" total)"
    fi
}

run_all() {
    status=0
    echo "libcancel benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm)"
    if [ -x "$dir/bench_core" ]; then :; else
        echo "bench: $dir/bench_core not built" >&2
        return 1
    fi
    "$dir/bench_core" "$@" || status=1
    echo
    echo "The callback figures again in a process that never starts a thread"
    echo "(libstdc++ skips a semaphore release per callback there):"
    "$dir/bench_core" --single-thread --only cancel,children --reps 5 "$@" |
        grep -E '^\|' || status=1
    G_SLICE=always-malloc "$dir/bench_sizes" || status=1
    echo
    syscall_probe
    return $status
}

shift 2>/dev/null || true
start=$(date +%s)
{ run_all "$@"; echo $? >"$tmp/status"; } 2>&1 | tee "$out"
echo "(bench/run.sh took $(($(date +%s) - start)) s; output saved in bench/last-run.txt)"
exit "$(cat "$tmp/status")"
