#!/bin/sh
# The tests of cancopy (examples/cancopy.c), one case per run.
#
# Usage: test-cancopy.sh CANCOPY CASE
#
#   file            copy a file (not a multiple of the chunk size) and
#                   compare; again with a --timeout that is not reached;
#                   over a longer existing file (it is truncated)
#   stdio           standard input to standard output: by default, with
#                   "- -", and between two pipes
#   empty           an empty file: "copied 0 bytes", an empty copy
#   errors          exit 1 with a message: a missing source or a directory
#                   (no destination is created), a full device (/dev/full)
#   same-file       copying a file onto itself is refused; it is unharmed
#   timeout-fifo    the source is a FIFO whose writer writes some bytes and
#                   stays open: --timeout 0.2 stops the copy, exit 124,
#                   "timed out after N bytes", the destination is the first
#                   N bytes of the source; --timeout 0 copies nothing
#   sigint-pipe     standard input is a pipe whose writer wrote 100000 bytes
#                   and stays open; once the destination holds them all,
#                   SIGINT: exit 130, "canceled after 100000 bytes", the
#                   destination equals the source
#   sigterm-pipe    the same with SIGTERM
#   usage           each usage error exits 2 with a message and the usage
#                   line on standard error, nothing on standard output
#
# Only the outcome is asserted, never the timing: the timeout case uses
# real time (0.2 s), and the signal cases wait for the destination with a
# bounded polling loop before they send the signal.
#
# Exits 0 when the case passes, 1 (saying why) when it fails, 2 on a usage
# error.  POSIX sh and coreutils only.
set -u

if [ $# -ne 2 ] || [ ! -x "$1" ]; then
    echo "usage: $0 CANCOPY CASE" >&2
    exit 2
fi
cancopy=$1
name=$2

tmp=$(mktemp -d) || exit 2
writer=
copier=
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    [ -n "$copier" ] && kill "$copier" 2>/dev/null
    [ -n "$writer" ] && kill "$writer" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 2' HUP INT TERM

src=$tmp/src
out=$tmp/out
err=$tmp/err
: >"$err"

# On standard error, so that it is seen from inside $(...) too.
fail() {
    {
        echo "FAIL ($name): $*"
        if [ -s "$err" ]; then
            echo "cancopy's standard error:"
            cat "$err"
        fi
    } >&2
    exit 1
}

# make_source FILE BYTES: random bytes, so that nothing is all one value.
make_source() {
    head -c "$2" /dev/urandom >"$1" || fail "cannot make $1"
}

size() {
    wc -c <"$1" | tr -d ' '
}

# The last line cancopy wrote on standard error; progress lines end in \r.
final_line() {
    tr '\r' '\n' <"$err" | sed '/^$/d' | tail -n 1
}

# Every line cancopy wrote on standard error is its own ("cancopy: ..."),
# so that a sanitizer report or a stray warning fails the case too.
expect_clean_stderr() {
    if tr '\r' '\n' <"$err" | sed '/^$/d' | grep -qv '^cancopy: '; then
        fail "standard error holds more than cancopy's own lines"
    fi
}

# expect_status GOT WANT
expect_status() {
    [ "$1" -eq "$2" ] || fail "exit status $1, expected $2"
}

# expect_final WORDS: the final line is "cancopy: WORDS N bytes", N is the
# size of $out, and $out is the first N bytes of $src.  Prints N.
expect_final() {
    expect_clean_stderr
    line=$(final_line)
    n=$(printf '%s\n' "$line" |
        sed -n "s/^cancopy: $1 \\([0-9][0-9]*\\) bytes\$/\\1/p")
    [ -n "$n" ] || fail "final line '$line', expected 'cancopy: $1 N bytes'"
    [ -f "$out" ] || fail "no destination file"
    got=$(size "$out")
    [ "$n" -eq "$got" ] || fail "reported $n bytes, the destination has $got"
    head -c "$n" "$src" | cmp -s - "$out" ||
        fail "the destination is not the first $n bytes of the source"
    echo "$n"
}

# copy_ok WANT_BYTES ARG...: cancopy ARG... succeeds and reports WANT_BYTES.
copy_ok() {
    want=$1
    shift
    "$cancopy" "$@" 2>"$err"
    expect_status $? 0
    n=$(expect_final copied) || exit 1
    [ "$n" -eq "$want" ] || fail "copied $n bytes, expected $want"
}

# start_writer BYTES: a FIFO ($tmp/fifo) whose writer writes the first
# BYTES of $src and then keeps it open (30 s at most) without writing.
start_writer() {
    mkfifo "$tmp/fifo" || fail "mkfifo"
    (head -c "$1" "$src" && exec sleep 30) >"$tmp/fifo" 2>/dev/null \
        </dev/null &
    writer=$!
}

# wait_for_size FILE BYTES: poll (10 s at most) until FILE has BYTES.
wait_for_size() {
    tries=0
    while [ ! -f "$1" ] || [ "$(size "$1")" -lt "$2" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 200 ] || fail "$1 never reached $2 bytes"
        sleep 0.05
    done
}

# signal_case SIGNAL: SIGNAL while cancopy is blocked reading a pipe.
signal_case() {
    make_source "$src" 100000
    start_writer 100000
    "$cancopy" - "$out" <"$tmp/fifo" >/dev/null 2>"$err" &
    copier=$!
    wait_for_size "$out" 100000
    # All of it was written: cancopy is blocked in (or on its way to)
    # the next read, which only the signal ends.
    kill -"$1" "$copier" || fail "kill -$1"
    wait "$copier"
    status=$?
    copier=
    expect_status "$status" 130
    n=$(expect_final "canceled after") || exit 1
    [ "$n" -eq 100000 ] || fail "canceled after $n bytes, expected 100000"
}

case $name in
file)
    make_source "$src" 300001
    copy_ok 300001 "$src" "$out"
    rm -f "$out"
    copy_ok 300001 --timeout 60 "$src" "$out"
    rm -f "$out"
    copy_ok 300001 --timeout=60 -- "$src" "$out"
    head -c 400000 /dev/zero >"$out"
    copy_ok 300001 "$src" "$out"
    ;;
