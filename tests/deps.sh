#!/bin/sh
# What `make test` needs beyond a C toolchain and CMake: pkg-config and a C++
# compiler (the install test), clang (the ASan+UBSan tree).  Installed from
# Debian's archive when missing and running as root; otherwise a clear
# message says what to install.
set -u
missing=""
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
command -v c++ >/dev/null 2>&1 || missing="$missing g++"
command -v clang >/dev/null 2>&1 || missing="$missing clang"
command -v groff >/dev/null 2>&1 || missing="$missing groff-base"
command -v spin >/dev/null 2>&1 || missing="$missing spin"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing"
    apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    exit $?
fi
echo "make test needs:$missing (apt-get install$missing)" >&2
exit 1
