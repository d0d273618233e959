#!/bin/sh
# Install what the benchmarks need (make deps-bench, run by make bench):
# a C++20 compiler with <stop_token> (g++; g++-12 on Debian 12), pkg-config
# and GLib's development files (GCancellable lives in gio-2.0), and gnuplot
# (gnuplot-nox) for the chart bench/report.png.  Uses apt-get when something
# is missing and we are root; otherwise says what to install.  gnuplot is
# optional: without it run.sh writes bench/report.md but no chart.  The
# library itself needs none of this.
set -u

need=""
add() {
    case " $need " in *" $1 "*) ;; *) need="$need $1" ;; esac
}

has_stop_token() {
    for cxx in ${CXX:-} g++-12 g++ c++; do
        command -v "$cxx" >/dev/null 2>&1 || continue
        printf '#include <stop_token>\nint main(){std::stop_source s;return s.stop_requested();}\n' |
            "$cxx" -std=c++20 -x c++ -fsyntax-only - >/dev/null 2>&1 && return 0
    done
    return 1
}

command -v cmake >/dev/null 2>&1 || add cmake
command -v g++ >/dev/null 2>&1 || add g++
command -v pkg-config >/dev/null 2>&1 || add pkg-config
if ! command -v pkg-config >/dev/null 2>&1 ||
    ! pkg-config --exists gio-2.0 2>/dev/null; then
    add libglib2.0-dev
fi
if [ -z "$need" ] && ! has_stop_token; then
    add g++-12
fi
# Optional: missing gnuplot alone never fails make bench.
want=""
command -v gnuplot >/dev/null 2>&1 || want="gnuplot-nox fonts-dejavu-core"

[ -z "$need" ] && [ -z "$want" ] && exit 0

if [ -z "$need" ] && { [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; }; then
    echo "bench: gnuplot is not installed: no chart (bench/report.png);" \
        "install gnuplot-nox (as root: 'sudo make deps-bench')" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench: missing:$need${want:+ $want} -- install them (Debian/Ubuntu package names)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "bench: missing packages:$need${want:+ $want}" >&2
    echo "bench: run 'sudo apt-get install -y$need${want:+ $want}', or 'sudo make deps-bench'" >&2
    exit 1
fi
echo "bench: installing$need${want:+ $want}"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # the list is meant to be split
if [ -n "$need" ] && ! apt-get install -y -qq $need; then
    { apt-get update -qq && apt-get install -y -qq $need; } || {
        echo "bench: apt-get install$need failed" >&2
        exit 1
    }
fi
# --no-install-recommends: gnuplot-nox recommends groff, which a PNG does
# not need; the chart's font comes from fonts-dejavu-core.
# shellcheck disable=SC2086 # the list is meant to be split
if [ -n "$want" ] && ! apt-get install -y -qq --no-install-recommends $want; then
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $want; } ||
        echo "bench: apt-get install $want failed: no chart" >&2
fi
if ! has_stop_token; then
    apt-get install -y -qq g++-12 || true
    has_stop_token || {
        echo "bench: no C++ compiler with C++20 <stop_token>; install g++-12" >&2
        exit 1
    }
fi
