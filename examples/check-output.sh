#!/bin/sh
# Run one example program and compare what it printed with what it must print.
#
# Usage: check-output.sh [--status N] [--stderr FILE] EXPECTED STDIN -- CMD [ARG...]
#
#   EXPECTED      the exact standard output, byte for byte
#   STDIN         the file fed to standard input (/dev/null for none)
#   --status N    the exit status CMD must return (default 0)
#   --stderr FILE the exact standard error (default: it must be empty, so a
#                 sanitizer report or a stray warning fails the test too)
#
# Exits 0 when stdout, stderr and the exit status all match; otherwise prints
# a unified diff of what differed (and the status) and exits 1.  Exits 2 on a
# usage error.  POSIX sh, diff and mktemp only.
set -u

usage() {
    echo "usage: $0 [--status N] [--stderr FILE] EXPECTED STDIN -- CMD [ARG...]" >&2
    exit 2
}

want_status=0
want_stderr=
while [ $# -gt 0 ]; do
    case $1 in
    --status)
        [ $# -ge 2 ] || usage
        want_status=$2
        shift 2
        ;;
    --stderr)
        [ $# -ge 2 ] || usage
        want_stderr=$2
        shift 2
        ;;
    --*) usage ;;
    *) break ;;
    esac
done
if [ $# -lt 4 ] || [ "$3" != "--" ]; then
    usage
fi
expected=$1
input=$2
shift 3

for f in "$expected" "$input" ${want_stderr:+"$want_stderr"}; do
    if [ ! -r "$f" ]; then
        echo "$0: cannot read $f" >&2
        exit 2
    fi
done

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
: >"$tmp/empty"

"$@" <"$input" >"$tmp/stdout" 2>"$tmp/stderr"
status=$?

ok=1
if ! diff -u "$expected" "$tmp/stdout" >"$tmp/diff"; then
    echo "FAIL: standard output differs (--- expected, +++ actual):"
    cat "$tmp/diff"
    ok=0
fi
if ! diff -u "${want_stderr:-$tmp/empty}" "$tmp/stderr" >"$tmp/diff"; then
    echo "FAIL: standard error differs (--- expected, +++ actual):"
    cat "$tmp/diff"
    ok=0
fi
if [ "$status" -ne "$want_status" ]; then
    echo "FAIL: exit status $status, expected $want_status"
    ok=0
fi
if [ "$ok" -eq 1 ]; then
    echo "ok: $* <$input"
    exit 0
fi
exit 1
