#!/bin/sh
# Check the man pages of libcancel.
#
#   sh man/check.sh <source-dir> <lib-dir-or-build-dir>
#
# <source-dir> is the top of the source tree (it holds include/ and man/);
# <lib-dir-or-build-dir> holds libcancel.a and libcancel.so (a build tree
# such as build/plain, or an installed lib directory).
#
# 1. Examples: every .EX/.EE block of the EXAMPLE section of every page is a
#    complete C program.  Each is extracted (the roff escapes undone),
#    compiled with -std=c11 -Wall -Wextra -Wpedantic -Werror against the
#    static library, and run; it must exit 0 within $CHECK_TIMEOUT seconds.
# 2. Coverage: every exported function (nm -D of libcancel.so, plus the
#    static inline cancel_requested of token.h) has a page man3/<name>.3,
#    and every man3 page names an exported function.  A page that is only
#    ".so man3/<other>.3" counts when <other>.3 exists and lists the name
#    in its NAME section (and names it in its DESCRIPTION and RETURN VALUE
#    sections).  Every CANCEL_API prototype of the headers appears,
#    word for word after whitespace is normalized, in the SYNOPSIS of its
#    page; the FUNCTIONS section of cancel.7 lists every function; and
#    every cross-reference ".BR cancel_x (3)" names a page.
# 3. Layout: every full section-3 page has, in this order, the sections
#    NAME, SYNOPSIS, DESCRIPTION, RETURN VALUE, ERRORS, THREAD SAFETY,
#    OWNERSHIP, EXAMPLE and SEE ALSO; .TH names the file.
# 4. Roff: groff -man -Tutf8 -ww -z prints nothing for any page, and when
#    mandoc is installed, mandoc -Tlint -Wwarning finds nothing either.
#
# Environment: CC (default cc); CHECK_CFLAGS, extra compiler options for the
# examples (a sanitizer build: CHECK_CFLAGS=-fsanitize=address,undefined
# with that build's directory); CHECK_TIMEOUT, seconds per example (30).
#
# Needs: sh, awk, sed, a C compiler (cc, or $CC), nm (binutils), groff
# (groff-base), timeout (coreutils).  Exits 0 when every check passes, 1 when
# one fails, 2 on a usage error or a missing tool (the message names the
# Debian package to install).

set -u
LC_ALL=C # one collation for sort and comm, plain messages
export LC_ALL

usage() {
    echo "usage: sh man/check.sh <source-dir> <lib-dir-or-build-dir>" >&2
    exit 2
}
[ $# -eq 2 ] || usage
srcdir=$1
libdir=$2
mandir=$srcdir/man
incdir=$srcdir/include
CC=${CC:-cc}
CHECK_CFLAGS=${CHECK_CFLAGS:-}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-30}

need() { # need <command> <debian-package>
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "check.sh: '$1' not found: install the Debian package $2" \
            "(apt-get install $2)" >&2
        exit 2
    fi
}
need awk mawk
need sed sed
need "$CC" gcc
need nm binutils
need groff groff-base
need timeout coreutils

[ -d "$mandir/man3" ] || { echo "check.sh: no $mandir/man3" >&2; exit 2; }
[ -f "$incdir/cancel/token.h" ] || {
    echo "check.sh: no $incdir/cancel/token.h" >&2; exit 2; }
staticlib=
for d in "$libdir" "$libdir/lib" "$libdir/lib64"; do
    if [ -f "$d/libcancel.a" ]; then staticlib=$d/libcancel.a; break; fi
done
sharedlib=
for d in "$libdir" "$libdir/lib" "$libdir/lib64"; do
    if [ -f "$d/libcancel.so" ]; then sharedlib=$d/libcancel.so; break; fi
done
[ -n "$staticlib" ] || {
    echo "check.sh: no libcancel.a in $libdir (build it first)" >&2; exit 2; }
