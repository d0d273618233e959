#!/bin/sh
# Run the benchmarks (make bench): bench/run.sh <build dir of bench/> [options
# of bench_core].
# Prints the timing table (bench_core), the layers' tables (bench_layers:
# waiting, I/O, tasks, parallel loops), the memory table (bench_sizes) and,
# when strace is installed, the system calls of a libcancel-only workload;
# everything is also written to bench/last-run.txt.  Then it assembles
# bench/report.md from the programs' machine-readable output (bench_core
# --tsv/--md, bench_layers --md, bench_sizes --md) and, when gnuplot is
# installed, draws bench/report.png with bench/report.gp.  BENCH_OUT=dir writes the three
# files there instead of bench/ (e.g. for a --quick trial run).
set -u
dir=${1:-build/bench/bench}
here=$(cd "$(dirname "$0")" && pwd)
outdir=${BENCH_OUT:-$here}
mkdir -p "$outdir" || exit 1
out=$outdir/last-run.txt
report=$outdir/report.md
chart=$outdir/report.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# strace -c prints "% time seconds usecs/call calls [errors] syscall".
calls_of() { # file syscall
    awk -v s="$2" '$NF == s { print $4; found = 1 } END { if (!found) print 0 }' "$1"
}

# Prints the system-call counts and writes them, in markdown, to $tmp/sys.md.
syscall_probe() {
    if ! command -v strace >/dev/null 2>&1; then
        echo "system calls: skipped (strace is not installed)" | tee "$tmp/sys.md"
        return 0
    fi
    strace -f -c -o "$tmp/none" "$dir/bench_core" --probe-none >/dev/null 2>&1
    if ! strace -f -c -o "$tmp/probe" "$dir/bench_core" --probe >/dev/null 2>&1 ||
        [ ! -s "$tmp/none" ]; then
        echo "system calls: skipped (strace could not trace: ptrace not permitted?)" |
            tee "$tmp/sys.md"
        return 0
    fi
    what="1M register+unregister pairs, one cancel running 1M callbacks, a
parent canceling 100k linked children, 1M source create+free; no thread
ever waits"
    lf=$(calls_of "$tmp/probe" futex) lt=$(calls_of "$tmp/probe" total)
    nf=$(calls_of "$tmp/none" futex) nt=$(calls_of "$tmp/none" total)
    echo "System calls of a libcancel-only workload (strace -c -f), beside the"
    echo "same program doing nothing: $what:"
    echo "    libcancel: futex $lf (baseline $nf), all system calls $lt (baseline $nt)"
    {
        echo "Counted with \`strace -c -f\` (\`bench_core --probe\`, \`--probe-std\`,"
        echo "\`--probe-none\`). The libcancel workload: $what."
        echo
        echo "| program | futex | all system calls |"
        echo "|---|---|---|"
        echo "| the same program doing nothing (baseline) | $nf | $nt |"
        echo "| libcancel workload | $lf | $lt |"
    } >"$tmp/sys.md"
    if strace -f -c -o "$tmp/std" "$dir/bench_core" --probe-std >/dev/null 2>&1; then
        sf=$(calls_of "$tmp/std" futex) st=$(calls_of "$tmp/std" total)
        echo "    std::stop_token, 1M stop_callbacks + request_stop in a multi-threaded process:" \
            "futex $sf, all system calls $st"
        echo "| std::stop_token: 1M stop_callbacks + request_stop, multi-threaded process | $sf | $st |" \
            >>"$tmp/sys.md"
    fi
}

run_all() {
    status=0
    echo "libcancel benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm)"
    if [ -x "$dir/bench_core" ]; then :; else
        echo "bench: $dir/bench_core not built" >&2
        return 1
    fi
    "$dir/bench_core" "$@" --tsv "$tmp/core.tsv" --md "$tmp/core.md" || status=1
    echo
    echo "The callback figures again in a process that never starts a thread"
    echo "(libstdc++ skips a semaphore release per callback there):"
    "$dir/bench_core" --single-thread --only cancel,children --reps 5 "$@" \
        --tsv "$tmp/st.tsv" --md "$tmp/st.md" | grep -E '^\|' || status=1
    if [ -x "$dir/bench_layers" ]; then
        quick=""
        for a in "$@"; do [ "$a" = --quick ] && quick=--quick; done
        "$dir/bench_layers" $quick --md "$tmp/layers.md" || status=1
    else
        echo "bench: $dir/bench_layers not built" >&2
        status=1
    fi
    G_SLICE=always-malloc "$dir/bench_sizes" --md "$tmp/sizes.md" || status=1
    echo
    syscall_probe
    return $status
}

