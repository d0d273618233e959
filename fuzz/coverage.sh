#!/bin/sh
# Line coverage of the core reached by a fuzz corpus (clang source-based
# coverage; no sanitizers):
#
#   fuzz/coverage.sh [out-dir] [corpus-dir ...]
#       defaults: build/fuzz, and build/fuzz/corpus + fuzz/corpus
#
# Prints llvm-cov's per-file report for the files the fuzzer targets.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${1:-$root/build/fuzz}
[ $# -gt 0 ] && shift
[ $# -eq 0 ] && set -- "$out/corpus" "$here/corpus"
mkdir -p "$out"
srcs=$(sed -n '/^set(CANCEL_SOURCES/,/^)/p' "$root/CMakeLists.txt" |
    grep -o 'src/[A-Za-z0-9_/]*\.c' | sed "s|^|$root/|")
# shellcheck disable=SC2086
clang -std=c11 -g -O0 -fsanitize=fuzzer -fprofile-instr-generate \
    -fcoverage-mapping -D_GNU_SOURCE -DCANCEL_TEST_HOOKS -I"$root/include" \
    -I"$root/src" -pthread -o "$out/fuzz_api_cov" "$here/fuzz_api.c" $srcs
rm -f "$out"/cov-*.profraw
LLVM_PROFILE_FILE="$out/cov-%p.profraw" "$out/fuzz_api_cov" -runs=0 "$@" \
    >"$out/cov-run.log" 2>&1
llvm-profdata merge -sparse "$out"/cov-*.profraw -o "$out/cov.profdata"
rm -f "$out"/cov-*.profraw
llvm-cov report "$out/fuzz_api_cov" -instr-profile="$out/cov.profdata" \
    "$root/src/registration.c" "$root/src/source.c" "$root/src/linked.c" \
    "$root/src/timer.c" "$root/src/alloc.c"
echo "details: llvm-cov show $out/fuzz_api_cov -instr-profile=$out/cov.profdata src/<file>.c"
