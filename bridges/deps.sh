#!/bin/sh
# What the optional bridges need (run by `make test` before it configures):
# pkg-config and the development files of libuv (libuv1-dev) and of GLib /
# GIO (libglib2.0-dev).  Installed from Debian's archive with apt-get when
# missing and running as root; otherwise a message says what to install and
# the script still exits 0, because the bridges are optional: a tree
# configured without them builds libcancel and its tests as before and
# simply has no `bridge` tests.
#
# Usage: bridges/deps.sh            install what is missing (when root)
#        bridges/deps.sh --check    only report; exit 1 if something is missing
set -u

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

need=""
add() {
    case " $need " in *" $1 "*) ;; *) need="$need $1" ;; esac
}

have_pc() {
    command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1" 2>/dev/null
}

command -v pkg-config >/dev/null 2>&1 || add pkg-config
have_pc libuv || add libuv1-dev
have_pc gio-2.0 && have_pc gio-unix-2.0 || add libglib2.0-dev

[ -z "$need" ] && exit 0

if [ "$check_only" = 1 ]; then
    echo "bridges: missing:$need" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "bridges: not built without:$need (apt-get install$need)" >&2
    exit 0
fi
echo "bridges: installing$need"
export DEBIAN_FRONTEND=noninteractive
# Try without refreshing the package lists first: on a machine whose lists
# are current this needs no network round trip to the index.
# shellcheck disable=SC2086 # the list is meant to be split
if ! apt-get install -y -qq $need >/dev/null 2>&1; then
    apt-get update -qq >/dev/null &&
        apt-get install -y -qq $need >/dev/null || {
        echo "bridges: apt-get install$need failed; building without them" >&2
        exit 0
    }
fi
exit 0