# ---- report.md --------------------------------------------------------------

meta() { # key: a "meta" value of bench_core --tsv
    awk -F '\t' -v k="$1" '$1 == "meta" && $2 == k { print $3; exit }' "$tmp/core.tsv"
}

# The first block of a markdown fragment (the table, up to the first blank line).
first_table() {
    awk 'NF == 0 && seen { exit } /^\|/ { seen = 1 } seen' "$1"
}

# The C compiler that built libcancel, from the CMake cache of the bench build.
c_compiler() {
    cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$dir/../CMakeCache.txt" 2>/dev/null)
    [ -n "$cc" ] && "$cc" --version 2>/dev/null | head -n 1
}

write_report() { # seconds
    if [ ! -s "$tmp/core.tsv" ]; then
        echo "bench: no figures from bench_core: $report not written" >&2
        return 1
    fi
    reps=$(meta reps) lb=$(meta load_before) la=$(meta load_after)
    hw=$(meta hw_threads)
    busy=$(awk -v l="$lb" -v a="$la" 'BEGIN { print (l > 0.5 || a > 0.5) ? 1 : 0 }')
    {
        echo "# libcancel benchmark report"
        echo
        echo "Written by \`make bench\` (\`bench/run.sh\`) from the output of the"
        echo "benchmark programs; do not edit it by hand, run \`make bench\` again."
        echo "The plain-text output of the same run is saved in \`bench/last-run.txt\`"
        echo "(not committed)."
        echo
        echo "- **date**: $date"
        echo "- **machine**: $(uname -srm); $(meta cpu), $hw hardware threads"
        echo "- **compared with**: C++20 \`std::stop_token\` of libstdc++ $(meta libstdcxx)" \
            "(g++ $(meta cxx)) and \`GCancellable\` of GLib $(meta glib);" \
            "libcancel built by $(c_compiler || echo "the C compiler"), all at -O2"
        printf '%s' "- **load average**: $lb before and $la after the timing run" \
            " (1, 5, 15 min when run.sh started: $load0; when it ended: $load1)"
        if [ "$busy" = 1 ]; then
            echo ". The machine is shared with other test runs: they ran" \
                "beside this one on its $hw hardware threads, so the figures are" \
                "noisier than on an idle machine, the two-thread figure" \
                "(wall time) most of all."
        else
            echo "."
        fi
        echo "- **runs**: $reps per figure, medians shown; bench_core took" \
            "$(meta seconds) s, the whole of \`bench/run.sh\` $1 s"
        if [ "$(meta quick)" = 1 ] || [ $# -gt 1 ]; then
            shift
            echo "- **options**: \`$*\` (not the full measurement)"
        fi
        echo
        if [ -s "$chart.tmp" ]; then
            echo "![time relative to libcancel, log scale, for every figure](report.png)"
            echo
            echo "Each group of bars is one figure of the table below: the time of"
            echo "std::stop_token and GCancellable divided by libcancel's (log scale,"
            echo "libcancel = 1; above 1 is slower than libcancel). Under each group:"
            echo "libcancel's median and whether it meets its target."
            echo
        fi
        echo "## Targets"
        echo
        awk -F '\t' '$1 == "fig" && $14 != "info" { n++; if ($14 == "PASS") ok++ }
            END { printf "%d of %d timing targets met.", ok, n }' "$tmp/core.tsv"
        if [ -s "$tmp/sizes.md" ]; then
            grep -c '| PASS ' "$tmp/sizes.md" | tr -d '\n' | sed 's/^/ Memory: /'
            printf ' of %s targets met.' "$(grep -cE '\| (PASS|MISS) +\|$' "$tmp/sizes.md")"
        fi
        [ -s "$tmp/layers.md" ] && awk -F '|' '/^\|/ { v = $5; gsub(/ /, "", v)
                if (v == "PASS") ok++; if (v == "PASS" || v == "MISS" || v == "ERR") n++ }
            /^### / { exit }
            END { printf " Layers: %d of %d targets met.", ok, n }' "$tmp/layers.md"
        echo " Missed:"
        echo
        awk -F '\t' '$1 == "fig" && $14 != "PASS" && $14 != "info" {
            printf "- %s: %s, target %s\n", $17, $16, $15; n++ }
            END { if (!n) print "- none" }' "$tmp/core.tsv"
        [ -s "$tmp/sizes.md" ] && sed -n 's/^MISSED: /- memory: /p' "$tmp/sizes.md"
        # bench_layers' verdict table: | figure | libcancel | target | verdict |
        [ -s "$tmp/layers.md" ] && awk -F '|' '
            /^\|/ { v = $5; gsub(/ /, "", v)
                if (v == "MISS" || v == "ERR") {
                    f = $2; l = $3; t = $4
                    gsub(/^ +| +$/, "", f); gsub(/^ +| +$/, "", l); gsub(/^ +| +$/, "", t)
                    printf "- layers: %s: %s, target %s%s\n", f, l, t, (v == "ERR" ? " (ERROR)" : "") } }
            /^### / { exit }' "$tmp/layers.md"
        awk -F '\t' '
            function fmt(x) {
                if (x >= 100) return sprintf("%.0f", x)
                if (x >= 10) return sprintf("%.1f", x)
                if (x >= 1) return sprintf("%.2f", x)
                return sprintf("%.3f", x)
            }
            $1 == "fig" && $8 != "NaN" && $8 > 0 && $9 / $8 > 1.5 {
                s = s (s ? "; " : "") $17 " (libcancel " fmt($8) " - " fmt($9) " " $4 ")" }
            END { if (s) printf "\nNoisy in this run (the slowest run of libcancel over 1.5 times the fastest), so a verdict near its target may flip from run to run: %s.\n", s }' \
            "$tmp/core.tsv"
        echo
        echo "## How measured"
        echo
        echo "One program, \`bench/bench_core.cc\`, measures libcancel,"
        echo "\`std::stop_token\`/\`std::stop_callback\` and \`GCancellable\` in the"
        echo "same process and the same run, all compiled with -O2 (libcancel"
        echo "linked statically, GLib dynamically). Each of the $reps repetitions"
        echo "measures the three in turn, rotating who goes first, so that a slow"
        echo "phase of the shared machine hits all three; the table shows the median"
        echo "of the repetitions and the ratios of the medians. A fast operation is"
        echo "timed as a loop calibrated to last about 20 ms, after a warm-up; large"
        echo "set-ups (a million callbacks, 100,000 children, a million timers) are"
        echo "built outside the timed region. One-thread figures are timed in the"
        echo "thread's CPU time (\`CLOCK_THREAD_CPUTIME_ID\`), so time spent"
        echo "preempted by other work does not count; the two-thread figure is wall"
        echo "time. The process starts a thread before measuring, as a program that"
        echo "cancels across threads does: libstdc++ then releases a semaphore after"
        echo "every callback, which is why the callback figures are repeated in a"
        echo "process that never starts a thread. Memory is counted by"
        echo "\`bench_sizes\`, which replaces \`malloc\`; system calls by \`strace\`."
        echo "Emulations (linked sources for std, timers for GLib) are described"
        echo "under the table and in [\`README.md\`](README.md)."
        echo
        echo "## Timing"
        echo
        cat "$tmp/core.md"
        if [ -s "$tmp/st.md" ]; then
            echo
            echo "## Callbacks in a process that never starts a thread"
            echo
            echo "The same figures, $(awk -F '\t' '$2 == "reps" { print $3 }' "$tmp/st.tsv")"
            echo "runs each, in a process where libstdc++ skips the semaphore release"
            echo "per \`std::stop_callback\`:"
            echo
            first_table "$tmp/st.md"
        fi
        if [ -s "$tmp/sizes.md" ]; then
            echo
            echo "## Memory"
            cat "$tmp/sizes.md"
        fi
        if [ -s "$tmp/layers.md" ]; then
            echo
            echo "## Layers: waiting, I/O, tasks, parallel loops"
            echo
            cat "$tmp/layers.md"
        fi
        echo
        echo "## System calls"
        echo
        cat "$tmp/sys.md"
    } >"$report.tmp" && mv "$report.tmp" "$report"
}