[ -n "$sharedlib" ] || {
    echo "check.sh: no libcancel.so in $libdir (build it first)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cancel-man.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# A full page is one that is not a ".so" redirect.
is_redirect() {
    head -n 1 "$1" | grep -q '^\.so '
}

# ---------------------------------------------------------------------------
# 1. Examples
# ---------------------------------------------------------------------------

# extract <page> <prefix>: write each EXAMPLE block to <prefix>.<n>.c and
# print how many there were.  The escapes the pages use are undone; any
# other escape inside an example is an error (reported on stderr, exit 1).
extract() {
    awk -v prefix="$2" -v page="$1" '
    function unescape(s,    out, i, c, n) {
        out = ""
        i = 1
        n = length(s)
        while (i <= n) {
            c = substr(s, i, 1)
            if (c != "\\") { out = out c; i++; continue }
            c = substr(s, i + 1, 1)
            if (c == "e" || c == "\\") { out = out "\\"; i += 2 }
            else if (c == "-") { out = out "-"; i += 2 }
            else if (c == "&") { i += 2 }
            else if (c == "(") {
                c = substr(s, i + 2, 2)
                if (c == "aq") out = out "\047"
                else if (c == "dq") out = out "\""
                else if (c == "ti") out = out "~"
                else if (c == "ha") out = out "^"
                else if (c == "rs") out = out "\\"
                else if (c == "ga") out = out "`"
                else { bad = 1; print page ": unknown escape \\(" c " in an example" > "/dev/stderr" }
                i += 4
            } else {
                bad = 1
                print page ": unknown escape \\" c " in an example" > "/dev/stderr"
                i += 2
            }
        }
        return out
    }
    /^\.SH / { insec = ($0 ~ /^\.SH "?EXAMPLES?"?[ \t]*$/); next }
    insec && /^\.EX/ { inex = 1; n++; file = prefix "." n ".c"; printf "" > file; next }
    inex && /^\.EE/ { inex = 0; close(file); next }
    inex { print unescape($0) > file }
    END { print n + 0; exit bad }
    ' "$1"
}

# build_and_run <c-file>: compile and run one example; leave the log in
# <c-file>.log and the outcome ("cc", or the exit status) in <c-file>.status.
build_and_run() {
    # shellcheck disable=SC2086 # CHECK_CFLAGS is a list of options
    if ! "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror $CHECK_CFLAGS \
        -I"$incdir" -o "${1%.c}" "$1" "$staticlib" -lpthread \
        >"$1.log" 2>&1; then
        echo cc >"$1.status"
        return
    fi
    (cd "$work" && timeout "$CHECK_TIMEOUT" "${1%.c}" </dev/null \
        >"$1.log" 2>&1)
    echo $? >"$1.status"
}

mkdir "$work/ex"
: >"$work/examples"
for page in "$mandir"/man3/*.3 "$mandir"/man7/*.7; do
    [ -f "$page" ] || continue
    is_redirect "$page" && continue
    base=$(basename "$page")
    n=$(extract "$page" "$work/ex/$base") || { fail "$base: bad escape in EXAMPLE"; continue; }
    case $page in
    */man3/*)
        [ "$n" -ge 1 ] || fail "$base: no program in its EXAMPLE section" ;;
    esac
    i=1
    while [ "$i" -le "$n" ]; do
        echo "$work/ex/$base.$i.c" >>"$work/examples"
        i=$((i + 1))
    done
done

# Several at a time: the examples mostly wait for short timers.
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
[ "$jobs" -ge 2 ] 2>/dev/null || jobs=2
running=0
while read -r c; do
    build_and_run "$c" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
done <"$work/examples"
wait

nexamples=0
while read -r c; do
    name=$(basename "$c" .c)     # <page>.<n>
    page=${name%.*}
    i=${name##*.}
    status=$(cat "$c.status" 2>/dev/null || echo lost)
    case $status in
    0) nexamples=$((nexamples + 1)) ;;
    cc)
        fail "$page: example $i does not compile:"
        sed 's/^/    /' "$c.log" ;;
    *)
        fail "$page: example $i exited with status $status:"
        sed 's/^/    /' "$c.log" ;;
    esac
done <"$work/examples"

# ---------------------------------------------------------------------------
# 2. Coverage: symbols, pages, prototypes, cross-references
# ---------------------------------------------------------------------------

nm -D --defined-only "$sharedlib" |
    awk '$2 == "T" && $3 ~ /^cancel_/ { sub(/@.*/, "", $3); print $3 }' \
        >"$work/exported"
