# The chart of bench/report.md (bench/report.png), drawn by bench/run.sh:
#
#   gnuplot -e "data='FILE'; out='report.png'; subtitle='...'; \
#               ymin=0.05; ymax=200; split=10.75" bench/report.gp
#
# data: one line per figure, tab-separated (run.sh writes it from
# bench_core --tsv):
#   x  label  libcancel-median-with-unit  result  std/lib  glib/lib  std-n/a
# where the ratios are the other implementation's median over libcancel's
# (NaN: no equivalent; std-n/a is then 1) and a | in the label breaks the
# line.  Every bar is a time relative to libcancel on a log
# scale: libcancel is 1, a bar above 1 is slower than libcancel, below 1
# faster.  The groups right of x = split (if any) come from a process that
# never started a thread.

if (!exists("data")) data = 'report.dat'
if (!exists("out")) out = 'report.png'
if (!exists("subtitle")) subtitle = ''
if (!exists("ymin")) ymin = 0.05
if (!exists("ymax")) ymax = 200
if (!exists("split")) split = 0

set terminal pngcairo size 1600,900 noenhanced font "DejaVu Sans,11" background "white"
set output out
set datafile separator "\t"
set encoding utf8

set title "libcancel beside C++20 std::stop_token and GLib's GCancellable: time relative to libcancel" font ",15" offset 0,1.2
set label 1 subtitle at graph 0.5, graph 1.035 center font ",10" tc rgb "#444444"
set tmargin 5.5
set ylabel "time relative to libcancel (log scale; libcancel = 1, higher = slower than libcancel)"
set logscale y
set yrange [ymin:ymax]
set format y "%g×"
set ytics nomirror
set mytics 10
set grid ytics lc rgb "#dddddd" lt 1
set border 3
set xtics nomirror scale 0 font ",9.5" offset 0,-0.3
set bmargin 9.5
set key top left horizontal reverse Left box opaque samplen 2 width 2 font ",11"
set style fill solid 0.9 border lc rgb "#404040"

stats data using 1 nooutput
set xrange [STATS_min - 0.6 : STATS_max + 0.6]

# libcancel's line
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lc rgb "#1f4e99" dt 2 lw 1.5 front
if (split > 0) {
    set arrow 2 from first split, graph 0 to first split, graph 1 nohead lc rgb "#888888" dt 3 lw 1.5
    set label 2 "in a process that\nnever started a thread:\nno semaphore release per\nstd::stop_callback" \
        at first split + 0.08, graph 0.97 left font ",9" tc rgb "#555555"
}

w = 0.26      # distance between the bars of a group
bw = 0.25     # bar width
lab(r) = r != r ? "" : r >= 10 ? sprintf("%.0f×", r) : r >= 1 ? sprintf("%.1f×", r) : sprintf("%.2f×", r)
# a bar from the bottom of the plot up to the value
bar(x, k) = x + (k - 1) * w
# a ratio's label sits above its bar, and above libcancel's when lower
# the label's | become line breaks
nl(s) = strstrt(s, "|") ? s[1:strstrt(s, "|") - 1]."\n".nl(s[strstrt(s, "|") + 1:]) : s

plot \
    data using (bar($1,0)):(sqrt(ymin)):(bar($1,0)-bw/2):(bar($1,0)+bw/2):(ymin):(1.0) \
        with boxxyerror lc rgb "#1f4e99" title "libcancel", \
    '' using (bar($1,1)):(sqrt(ymin*$5)):(bar($1,1)-bw/2):(bar($1,1)+bw/2):(ymin):5 \
        with boxxyerror lc rgb "#e8892b" title "std::stop_token (libstdc++)", \
    '' using (bar($1,2)):(sqrt(ymin*$6)):(bar($1,2)-bw/2):(bar($1,2)+bw/2):(ymin):6 \
        with boxxyerror lc rgb "#4c9a4c" title "GCancellable (GLib)", \
    '' using 1:(NaN):xticlabels(nl(strcol(2))."\n".strcol(3)."\n".strcol(4)) with points notitle, \
    '' using (bar($1,1)):(($5 < 1 ? 1 : $5) * 1.12):(lab($5)) with labels center offset 0,0.3 font ",9" notitle, \
    '' using (bar($1,2)):(($6 < 1 ? 1 : $6) * 1.12):(lab($6)) with labels center offset 0,0.3 font ",9" notitle, \
    '' using (bar($1,1)):($7 > 0 ? ymin*1.8 : NaN):("n/a") with labels center rotate by 90 font ",9" tc rgb "#777777" notitle