# ---- report.png -------------------------------------------------------------

# The chart's data (see report.gp): one line per figure of the main run, then
# the single-threaded callback figures; prints "ymin ymax split".
chart_data() {
    awk -F '\t' -v OFS='\t' '
        function fmt(x) {
            if (x >= 100) return sprintf("%.0f", x)
            if (x >= 10) return sprintf("%.1f", x)
            if (x >= 1) return sprintf("%.2f", x)
            return sprintf("%.3f", x)
        }
        function ratio(v, l) {
            if (v == "NaN" || l == "NaN" || l <= 0) return "NaN"
            r = v / l
            if (r < lo) lo = r
            if (r > hi) hi = r
            return sprintf("%.4g", r)
        }
        # a label in lines of at most 14 characters (the width of a group),
        # separated by | (report.gp turns them into line breaks)
        function wrap(s,   n, i, w, line, res) {
            n = split(s, w, " ")
            line = w[1]
            for (i = 2; i <= n; i++)
                if (length(line) + 1 + length(w[i]) > 14) {
                    res = res line "|"
                    line = w[i]
                } else
                    line = line " " w[i]
            return res line
        }
        BEGIN { lo = 1; hi = 1 }
        FNR == 1 { file++; if (file == 2) { sx = x + 0.75; x += 0.5 } }
        $1 != "fig" { next }
        {
            unit = $4; sub(/\/disarm\+arm$/, "", unit)
            res = $14
            if ($14 == "PASS") res = "target met"
            if ($14 == "MISS") res = "target MISSED"
            if ($14 == "info") res = "no target"
            label = wrap($3 (file == 2 ? ", no thread" : ""))
            x++
            print x, label, ($5 == "NaN" ? "-" : fmt($5) " " unit), res,
                ratio($6, $5), ratio($7, $5), ($6 == "NaN" ? 1 : 0) > out
        }
        END {
            ymin = 10 ^ int(log(lo / 2) / log(10) - (lo / 2 < 1 ? 1 : 0))
            ymax = 10 ^ int(log(hi * 4) / log(10) + 1)
            print ymin, ymax, (sx == "" ? 0 : sx)
        }' out="$tmp/chart.dat" "$tmp/core.tsv" "$tmp/st.tsv"
}

