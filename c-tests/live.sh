#!/usr/bin/env bash
# live.sh: the report (exact malloc and free counts, the header fields, the
# file pattern) and the live view (slabtop lists a running process, its
# --json report parses with plausible counters, a forked child has its own
# file, a killed process's file is removed by slabtop, SLABALLOC_LIVE=0
# makes none, a clean exit removes it). Waits poll for at most 10 s; nothing
# is timed. Usage: live.sh LIBSO SLABTOP. Ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
so=${1:-$root/target/release/libslaballoc.so}
slabtop=${2:-$root/target/tools/slabtop}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
npass=0; nfail=0
ok() { echo "PASS $1"; npass=$((npass + 1)); }
ko() { echo "FAIL $1${2:+ ($2)}"; nfail=$((nfail + 1)); }
unset SLABALLOC_STATS SLABALLOC_STATS_FILE SLABALLOC_LIVE SLABALLOC_BACKGROUND
libdir=$(dirname "$so")

# ---- the report
if cc -O2 -pthread -I"$root/include" "$here/report.c" -L"$libdir" -Wl,-rpath,"$libdir" -lslaballoc \
    -o "$tmp/report" 2>"$tmp/cc.err"; then
    if "$tmp/report" >"$tmp/out" 2>&1; then ok report.exact_counts; else ko report.exact_counts "$(cat "$tmp/out")"; fi
    sed 's/^/    /' "$tmp/out"
else
    ko report.build "$(head -5 "$tmp/cc.err")"
fi

# The report's fields with the zones at work: echo alone would never start
# them (its few blocks come from the starter heap: checked after).
SLABALLOC_STARTER=0 SLABALLOC_STATS=json LD_PRELOAD=$so /bin/echo hi >/dev/null 2>"$tmp/err"
if python3 - "$tmp/err" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["program"] == "echo" and r["pid"] > 0 and r["version"], r
m = r["memory"]
for k in ("resident", "resident_peak", "committed", "reserved", "in_use", "metadata"):
    assert isinstance(m[k], int), k
assert 0 < m["resident"] <= m["resident_peak"], m
assert 0 < m["committed"] <= m["reserved"], m
o = r["options"]
assert o["notify"] == "detach" and o["live"] == "1" and o["dirty_max_mb"] == 32, o
t = r["totals"]
assert t["mallocs"] >= t["cache_allocs"] > 0 and t["frees"] >= t["cache_frees"], t
assert "type_failures" in t
c = [c for c in r["classes"] if c["slabs"] > 0]
assert c and all(0 <= x["utilisation"] <= 1 for x in c), c
assert sum(x["program_mallocs"] for x in r["classes"]) + t["large_allocs"] + t["huge_allocs"] == t["mallocs"], t
PY
then ok report.json_fields; else ko report.json_fields "$(head -c 400 "$tmp/err")"; fi

# A short process: every malloc served by the starter heap, no arena, and
# the classes' program_mallocs still add up to the total.
SLABALLOC_STATS=json LD_PRELOAD=$so /bin/echo hi >/dev/null 2>"$tmp/err"
if python3 - "$tmp/err" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t, m = r["totals"], r["memory"]
assert t["mallocs"] == t["starter_mallocs"] > 0 and t["frees"] == t["starter_frees"], t
assert m["reserved"] == 0 and t["slabs_live"] == 0, (m, t)
assert sum(x["program_mallocs"] for x in r["classes"]) == t["mallocs"], t
PY
then ok report.starter_fields; else ko report.starter_fields "$(head -c 400 "$tmp/err")"; fi

SLABALLOC_STARTER=0 SLABALLOC_STATS=text LD_PRELOAD=$so /bin/echo hi >/dev/null 2>"$tmp/err"
if grep -q '^slaballoc statistics: echo (pid [0-9]*), slaballoc [0-9.]*$' "$tmp/err" &&
    grep -Eq '^  resident +[0-9.]+ (KiB|MiB)' "$tmp/err" && grep -Eq '^  reserved +64.0 MiB' "$tmp/err" &&
    grep -q '^  calls           [0-9]* mallocs' "$tmp/err" && grep -q 'util%' "$tmp/err"; then
    ok report.text_fields
else
    ko report.text_fields "$(head -12 "$tmp/err")"
fi

# SLABALLOC_STATS_FILE: one file per process, %e and %p expanded. The
# shell execs env, which execs true: one process, one pid, three programs;
# only the last one exits, so only its report is written.
out=$(SLABALLOC_STATS_FILE="$tmp/rep.%e.%p.json" SLABALLOC_STATS=json LD_PRELOAD=$so \
    sh -c 'echo $$; exec env true' 2>"$tmp/err")
if [ -s "$tmp/rep.true.$out.json" ] && [ ! -s "$tmp/err" ] &&
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["pid"] == int(sys.argv[2]) and r["program"] == "true"' \
        "$tmp/rep.true.$out.json" "$out"; then
    ok report.file_pattern
else
    ko report.file_pattern "pid $out; $(ls "$tmp"); $(head -3 "$tmp/err")"
fi
SLABALLOC_STATS_FILE=/nonexistent/dir/r.%p SLABALLOC_STATS=1 LD_PRELOAD=$so /bin/true 2>"$tmp/err"
if grep -q "^slaballoc: warning: cannot create the report file /nonexistent/dir/r.[0-9]* .*using stderr" "$tmp/err" &&
    grep -q '^slaballoc: pid=' "$tmp/err"; then
    ok report.file_unwritable
else
    ko report.file_unwritable "$(cat "$tmp/err")"
fi

# ---- the live view
if ! cc -O2 -o "$tmp/live_loop" "$here/live_loop.c" 2>"$tmp/cc.err"; then
    ko live.build "$(head -5 "$tmp/cc.err")"
