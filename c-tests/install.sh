#!/usr/bin/env bash
# install.sh: `make install` into a temporary prefix, then build the README's
# malloc-types example against the installed files with pkg-config, run it on
# two CPUs, and check its typed usage in the SLABALLOC_STATS=json report, with
# and without the installed slabrun wrapper. Ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npass=0; nfail=0
ok() { echo "PASS $1"; npass=$((npass + 1)); }
ko() { echo "FAIL $1${2:+ ($2)}"; nfail=$((nfail + 1)); }

prefix=$tmp/prefix
if make -s install PREFIX="$prefix" >"$tmp/install.log" 2>&1; then
    ok install
else
    ko install "$(tail -5 "$tmp/install.log")"
fi
for f in lib/libslaballoc.so lib/libslaballoc.a include/slaballoc.h lib/pkgconfig/slaballoc.pc bin/slabrun bin/slabtop; do
    [ -e "$prefix/$f" ] || ko "install.$f" "missing"
done

awk '/<!-- example:types -->/{on=1; next} /<!-- \/example:types -->/{on=0} on' README.md |
    sed '/^```/d' > "$tmp/example.c"
[ -s "$tmp/example.c" ] || ko readme.example "no example found in README.md"

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
flags=$(pkg-config --cflags --libs slaballoc 2>"$tmp/pc.err") || ko pkg-config "$(cat "$tmp/pc.err")"
if ${CC:-cc} -pthread "$tmp/example.c" $flags -o "$tmp/example" 2>"$tmp/cc.err"; then
    ok example.build
else
    ko example.build "$(head -5 "$tmp/cc.err")"
fi

check() { # name, command...
    local name=$1; shift
    if ! SLABALLOC_STATS=json "$@" >"$tmp/out" 2>"$tmp/err"; then
        ko "$name" "exit status $?: $(cat "$tmp/out" "$tmp/err" | head -5)"
        return
    fi
    if python3 - "$tmp/out" "$tmp/err" <<'PY'
import json, re, sys
out = open(sys.argv[1]).read()
err = open(sys.argv[2]).read()
m = re.search(r"cache: bytes=(\d+) objects=(\d+) expected=(\d+)", out)
assert m, out
rep = json.loads(err[err.index('{"totals"'):])
types = {t["name"]: t for t in rep["types"]}
cache = types["cache"]
assert cache["bytes"] == int(m.group(3)), (cache, m.groups())
assert cache["objects"] == 1500, cache
assert types["bufs"]["bytes"] == 0 and types["bufs"]["failures"] == 1, types["bufs"]
t = rep["totals"]
assert t["local_frees"] + t["remote_frees"] + t["cache_frees"] + t["starter_frees"] >= 500, t
print("types in JSON:", cache)
PY
    then ok "$name"; else ko "$name" "report mismatch"; fi
}
check example.linked "$tmp/example"
check example.slabrun "$prefix/bin/slabrun" --json -- "$tmp/example"

# The installed slabtop sees a program that the installed slabrun started.
if "$prefix/bin/slabtop" --help >"$tmp/help" 2>&1 && grep -q '^usage:' "$tmp/help"; then
    ok slabtop.help
else
    ko slabtop.help "$(head -3 "$tmp/help")"
fi
"$prefix/bin/slabrun" -- python3 -c '
import time
while True:
    x = [bytearray(40000) for _ in range(4)]
    time.sleep(0.01)' &
sleeper=$!
listed=""
for _ in $(seq 100); do
    if "$prefix/bin/slabtop" | awk -v p="$sleeper" '$1 == p && $2 ~ /^python3/ {f=1} END {exit !f}'; then
        listed=1; break
    fi
    sleep 0.1
done
kill "$sleeper" 2>/dev/null; wait "$sleeper" 2>/dev/null
[ -n "$listed" ] && ok slabtop.lists_slabrun || ko slabtop.lists_slabrun "$("$prefix/bin/slabtop" 2>&1 | head -5)"

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
