#!/bin/sh
# Build and run the API-sequence fuzzer for a bounded time:
#
#   fuzz/run.sh SECONDS [out-dir]      (out-dir default: build/fuzz)
#
# The committed seed corpus (fuzz/corpus) is read but never written: new
# inputs go to <out-dir>/corpus, crashes to <out-dir>/crash-*.  Exits non-zero
# on any crash, sanitizer report or model divergence (the input that caused
# it is printed and kept).  Replay one:  build/fuzz/fuzz_api <file>
set -eu
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-60}
out=${2:-$(dirname "$here")/build/fuzz}
sh "$here/build.sh" "$out"
out=$(cd "$out" && pwd)
mkdir -p "$out/corpus"
jobs=${FUZZ_JOBS:-1}
echo "fuzzing for ${secs}s (corpus: $out/corpus + fuzz/corpus)"
# -timeout: one input must never take long; a hang (deadlock) is a finding.
exec "$out/fuzz_api" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
    -max_len=1024 -print_final_stats=1 -artifact_prefix="$out/" \
    "$out/corpus" "$here/corpus"