if grep -q '^static inline bool cancel_requested(' "$incdir/cancel/token.h"; then
    echo cancel_requested >>"$work/exported"
else
    fail "token.h: no static inline cancel_requested"
fi
sort -u -o "$work/exported" "$work/exported"
[ -s "$work/exported" ] || fail "no cancel_ function exported by $sharedlib"

for page in "$mandir"/man3/*.3; do
    [ -f "$page" ] && basename "$page" .3
done | sort -u >"$work/pages"

comm -23 "$work/exported" "$work/pages" | while read -r s; do
    echo "FAIL: $s is exported but has no page man3/$s.3"
done >"$work/missing"
comm -13 "$work/exported" "$work/pages" | while read -r s; do
    echo "FAIL: man3/$s.3 names no exported function"
done >>"$work/missing"
if [ -s "$work/missing" ]; then
    cat "$work/missing"
    failures=$((failures + $(wc -l <"$work/missing")))
fi

# target <page>: the full page that documents it (itself, or its .so target).
target() {
    if is_redirect "$1"; then
        echo "$mandir/$(head -n 1 "$1" | sed 's/^\.so[ ]*//')"
    else
        echo "$1"
    fi
}

# names <page>: the names listed in the NAME section, one per line.
names() {
    awk '
    /^\.SH / { insec = ($0 ~ /^\.SH "?NAME"?[ \t]*$/); next }
    insec {
        line = $0
        sub(/[ ]\\-.*/, "", line)
        gsub(/\\-/, "-", line)
        gsub(/[, ]+/, "\n", line)
        print line
    }' "$1" | sed '/^$/d'
}

# section <page> <title>: the lines of one section.
section() {
    awk -v want="$2" '
    /^\.SH / { t = $0; sub(/^\.SH "?/, "", t); sub(/"?[ \t]*$/, "", t); insec = (t == want); next }
    insec' "$1"
}

# synopsis <page>: the declarations of the SYNOPSIS, normalized, one per line.
# Font macros are undone as roff would print them: .B/.I join their
# arguments with spaces, .BI/.BR/.IR/... alternate fonts without spaces.
normalize='
    function norm(s) {
        gsub(/\\f[BIRP]/, "", s); gsub(/\\&/, "", s); gsub(/\\-/, "-", s)
        gsub(/\\e/, "\\", s); gsub(/\\ /, " ", s)
        gsub(/[ \t]+/, " ", s)
        gsub(/\( /, "(", s); gsub(/ \)/, ")", s); gsub(/ ,/, ",", s)
        gsub(/ ;/, ";", s); gsub(/\* /, "*", s)
        sub(/^ /, "", s); sub(/ $/, "", s)
        return s
    }'