stdio)
    make_source "$src" 200000
    copy_ok 200000 <"$src" >"$out"
    copy_ok 200000 - - <"$src" >"$out"
    # A pipe on both sides, on purpose.
    # shellcheck disable=SC2002
    cat "$src" | "$cancopy" 2>"$err" | cat >"$out"
    expect_final copied >/dev/null || exit 1
    ;;
empty)
    : >"$src"
    copy_ok 0 "$src" "$out"
    ;;
errors)
    "$cancopy" "$tmp/nonexistent" "$out" 2>"$err"
    expect_status $? 1
    grep -q "^cancopy: $tmp/nonexistent: " "$err" || fail "no message"
    expect_clean_stderr
    [ ! -e "$out" ] || fail "a destination was created"

    "$cancopy" "$tmp" "$out" 2>"$err"
    expect_status $? 1
    grep -q "^cancopy: $tmp: " "$err" || fail "no message for a directory"
    expect_clean_stderr
    [ ! -e "$out" ] || fail "a destination was created"

    if [ -w /dev/full ]; then
        make_source "$src" 1000
        "$cancopy" "$src" /dev/full 2>"$err"
        expect_status $? 1
        grep -q "^cancopy: writing /dev/full: " "$err" ||
            fail "no message for a full device"
        expect_clean_stderr
    fi
    ;;
same-file)
    make_source "$src" 1000
    cp "$src" "$tmp/copy"
    "$cancopy" "$src" "$src" 2>"$err"
    expect_status $? 1
    grep -q "are the same file" "$err" || fail "no message"
    expect_clean_stderr
    cmp -s "$src" "$tmp/copy" || fail "the file was changed"
    ;;
timeout-fifo)
    make_source "$src" 70000
    start_writer 70000
    "$cancopy" --timeout 0.2 "$tmp/fifo" "$out" 2>"$err"
    expect_status $? 124
    expect_final "timed out after" >/dev/null || exit 1

    # A timeout of 0 is over before the first read.
    rm -f "$out"
    "$cancopy" --timeout 0 "$src" "$out" 2>"$err"
    expect_status $? 124
    n=$(expect_final "timed out after") || exit 1
    [ "$n" -eq 0 ] || fail "--timeout 0 copied $n bytes"
    ;;
sigint-pipe)
    signal_case INT
    ;;
sigterm-pipe)
    signal_case TERM
    ;;
usage)
    make_source "$src" 10
    for args in "--timeout" "--timeout abc" "--timeout -1" "--timeout nan" \
        "--timeout inf" "--timeout 1e10" "--timeout=" "-x" \
        "$src $out extra"; do
        # $args is split on purpose.
        # shellcheck disable=SC2086
        "$cancopy" $args >"$tmp/stdout" 2>"$err" </dev/null
        status=$?
        [ "$status" -eq 2 ] || fail "cancopy $args: exit status $status, not 2"
        [ ! -s "$tmp/stdout" ] || fail "cancopy $args: wrote to stdout"
        if [ "$(wc -l <"$err" | tr -d ' ')" -ne 2 ] ||
            ! head -n 1 "$err" | grep -q '^cancopy: ' ||
            ! tail -n 1 "$err" | grep -q '^usage: cancopy '; then
            fail "cancopy $args: not a message and the usage line"
        fi
    done
    [ ! -e "$out" ] || fail "a usage error created the destination"
    ;;
*)
    echo "$0: unknown case '$name'" >&2
    exit 2
    ;;
esac
echo "ok: cancopy $name"
exit 0
