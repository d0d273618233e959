#!/bin/sh
# Build the API-sequence fuzzer with clang's libFuzzer, ASan and UBSan:
#
#   fuzz/build.sh [out-dir]        (default: build/fuzz)
#
# The library is compiled from its sources (the list in CMakeLists.txt)
# with the same sanitizer and coverage flags as the fuzzer, and with
# CANCEL_TEST_HOOKS, which counts live allocations and lets an allocation
# fail on demand.  Needs clang with libFuzzer: on Debian, the clang package
# (clang-14 depends on libclang-rt-14-dev, which ships libclang_rt.fuzzer).
# Rebuilds only when a source or header is newer than the binary.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${1:-$root/build/fuzz}
cc=${FUZZ_CC:-clang}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=$out/fuzz_api

command -v "$cc" >/dev/null 2>&1 || {
    echo "fuzz/build.sh: $cc not found (apt-get install clang)" >&2
    exit 1
}

srcs=$(sed -n '/^set(CANCEL_SOURCES/,/^)/p' "$root/CMakeLists.txt" |
    grep -o 'src/[A-Za-z0-9_/]*\.c' | sed "s|^|$root/|")
[ -n "$srcs" ] || { echo "fuzz/build.sh: no sources in CMakeLists.txt" >&2; exit 1; }

if [ -x "$bin" ] && [ -z "$(find "$root/src" "$root/include" "$here/fuzz_api.c" \
        "$here/build.sh" -newer "$bin" -type f 2>/dev/null | head -n 1)" ]; then
    exit 0
fi

flags="-std=c11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Wpedantic
 -Wno-gnu-zero-variadic-macro-arguments
 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
 -D_GNU_SOURCE -DCANCEL_TEST_HOOKS -I$root/include -I$root/src -pthread"
# shellcheck disable=SC2086
"$cc" $flags -o "$bin.tmp" "$here/fuzz_api.c" $srcs
mv "$bin.tmp" "$bin"
echo "built $bin"