synopsis() {
    awk "$normalize"'
    function args(s, alt,    out, tok, c, i, n, sep) {
        out = ""; n = length(s); i = 1
        sep = alt ? "" : " "
        while (i <= n) {
            while (i <= n && substr(s, i, 1) == " ") i++
            if (i > n) break
            tok = ""
            if (substr(s, i, 1) == "\"") {
                i++
                while (i <= n) {
                    c = substr(s, i, 1)
                    if (c == "\"") {
                        if (substr(s, i + 1, 1) == "\"") { tok = tok "\""; i += 2; continue }
                        i++; break
                    }
                    tok = tok c; i++
                }
            } else {
                while (i <= n && substr(s, i, 1) != " ") { tok = tok substr(s, i, 1); i++ }
            }
            out = (out == "" ? tok : out sep tok)
        }
        return out
    }
    # Print the complete declarations gathered so far and drop the rest:
    # a paragraph break ends a group (#include lines, "Link with ...").
    function flush(    n, i, decl) {
        n = split(text, decl, ";")
        for (i = 1; i < n; i++) print norm(decl[i] ";")
        text = ""
    }
    function add(s) {
        if (s !~ /^[ ]*#/) text = text " " s
    }
    /^\.SH / { if (insec) flush(); insec = ($0 ~ /^\.SH "?SYNOPSIS"?[ \t]*$/); next }
    !insec { next }
    /^\.(B|I|SM)[ ]/ { add(args(substr($0, index($0, " ") + 1), 0)); next }
    /^\.(BI|IB|BR|RB|IR|RI)[ ]/ { add(args(substr($0, index($0, " ") + 1), 1)); next }
    /^\.(PP|P|LP|sp|br|fi|nf|in)/ { flush(); next }
    /^\./ { next }
    { add($0) }
    END { if (insec) flush() }' "$1"
}

# The prototypes of the headers, normalized: "<name> <declaration>".
for h in token wait io task; do
    awk "$normalize"'
    /^#/ { next }
    /CANCEL_API/ { acc = ""; on = 1 }
    on {
        acc = acc " " $0
        if (index($0, ";")) {
            on = 0
            sub(/^[ ]*CANCEL_API[ ]*/, "", acc)
            d = norm(acc)
            name = d
            sub(/\(.*/, "", name); sub(/.*[ *]/, "", name)
            print name " " d
        }
    }' "$incdir/cancel/$h.h"
done >"$work/prototypes"
echo "cancel_requested bool cancel_requested(cancel_token t);" >>"$work/prototypes"

while read -r sym; do
    page=$mandir/man3/$sym.3
    [ -f "$page" ] || continue
    full=$(target "$page")
    if [ ! -f "$full" ]; then
        fail "man3/$sym.3: redirect to a missing page ${full#"$mandir"/}"
        continue
    fi
    if ! names "$full" | grep -qx "$sym"; then
        fail "${full#"$mandir"/}: NAME does not list $sym"
    fi
    if [ "$full" != "$page" ]; then
        # A shared page documents each of its functions: it names them in
        # DESCRIPTION and in RETURN VALUE too.
        for sec in DESCRIPTION "RETURN VALUE"; do
            section "$full" "$sec" | grep -q "^\.BR $sym ()" ||
                fail "${full#"$mandir"/}: $sec does not mention $sym()"
        done
    fi
    synopsis "$full" >"$work/syn"
    grep "^$sym " "$work/prototypes" | sed "s/^$sym //" >"$work/proto"
    if [ ! -s "$work/proto" ]; then
        fail "$sym: exported but not declared with CANCEL_API in a header"
    fi
    while read -r proto; do
        grep -qxF "$proto" "$work/syn" ||
            fail "${full#"$mandir"/}: SYNOPSIS lacks the header's \"$proto\""
    done <"$work/proto"
done <"$work/exported"

# Every declared function is exported (a typo in a header shows here).
cut -d' ' -f1 "$work/prototypes" | sort -u | comm -23 - "$work/exported" |
    while read -r s; do echo "FAIL: $s is declared CANCEL_API but not exported"; done \
        >"$work/unexported"
if [ -s "$work/unexported" ]; then
    cat "$work/unexported"
    failures=$((failures + $(wc -l <"$work/unexported")))
fi

# The overview lists every function in its FUNCTIONS section.
if [ -f "$mandir/man7/cancel.7" ]; then
    section "$mandir/man7/cancel.7" FUNCTIONS |
        sed -n 's/^\.BR \(cancel_[a-z0-9_]*\) (3).*/\1/p' | sort -u |
        comm -13 - "$work/exported" |
        while read -r s; do echo "FAIL: cancel.7: FUNCTIONS does not list $s"; done \
            >"$work/unlisted"
    if [ -s "$work/unlisted" ]; then
        cat "$work/unlisted"
        failures=$((failures + $(wc -l <"$work/unlisted")))
    fi
else
    fail "no overview page man7/cancel.7"
fi

# Cross-references.
for page in "$mandir"/man3/*.3 "$mandir"/man7/*.7; do
    [ -f "$page" ] || continue
    is_redirect "$page" && continue
    sed -n -e 's/\\-/-/g' -e 's/^\.BR \(cancel[a-z0-9_-]*\) (\([37]\)).*/\1 \2/p' "$page" |
        while read -r ref sec; do
            [ -f "$mandir/man$sec/$ref.$sec" ] ||
                echo "FAIL: $(basename "$page"): refers to $ref($sec), which has no page"
        done
done >"$work/xref"
if [ -s "$work/xref" ]; then
    cat "$work/xref"
    failures=$((failures + $(wc -l <"$work/xref")))
fi

# ---------------------------------------------------------------------------
# 3. Layout
# ---------------------------------------------------------------------------

for page in "$mandir"/man3/*.3 "$mandir"/man7/*.7; do
    [ -f "$page" ] || continue
    base=$(basename "$page")
    if is_redirect "$page"; then
        [ "$(wc -l <"$page")" -eq 1 ] || fail "$base: a .so page holds one line"
        continue
    fi
    name=${base%.*}
    sec=${base##*.}
    grep -q "^\.TH $name $sec " "$page" || fail "$base: .TH does not name $name $sec"
    case $sec in
    3) want="NAME|SYNOPSIS|DESCRIPTION|RETURN VALUE|ERRORS|THREAD SAFETY|OWNERSHIP|EXAMPLE|SEE ALSO" ;;
    *) want="NAME|DESCRIPTION|SEE ALSO" ;;
    esac
    got=$(sed -n 's/^\.SH "\{0,1\}\([^"]*\)"\{0,1\}[ ]*$/\1/p' "$page" |
        awk -v want="$want" '
        BEGIN { n = split(want, w, "|"); k = 1 }
        { if (k <= n && $0 == w[k]) k++ }
        END { if (k <= n) print w[k] }')
    [ -z "$got" ] || fail "$base: section \"$got\" missing or out of order"
done

# ---------------------------------------------------------------------------
# 4. Roff
# ---------------------------------------------------------------------------

for page in "$mandir"/man3/*.3 "$mandir"/man7/*.7; do
    [ -f "$page" ] || continue
    rel=${page#"$mandir"/}
    out=$(cd "$mandir" && groff -t -man -Tutf8 -ww -z "$rel" 2>&1)
    [ -z "$out" ] || { fail "$rel: groff:"; echo "$out" | sed 's/^/    /'; }
    # mandoc calls every .so "fragile"; groff above has resolved it.
    if ! is_redirect "$page" && command -v mandoc >/dev/null 2>&1; then
        out=$(cd "$mandir" && mandoc -Tlint -Wwarning "$rel" 2>&1)
        [ -z "$out" ] || { fail "$rel: mandoc:"; echo "$out" | sed 's/^/    /'; }
    fi
done
command -v mandoc >/dev/null 2>&1 ||
    echo "note: mandoc not installed; only groff checked the roff (apt-get install mandoc)"

npages=0
for page in "$mandir"/man3/*.3 "$mandir"/man7/*.7; do
    [ -f "$page" ] && npages=$((npages + 1))
done
nsyms=$(wc -l <"$work/exported")
if [ "$failures" -ne 0 ]; then
    echo "man/check.sh: $failures failure(s); $npages pages, $nsyms functions, $nexamples examples ran"
    exit 1
fi
echo "man/check.sh: OK: $npages pages, $nsyms functions, $nexamples examples compiled and ran"
exit 0
