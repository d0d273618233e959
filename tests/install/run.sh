#!/bin/sh
# Install the library into a temporary prefix, then build a consumer through
# pkg-config and through find_package(cancel), and compile the umbrella
# header as C11, C17 and C++.  Then, for each bridge (bridges/) that the
# build dir built and so installed, build and run its consumer through
# pkg-config (cancel-uv, cancel-glib) and find_package(cancel_uv /
# cancel_glib).  Usage: run.sh <build-dir> <source-dir>
set -eu
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(dirname "$(find "$tmp/prefix" -name 'libcancel.so' | head -n 1)")
test -n "$libdir"
test -f "$libdir/libcancel.a"
test -f "$libdir/pkgconfig/cancel.pc"
test -f "$libdir/cmake/cancel/cancelConfig.cmake"
soname=$(readelf -d "$libdir/libcancel.so" | sed -n 's/.*SONAME.*\[\(.*\)\].*/\1/p')
test "$soname" = libcancel.so.0 || { echo "SONAME is '$soname'"; exit 1; }
# Only the public API is exported.
bad=$(nm -D --defined-only "$libdir/libcancel.so" | awk '{print $3}' |
      grep -v '^cancel_' | grep -v '^CANCEL_' || true)
test -z "$bad" || { echo "exported beyond cancel_*: $bad"; exit 1; }
if nm -D --defined-only "$libdir/libcancel.so" | grep -q ' cancel__'; then
    echo "internal cancel__ symbols are exported"; exit 1
fi

cc=${CC:-cc}
export PKG_CONFIG_PATH="$libdir/pkgconfig"
$cc -std=c11 -Wall -Wextra -Wpedantic -Werror \
    $(pkg-config --cflags cancel) "$src/tests/install/consumer/main.c" \
    -o "$tmp/consumer-pc" $(pkg-config --libs cancel)
LD_LIBRARY_PATH="$libdir" "$tmp/consumer-pc"

cmake -S "$src/tests/install/consumer" -B "$tmp/cb" \
      -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cb" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/cb/consumer"

inc="$tmp/prefix/include"
for std in c11 c17; do
    $cc -std=$std -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$inc" \
        "$src/tests/install/consumer/main.c"
done
${CXX:-c++} -std=c++17 -Wall -Wextra -Werror -I"$inc" \
    "$src/tests/install/headers.cc" -o "$tmp/headers"
"$tmp/headers"
echo "install: pkg-config, find_package, C11, C17 and C++ all fine"

# The bridges: installed by the build when it built them (pkg-config found
# libuv / gio-2.0 there).  Never the _test variants.
if find "$tmp/prefix" -name '*_test*' | grep -q .; then
    echo "a test variant of a bridge is installed"; exit 1
fi
bridges=
cmake_args=
for b in uv glib; do
    if [ ! -f "$libdir/pkgconfig/cancel-$b.pc" ]; then
        echo "install: bridge cancel_$b was not built; its consumer is skipped"
        continue
    fi
    test -f "$libdir/libcancel_$b.a"
    test -f "$inc/cancel/cancel_$b.h"
    test -f "$libdir/cmake/cancel_$b/cancel_${b}Config.cmake"
    $cc -std=c11 -Wall -Wextra -Wpedantic -Werror \
        $(pkg-config --cflags "cancel-$b") \
        "$src/tests/install/consumer/${b}_main.c" \
        -o "$tmp/$b-pc" $(pkg-config --libs "cancel-$b")
    LD_LIBRARY_PATH="$libdir" "$tmp/$b-pc"
    bridges="$bridges $b"
    cmake_args="$cmake_args -DBRIDGE_$(echo $b | tr a-z A-Z)=ON"
done
if [ -n "$bridges" ]; then
    cmake -S "$src/tests/install/consumer/bridges" -B "$tmp/bb" \
          -DCMAKE_PREFIX_PATH="$tmp/prefix" $cmake_args >/dev/null
    cmake --build "$tmp/bb" >/dev/null
    for b in $bridges; do
        LD_LIBRARY_PATH="$libdir" "$tmp/bb/${b}_consumer"
    done
    echo "install: bridge consumers ran through pkg-config and find_package:$bridges"
fi
