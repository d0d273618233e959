#!/bin/sh
# Install what the benchmarks need (make deps-bench, run by make bench):
# a C++20 compiler with <stop_token> (g++; g++-12 on Debian 12), pkg-config
# and GLib's development files (GCancellable lives in gio-2.0).  Uses
# apt-get when something is missing and we are root; otherwise says what
# to install.  The library itself needs none of this.
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

[ -z "$need" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench: missing:$need -- install them (Debian/Ubuntu package names)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "bench: missing packages:$need" >&2
    echo "bench: run 'sudo apt-get install -y$need', or 'sudo make deps-bench'" >&2
    exit 1
fi
echo "bench: installing$need"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # the list is meant to be split
if ! apt-get install -y -qq $need; then
    apt-get update -qq && apt-get install -y -qq $need || {
        echo "bench: apt-get install$need failed" >&2
        exit 1
    }
fi
if ! has_stop_token; then
    apt-get install -y -qq g++-12 || true
    has_stop_token || {
        echo "bench: no C++ compiler with C++20 <stop_token>; install g++-12" >&2
        exit 1
    }
fi