elif [ ! -x "$slabtop" ]; then
    ko live.slabtop "no $slabtop (make tools)"
else
    listed() { "$slabtop" | awk -v p="$1" '$1 == p {f=1} END {exit !f}'; }
    wait_listed() { for _ in $(seq 100); do listed "$1" && return 0; sleep 0.1; done; return 1; }
    file_of() { "$slabtop" | awk -v p="$1" '$1 == p {print $NF}'; }

    LD_PRELOAD=$so "$tmp/live_loop" fork >"$tmp/fork.out" &
    parent=$!; pids+=("$parent")
    for _ in $(seq 100); do grep -q '^child ' "$tmp/fork.out" && break; sleep 0.1; done
    child=$(sed -n 's/^child //p' "$tmp/fork.out"); pids+=("${child:-0}")
    if wait_listed "$parent"; then ok live.lists; else ko live.lists "$("$slabtop" 2>&1)"; fi
    if [ -n "$child" ] && wait_listed "$child" && [ "$(file_of "$child")" != "$(file_of "$parent")" ]; then
        ok live.fork_child_own_file
    else
        ko live.fork_child_own_file "child '$child': $("$slabtop" 2>&1)"
    fi
    if "$slabtop" --json --wait 5 "$parent" >"$tmp/live.json" 2>"$tmp/live.err" &&
        python3 - "$tmp/live.json" "$parent" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["pid"] == int(sys.argv[2]) and r["program"] == "live_loop", r.get("pid")
assert r["snapshot"]["fresh"] is True, r["snapshot"]
t = r["totals"]
# Each round: one large malloc and 4096 small ones.
assert t["mallocs"] > 4096 and t["large_allocs"] >= 1 and t["frees"] > 0, t
assert t["mallocs"] >= t["frees"], t
assert r["memory"]["resident"] > 100000, r["memory"]
live = sum(c["in_use"] for c in r["classes"])
assert 3000 <= live <= 4096 + 124 * 64, live
PY
    then
        ok live.json
    else
        ko live.json "$(head -c 300 "$tmp/live.json") $(cat "$tmp/live.err")"
    fi
    if "$slabtop" --once "$parent" >"$tmp/once" 2>&1 && grep -q "^live_loop (pid $parent), slaballoc" "$tmp/once" &&
        grep -q '^memory    resident' "$tmp/once"; then
        ok live.once
    else
        ko live.once "$(head -5 "$tmp/once")"
    fi
    # Killed: its file stays until slabtop sees the process is gone.
    f=$(file_of "$parent")
    kill -9 "$parent"; wait "$parent" 2>/dev/null
    if [ -n "$f" ] && [ -e "$f" ]; then
        "$slabtop" --clean
        if [ ! -e "$f" ]; then ok live.killed_cleaned; else ko live.killed_cleaned "$f still there"; fi
    else
        ko live.killed_cleaned "no file for $parent ('$f')"
    fi
    [ -n "$child" ] && kill -9 "$child" 2>/dev/null

    # A clean exit removes the file; SLABALLOC_LIVE=0 makes none.
    LD_PRELOAD=$so "$tmp/live_loop" 3 &
    sp=$!; pids+=("$sp")
    if wait_listed "$sp"; then
        f=$(file_of "$sp")
        wait "$sp"
        if [ -n "$f" ] && [ ! -e "$f" ]; then ok live.removed_at_exit; else ko live.removed_at_exit "$f"; fi
    else
        ko live.removed_at_exit "not listed"
    fi
    # Under 50 ms of life, or with SLABALLOC_LIVE=0: no file at all (the
    # library's constructor runs before the program's, so a short program
    # cannot list itself: slabtop looks for its pid while it lives).
    SLABALLOC_LIVE=off LD_PRELOAD=$so "$tmp/live_loop" 1 2>"$tmp/err" &
    sp=$!; pids+=("$sp")
    sleep 0.5
    if ! listed "$sp" && [ ! -s "$tmp/err" ]; then ok live.off; else ko live.off "$(cat "$tmp/err")"; fi
    wait "$sp"
    # A process that ends with _exit leaves its file; the next process to
    # make its file removes it (or slabtop does). (It looks at the first 16
    # entries of the directory: slabtop --clean first leaves only live
    # processes.)
    "$slabtop" --clean
    LD_PRELOAD=$so python3 -c '
import os, time
t = time.time()
while time.time() - t < 0.3:
    x = [bytearray(40000) for _ in range(4)]
print(os.getpid(), flush=True)
os._exit(0)' >"$tmp/exit.pid"
    xp=$(cat "$tmp/exit.pid")
    dirs="/dev/shm/slaballoc-$(id -u) /tmp/slaballoc-$(id -u) ${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/slaballoc}"
    before=$(for d in $dirs; do [ -e "$d/$xp" ] && echo "$d/$xp"; done)
    LD_PRELOAD=$so "$tmp/live_loop" 0.2
    left=$(for d in $dirs; do [ -e "$d/$xp" ] && echo "$d/$xp"; done)
    if [ -n "$before" ] && [ -z "$left" ]; then ok live._exit_removed_by_next; else ko live._exit_removed_by_next "before: '$before', after: '$left'"; fi
    # A directory we cannot use: the next candidate, and no message.
    mkdir -p "$tmp/xdg" && : >"$tmp/xdg/slaballoc"
    XDG_RUNTIME_DIR=$tmp/xdg LD_PRELOAD=$so "$tmp/live_loop" 2 2>"$tmp/err" &
    sp=$!; pids+=("$sp")
    if wait_listed "$sp" && [ ! -s "$tmp/err" ]; then ok live.fail_soft; else ko live.fail_soft "$(cat "$tmp/err")"; fi
    wait "$sp"
fi

echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
