#!/bin/sh
# Verify spin/model.pml exhaustively; exit non-zero on any error.
#
#   spin/run.sh [work-dir]          (default: a temporary directory)
#
# 1. safety: assertions and invalid end states (deadlocks), full search;
# 2. each LTL claim of the model (the liveness one under weak fairness);
# 3. reachability probes: each REACH(n) point must be reachable, i.e. the
#    model built with -DPROBE=n must FAIL, so that the passes above are
#    not vacuous.
# Needs spin (Debian: apt-get install spin) and a C compiler.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null 2>&1 || {
    echo "spin/run.sh: spin not found (apt-get install spin)" >&2
    exit 1
}
cc=${CC:-cc}
work=${1:-}
if [ -z "$work" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
cp "$here/model.pml" "$work/"
cd "$work"

depth=100000   # -m: well above the depth the search reaches (~160)
status=0

# check LOG: no errors, search completed, depth limit not hit
check() {
    if grep -q "errors: 0" "$1" && ! grep -q "max search depth too small" "$1" &&
        ! grep -q "Search not completed" "$1"; then
        return 0
    fi
    return 1
}

summary() {
    grep -E "states, stored|depth reached" "$1" | tr -s ' ' | sed 's/^/    /'
}

spin -a model.pml >/dev/null
# Safety: assertions + invalid end states, no never claim.
$cc -O2 -DNOCLAIM -DSAFETY -o pan_safety pan.c
./pan_safety -m$depth >safety.log 2>&1 || true
if check safety.log; then
    echo "safety (assertions, invalid end states): ok"
else
    echo "safety: FAILED"; cat safety.log; status=1
fi
summary safety.log

# LTL claims.
$cc -O2 -o pan_ltl pan.c
for claim in at_most_once never_after_removed exactly_once_unless_removed \
    terminates; do
    fair=""
    [ "$claim" = terminates ] && fair="-f"
    ./pan_ltl -a $fair -N $claim -m$depth >"ltl_$claim.log" 2>&1 || true
    if check "ltl_$claim.log"; then
        echo "ltl $claim${fair:+ (weak fairness)}: ok"
    else
        echo "ltl $claim: FAILED"; cat "ltl_$claim.log"; status=1
    fi
    summary "ltl_$claim.log"
done

# Reachability probes: each must be violated.
probes="1:sleep 2:wake 3:removed 4:inline 5:retry 6:cb_removes 7:self 8:waited_out 9:lost_race"
for p in $probes; do
    n=${p%%:*}
    name=${p#*:}
    spin -DPROBE=$n -a model.pml >/dev/null
    $cc -O2 -DNOCLAIM -DSAFETY -o pan_probe pan.c
    ./pan_probe -m$depth >probe.log 2>&1 || true
    if grep -q "assertion violated" probe.log; then
        echo "reachable: $name"
    else
        echo "probe $name: NOT REACHED (the model no longer covers it)"
        status=1
    fi
done
rm -f pan_probe pan.* _spin_nvr.tmp model.pml.trail
[ $status -eq 0 ] && echo "spin: all checks passed" || echo "spin: FAILED"
exit $status