draw_chart() {
    rm -f "$chart.tmp"
    if ! command -v gnuplot >/dev/null 2>&1; then
        echo "bench: gnuplot is not installed: no chart (make deps-bench as root installs gnuplot-nox)" >&2
        return 0
    fi
    [ -s "$tmp/core.tsv" ] || return 0
    [ -s "$tmp/st.tsv" ] || : >"$tmp/st.tsv"
    # shellcheck disable=SC2046 # three numbers, meant to be split
    set -- $(chart_data)
    sub="$date; $(meta cpu), $(meta hw_threads) hardware threads;"
    sub="$sub load average $(meta load_before) (shared machine); medians of $(meta reps) runs"
    sub=$(printf '%s' "$sub" | tr -d "'\\\\")
    if gnuplot -e "data='$tmp/chart.dat'; out='$chart.tmp'; subtitle='$sub';
            ymin=$1; ymax=$2; split=$3" "$here/report.gp" 2>"$tmp/gnuplot.err" &&
        [ -s "$chart.tmp" ]; then
        return 0
    fi
    echo "bench: gnuplot failed: no chart" >&2
    cat "$tmp/gnuplot.err" >&2
    rm -f "$chart.tmp"
}

shift 2>/dev/null || true
start=$(date +%s)
date=$(date -u '+%Y-%m-%d %H:%M UTC')
load0=$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null | sed 's/ /, /g')
{ run_all "$@"; echo $? >"$tmp/status"; } 2>&1 | tee "$out"
load1=$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null | sed 's/ /, /g')
status=$(cat "$tmp/status")
draw_chart
write_report "$(($(date +%s) - start))" "$@" || status=1
if [ -s "$chart.tmp" ]; then
    mv "$chart.tmp" "$chart"
fi
files="$report"
[ -s "$chart" ] && files="$report and $chart"
echo "(bench/run.sh took $(($(date +%s) - start)) s; output saved in $out; report in $files)"
exit "$status"
