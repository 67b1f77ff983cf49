#!/usr/bin/env bash
# run.sh - build and run the slaballoc C test suite.
#
# Usage (from anywhere inside the repo):  c-tests/run.sh
# Env:
#   SLABALLOC_SO  path of the shared library (default target/release/libslaballoc.so,
#                 relative to the repo root); the static variant uses libslaballoc.a
#                 from the same directory.
#   CPU_IDS_SO    a second build (make build-cpu-ids) whose zones follow
#                 the CPU number even where the kernel has mm_cid: the *.cpu_ids
#                 runs use it (skipped when unset or missing)
#   CC            C compiler (default cc)
#   QUICK=1       smaller sizes (about a minute in all)
#   KEEP_LOGS=1   print the full log of every test, not only of failures
# Output: one line per test, "PASS name" / "FAIL name" / "SKIP name (why)",
# then "N passed, N failed[, N skipped]". Exit status 1 if any test failed.
# Logs: c-tests/build/logs/<name>.log
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/.." && pwd))
cd "$root" || exit 2

so=${SLABALLOC_SO:-target/release/libslaballoc.so}
case $so in /*) ;; *) so=$root/$so ;; esac
so_cpu_ids=${CPU_IDS_SO:-}
libdir=$(dirname "$so")
ar=$libdir/libslaballoc.a
CC=${CC:-cc}
QUICK=${QUICK:-0}
CFLAGS="-O2 -pthread -Wall"
build=$here/build
logs=$build/logs
mkdir -p "$build" "$logs"
# the knobs are set explicitly per run below
unset SLABALLOC_STATS SLABALLOC_NOTIFY SLABALLOC_BACKGROUND

if [ "$QUICK" = 1 ]; then
    N_PRODCONS=500000; N_FORK=50; N_CHURN=400; RECLAIM_MIB=150; SOAK_S=15; FUZZ_S=10
    N_OWN_RSEQ=50000; TRIM_S=1
else
    N_PRODCONS=4000000; N_FORK=200; N_CHURN=2000; RECLAIM_MIB=400; SOAK_S=60; FUZZ_S=20
    N_OWN_RSEQ=200000; TRIM_S=2
fi

npass=0; nfail=0; nskip=0
pass() { echo "PASS $1"; npass=$((npass + 1)); [ "${KEEP_LOGS:-0}" = 1 ] && [ -f "$logs/$1.log" ] && sed 's/^/    /' "$logs/$1.log"; return 0; }
fail() {
    echo "FAIL $1${2:+ ($2)}"; nfail=$((nfail + 1))
    if [ -f "$logs/$1.log" ]; then tail -40 "$logs/$1.log" | sed 's/^/    /'; fi
    return 0
}
skip() { echo "SKIP $1${2:+ ($2)}"; nskip=$((nskip + 1)); }

have_so=0
[ -f "$so" ] && have_so=1

# ------------------------------------------------------------------ build
built=()
for t in conformance invalid_free sigfree sigsmall lines order prodcons fork_load churn reclaim exited trim_load starter hugepages oom soak own_rseq cold_text; do
    if $CC $CFLAGS -o "$build/$t" "$here/$t.c" -ldl >"$logs/build.$t.log" 2>&1; then
        built+=("$t")
    else
        fail "build.$t"
    fi
done
is_built() { [ -x "$build/$1" ] && printf '%s\n' "${built[@]}" | grep -qx "$1"; }
# no_rseq CMD...: CMD with rseq(2) refused (ENOSYS), as on Linux < 4.18: no
# rseq area at all, glibc's or slaballoc's own, so the per-CPU cache is off
no_rseq_ok=0
if $CC $CFLAGS -o "$build/no_rseq" "$here/no_rseq.c" >"$logs/build.no_rseq.log" 2>&1; then
    no_rseq_ok=1
else
    fail build.no_rseq
fi

# linked variants of conformance
static_ok=0; linked_ok=0
if [ -f "$ar" ]; then
    # -rdynamic: export sa_malloc & co from the executable so dlsym finds them
    if $CC $CFLAGS -rdynamic -o "$build/conformance.static" "$here/conformance.c" "$ar" \
        -lpthread -ldl >"$logs/build.conformance.static.log" 2>&1; then
        static_ok=1
    elif { echo "--- retry with --whole-archive"; $CC $CFLAGS -rdynamic -o "$build/conformance.static" \
        "$here/conformance.c" -Wl,--whole-archive "$ar" -Wl,--no-whole-archive \
        -lpthread -ldl; } >>"$logs/build.conformance.static.log" 2>&1; then
        static_ok=1
    else
        fail build.conformance.static "linking libslaballoc.a failed"
    fi
fi
if [ "$have_so" = 1 ]; then
    if $CC $CFLAGS -o "$build/conformance.linked" "$here/conformance.c" -L"$libdir" -lslaballoc \
        -Wl,-rpath,"$libdir" -ldl >"$logs/build.conformance.linked.log" 2>&1; then
        linked_ok=1
    else
        fail build.conformance.linked "linking -lslaballoc failed"
    fi
fi

# run NAME MODE CMD... : MODE glibc|sa; log to logs/NAME.log; returns status
run() {
    local name=$1 mode=$2; shift 2
    local st
    # the group's stderr catches bash's "Aborted"/"Segmentation fault" notice
    if [ "$mode" = sa ] || [ "$mode" = cpu_ids ]; then
        local lib=$so; [ "$mode" = cpu_ids ] && lib=$so_cpu_ids
        { env LD_PRELOAD="$lib" timeout -k 10 300 "$@" >"$logs/$name.log" 2>&1; st=$?; } 2>>"$logs/$name.log"
    else
        { timeout -k 10 300 "$@" >"$logs/$name.log" 2>&1; st=$?; } 2>>"$logs/$name.log"
    fi
    [ $st = 124 ] && echo "(timed out after 300 s)" >>"$logs/$name.log"
    return $st
}
# simple NAME MODE CMD...: PASS iff exit 0
simple() {
    local name=$1
    if run "$@"; then pass "$name"; else fail "$name" "exit $?"; fi
}
need_so() { if [ "$have_so" = 1 ]; then return 0; fi; skip "$1" "no $so"; return 1; }
# need_slabprof: $slabprof (tools/slabprof, which reads heap profiles) is
# there or built now; a failed build is reported once
slabprof=${SLABPROF:-$root/target/tools/slabprof}
slabprof_state=""
need_slabprof() {
    if [ -z "$slabprof_state" ]; then
        slabprof_state=ok
        if [ ! -x "$slabprof" ] && ! (cd "$root" && cargo build --profile tools --quiet -p slabprof) \
            >"$logs/build.slabprof.log" 2>&1; then
            slabprof_state=failed
            fail build.slabprof
        fi
    fi
    [ "$slabprof_state" = ok ]
}

# ------------------------------------------------------------------ conformance
if is_built conformance; then
    simple conformance.glibc glibc "$build/conformance"
    need_so conformance.slaballoc && simple conformance.slaballoc sa "$build/conformance"
fi
if [ "$static_ok" = 1 ]; then
    simple conformance.static glibc "$build/conformance.static"
    grep -q "allocator = slaballoc" "$logs/conformance.static.log" ||
        echo "    note: static variant did not detect slaballoc (sa_malloc not visible)"
else
    [ -f "$ar" ] || skip conformance.static "no $ar"
fi
if [ "$linked_ok" = 1 ]; then
    simple conformance.linked glibc "$build/conformance.linked"
elif [ "$have_so" = 0 ]; then
    skip conformance.linked "no $so"
fi

# ------------------------------------------------------------------ invalid_free
if is_built invalid_free && need_so invalid_free.slaballoc; then
    # the cases' small blocks from the starter heap, then from the slabs
    simple invalid_free.slaballoc sa "$build/invalid_free"
    simple invalid_free.nostarter sa env SLABALLOC_STARTER=0 "$build/invalid_free"
    # rseq refused by the kernel: no per-CPU cache, every free reaches the
    # slab lists, so the forged-link case must abort too. (With glibc's rseq
    # merely off, slaballoc registers its own area and the cache is on.)
    [ "$no_rseq_ok" = 1 ] && need_so invalid_free.norseq && simple invalid_free.norseq sa \
        env GLIBC_TUNABLES=glibc.pthread.rseq=0 INVALID_FREE_STRICT=1 SLABALLOC_STARTER=0 \
        "$build/no_rseq" "$build/invalid_free"
fi

# ------------------------------------------------------------------ C++ operators
# operator new and delete (ffi/src/cxx.rs, x86-64): the standard's semantics
# under glibc and under slaballoc (out of memory: the new-handler, then
# std::bad_alloc or null), every form ours when preloaded or linked, and the
# heap profiler's stacks unwinding through our operator new to the caller.
CXX=${CXX:-c++}
if ! command -v "$CXX" >/dev/null 2>&1; then
    skip cxx "no C++ compiler ($CXX)"
elif [ "$(uname -m)" != x86_64 ]; then
    skip cxx "the C++ operators are exported on x86-64 only"
elif ! $CXX -O1 -g -Wall -o "$build/cxx" "$here/cxx.cc" -ldl >"$logs/build.cxx.log" 2>&1; then
    fail build.cxx
else
    simple cxx.glibc glibc "$build/cxx"
    if need_so cxx.slaballoc; then
        simple cxx.slaballoc sa "$build/cxx" sa
        if $CXX -O1 -g -Wall -o "$build/cxx.linked" "$here/cxx.cc" -L"$libdir" -lslaballoc \
            -Wl,-rpath,"$libdir" -ldl >"$logs/build.cxx.linked.log" 2>&1; then
            simple cxx.linked glibc "$build/cxx.linked" sa
        else
            fail build.cxx.linked
        fi
        if [ -f "$ar" ] && $CXX -O1 -g -Wall -rdynamic -o "$build/cxx.static" "$here/cxx.cc" "$ar" \
            -lpthread -ldl >"$logs/build.cxx.static.log" 2>&1; then
            simple cxx.static glibc "$build/cxx.static" static
        else
            fail build.cxx.static "linking libslaballoc.a failed"
        fi
        cdir=$build/cxx.prof
        rm -rf "$cdir"; mkdir -p "$cdir"
        if ! need_slabprof; then
            skip cxx.prof "no slabprof"
        elif run cxx.prof sa env SLABALLOC_PROF=1 SLABALLOC_PROF_SEED=42 \
            SLABALLOC_PROF_PREFIX="$cdir/p" "$build/cxx" prof &&
            "$slabprof" --top 0 "$cdir"/p.*.heap >>"$logs/cxx.prof.log" 2>&1 &&
            grep -A1 'allocation site$' "$logs/cxx.prof.log" | tail -1 | grep -q 'hold_cxx (cxx.cc:'; then
            pass cxx.prof
        else
            fail cxx.prof "the first site is not hold_cxx"
        fi
    fi
fi

# ------------------------------------------------------------------ sigfree
if is_built sigfree && need_so sigfree.slaballoc; then
    simple sigfree.slaballoc sa "$build/sigfree"
fi
# small chunks through the caches while signals abort their sections and
# the handlers malloc and free (slaballoc only: glibc deadlocks)
if is_built sigsmall && need_so sigsmall.slaballoc; then
    simple sigsmall.slaballoc sa "$build/sigsmall" 1.5
fi

# ------------------------------------------------------------------ lines
# small blocks allocated back to back on different cache lines (slaballoc
# asserts it; glibc's figures are printed for comparison)
# both T: T under glibc then under slaballoc, each run's "T:" lines shown
both() {
    is_built "$1" || return 0
    simple "$1.glibc" glibc "$build/$1"
    grep -h "^$1:" "$logs/$1.glibc.log" | sed 's/^/    /'
    if need_so "$1.slaballoc"; then
        simple "$1.slaballoc" sa "$build/$1"
        grep -h "^$1:" "$logs/$1.slaballoc.log" | sed 's/^/    /'
    fi
}
both lines

# ------------------------------------------------------------------ order
# a run of frees comes back in the order it went in (slaballoc asserts it;
# glibc's figures are printed for comparison)
both order

# ------------------------------------------------------------------ prodcons
kv() { # kv KEY LINE -> integer value of KEY=... in LINE (empty if absent)
    printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=\([0-9][0-9]*\).*/\1/p" | head -1
}
statsline() { grep '^slaballoc:.*remote_frees=' "$1" | tail -1; }
if is_built prodcons; then
    rss_g=""
    if run prodcons.glibc glibc "$build/prodcons" "$N_PRODCONS" && grep -q "blocks=$N_PRODCONS ok" "$logs/prodcons.glibc.log"; then
        pass prodcons.glibc
        rss_g=$(kv maxrss_kb "$(grep '^prodcons: blocks=' "$logs/prodcons.glibc.log")")
        echo "    glibc maxrss_kb=$rss_g"
    else
        fail prodcons.glibc
    fi
    if need_so prodcons.slaballoc; then
        if run prodcons.slaballoc sa env SLABALLOC_STATS=1 "$build/prodcons" "$N_PRODCONS" &&
            grep -q "blocks=$N_PRODCONS ok" "$logs/prodcons.slaballoc.log"; then
            pass prodcons.slaballoc
        else
            fail prodcons.slaballoc
        fi
        rss_s=$(kv maxrss_kb "$(grep '^prodcons: blocks=' "$logs/prodcons.slaballoc.log")")
        line=$(statsline "$logs/prodcons.slaballoc.log")
        rf=$(kv remote_frees "$line"); nt=$(kv notifications "$line"); fw=$(kv futex_wakes "$line")
        echo "    slaballoc maxrss_kb=${rss_s:-?}; ${line:-no stats line}"
        # RSS: at most 2x glibc + 8 MiB
        if [ -n "$rss_s" ] && [ -n "$rss_g" ]; then
            if [ "$rss_s" -le $((2 * rss_g + 8192)) ]; then pass prodcons.rss
            else fail prodcons.rss "maxrss_kb $rss_s > 2 * $rss_g + 8192"; fi
        else
            fail prodcons.rss "maxrss missing (glibc '${rss_g}', slaballoc '${rss_s:-}')"
        fi
        if [ -n "$rf" ] && [ -n "$nt" ]; then
            echo "    default mode: remote_frees=$rf notifications=$nt ($(awk -v n="$nt" -v r="$rf" 'BEGIN{printf "%.4f", r ? n / r : 0}') messages per remote free)"
            if [ "$rf" -ge $((N_PRODCONS * 9 / 10)) ]; then pass prodcons.remote_frees
            else fail prodcons.remote_frees "remote_frees $rf < 0.9 * $N_PRODCONS"; fi
            if [ $((nt * 100)) -le "$rf" ]; then pass prodcons.notify_ratio
            else fail prodcons.notify_ratio "notifications $nt > 1% of remote_frees $rf"; fi
            if [ -n "$fw" ] && [ $((fw * 100)) -lt "$rf" ]; then pass prodcons.futex_wakes
            else fail prodcons.futex_wakes "futex_wakes '${fw}' not < 1% of remote_frees $rf"; fi
            echo "    futex_wakes=${fw:-?}"
        else
            fail prodcons.stats "no parsable stats line on stderr with SLABALLOC_STATS=1"
        fi
        # notify-every mode
        if run prodcons.notify_every sa env SLABALLOC_STATS=1 SLABALLOC_NOTIFY=every "$build/prodcons" "$N_PRODCONS" &&
            grep -q "blocks=$N_PRODCONS ok" "$logs/prodcons.notify_every.log"; then
            line=$(statsline "$logs/prodcons.notify_every.log")
            rf2=$(kv remote_frees "$line"); nt2=$(kv notifications "$line")
            echo "    ${line:-no stats line}"
            if [ -n "$rf2" ] && [ -n "$nt2" ] && [ $((nt2 * 10)) -ge $((rf2 * 9)) ] && [ "$rf2" -gt 0 ]; then
                pass prodcons.notify_every
            else
                fail prodcons.notify_every "want notifications >= 0.9 * remote_frees (got '${nt2:-}' / '${rf2:-}')"
            fi
            if [ -n "${rf:-}" ] && [ -n "${nt:-}" ] && [ -n "$rf2" ] && [ -n "$nt2" ]; then
                echo "    messages per remote free: default $(awk -v n="$nt" -v r="$rf" 'BEGIN{printf "%.5f", r ? n / r : 0}')," \
                    "every $(awk -v n="$nt2" -v r="$rf2" 'BEGIN{printf "%.5f", r ? n / r : 0}')" \
                    "(reduction x$(awk -v a="$nt" -v b="$rf" -v c="$nt2" -v d="$rf2" 'BEGIN{ if (a > 0 && b > 0 && d > 0) printf "%.0f", (c / d) / (a / b); else printf "inf" }'))"
            fi
        else
            fail prodcons.notify_every
        fi
    fi
fi

# ------------------------------------------------------------------ strict overcommit
# conformance and prodcons under vm.overcommit_memory=2, where the kernel
# refuses any commit past CommitLimit: slaballoc reserves its arenas
# PROT_NONE and commits them as it carves them (src/runs/), so it must
# work there like glibc. The setting is system-wide: only as root, only
# with room to spare for the other processes, for as short a time as the
# two runs take, and put back by a trap whatever happens.
oc=/proc/sys/vm/overcommit_memory
if is_built conformance && is_built prodcons && need_so overcommit; then
    commit_limit=$(awk '/^CommitLimit:/ {print $2}' /proc/meminfo)
    committed=$(awk '/^Committed_AS:/ {print $2}' /proc/meminfo)
    old_oc=$(cat "$oc" 2>/dev/null || echo "")
    if [ "$(id -u)" != 0 ]; then
        skip overcommit "not root: cannot set vm.overcommit_memory"
    elif [ -z "$old_oc" ] || [ ! -w "$oc" ]; then
        skip overcommit "cannot read or write $oc"
    elif [ -z "$commit_limit" ] || [ -z "$committed" ] || [ $((committed * 2)) -gt "$commit_limit" ]; then
        skip overcommit "Committed_AS ${committed:-?} kB is over half of CommitLimit ${commit_limit:-?} kB: strict mode could starve other processes"
    elif ! { echo 2 >"$oc"; } 2>/dev/null; then
        skip overcommit "writing $oc failed (read-only /proc/sys?)"
    else
        trap 'echo "$old_oc" >"$oc"' EXIT INT TERM
        simple overcommit.conformance sa "$build/conformance"
        n_oc=500000
        if run overcommit.prodcons sa "$build/prodcons" "$n_oc" && grep -q "blocks=$n_oc ok" "$logs/overcommit.prodcons.log"; then
            pass overcommit.prodcons
        else
            fail overcommit.prodcons
        fi
        echo "$old_oc" >"$oc"
        trap - EXIT INT TERM
        [ "$(cat "$oc")" = "$old_oc" ] || fail overcommit.restore "vm.overcommit_memory is $(cat "$oc"), was $old_oc"
        echo "    vm.overcommit_memory=2 for both runs, then $old_oc again (CommitLimit ${commit_limit} kB)"
    fi
fi

# ------------------------------------------------------------------ fork_load, churn
for t in fork_load churn; do
    is_built $t || continue
    arg=$N_FORK; [ $t = churn ] && arg=$N_CHURN
    simple $t.glibc glibc "$build/$t" "$arg"
    need_so $t.slaballoc && simple $t.slaballoc sa "$build/$t" "$arg"
done

# ------------------------------------------------------------------ rseq off
# norseq: glibc's area reads cpu_id -2, slaballoc registers its own;
# rseq_refused: the kernel refuses rseq(2) (c-tests/no_rseq), the cache is off
for t in conformance churn; do
    is_built $t || continue
    arg=""; [ $t = churn ] && arg=$((N_CHURN / 4))
    need_so $t.norseq && simple $t.norseq sa env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$build/$t" $arg
    [ "$no_rseq_ok" = 1 ] && need_so $t.rseq_refused &&
        simple $t.rseq_refused sa "$build/no_rseq" "$build/$t" $arg
done

# ------------------------------------------------------------------ own rseq area (src/cpu.rs)
# With glibc's rseq off, slaballoc registers an rseq area of its own per
# thread: the cache must serve the main thread, later threads (reused
# stacks), threads at once and forked children; a thread whose rseq(2) is
# refused (seccomp) tries once and keeps the zone path. Also dlopen'ed
# (static TLS from glibc's surplus), with no LD_PRELOAD.
if is_built own_rseq && need_so own_rseq; then
    simple own_rseq.slaballoc sa "$build/own_rseq" "$N_OWN_RSEQ"
    simple own_rseq.norseq sa env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$build/own_rseq" "$N_OWN_RSEQ"
    grep -q "own area in use" "$logs/own_rseq.norseq.log" ||
        echo "    note: glibc registered rseq despite the tunable (own area not exercised)"
    grep -h 'refused\|4 threads' "$logs/own_rseq.norseq.log" | sed 's/^/    /'
    simple own_rseq.dlopen glibc "$build/own_rseq" dlopen "$so" "$N_OWN_RSEQ"
    simple own_rseq.dlopen.norseq glibc env GLIBC_TUNABLES=glibc.pthread.rseq=0 \
        "$build/own_rseq" dlopen "$so" "$N_OWN_RSEQ"
    if [ -n "$so_cpu_ids" ] && [ -f "$so_cpu_ids" ]; then
        simple own_rseq.norseq.cpu_ids cpu_ids env GLIBC_TUNABLES=glibc.pthread.rseq=0 \
            "$build/own_rseq" "$N_OWN_RSEQ"
    fi
fi

# ------------------------------------------------------------------ cold text
# A program that only allocates (for longer than the live view's delay, with
# a thread and a fork) maps none of the library's cold code: no page of the
# 64 KiB windows wholly inside `.text_cold` is in its page table
# (ffi/build.rs). Skipped for a library linked without the section.
# cold_text.start: a short process touches at most 5 pages of the library's
# small statics and page map: the large arrays lie past them.
if is_built cold_text && need_so cold_text; then
    for m in "" start; do
        name=cold_text${m:+.$m}
        run $name sa "$build/cold_text" $m
        case $? in
            0) pass $name ;;
            77) skip $name "$(grep '^skip' "$logs/$name.log" | head -1)" ;;
            *) fail $name "$(grep -m1 '^FAIL' "$logs/$name.log")" ;;
        esac
    done
fi

# ------------------------------------------------------------------ CPU numbers (Linux < 6.3)
# The same library with zones picked by cpu_id where this kernel would give
# mm_cid: the tests whose threads run on both CPUs, remote frees included.
if [ -n "$so_cpu_ids" ] && [ -f "$so_cpu_ids" ]; then
    for t in conformance invalid_free prodcons churn lines; do
        is_built $t || continue
        arg=""; [ $t = churn ] && arg=$((N_CHURN / 4)); [ $t = prodcons ] && arg=$((N_PRODCONS / 4))
        # invalid_free's remote cases forge slab batches: slab blocks only
        pre=""; [ $t = invalid_free ] && pre="env SLABALLOC_STARTER=0"
        simple $t.cpu_ids cpu_ids $pre "$build/$t" $arg
    done
else
    skip cpu_ids "no CPU_IDS_SO library (make build-cpu-ids)"
fi

# ------------------------------------------------------------------ exited
if is_built exited; then
    simple exited.glibc glibc "$build/exited"
    grep '^exited:' "$logs/exited.glibc.log" | sed 's/^/    /'
    if need_so exited.slaballoc; then
        simple exited.slaballoc sa "$build/exited"
        grep '^exited:' "$logs/exited.slaballoc.log" | sed 's/^/    /'
    fi
fi

# ------------------------------------------------------------------ trim_load
if is_built trim_load; then
    simple trim_load.glibc glibc "$build/trim_load" "$TRIM_S"
    if need_so trim_load.slaballoc; then
        simple trim_load.slaballoc sa "$build/trim_load" "$TRIM_S"
        grep '^trim_load:' "$logs/trim_load.slaballoc.log" | sed 's/^/    /'
    fi
fi

# ------------------------------------------------------------------ starter
if is_built starter; then
    simple starter.glibc glibc "$build/starter"
    if need_so starter.slaballoc; then
        simple starter.slaballoc sa "$build/starter"
        grep '^starter:' "$logs/starter.slaballoc.log" | sed 's/^/    /'
        simple starter.nostarter sa env SLABALLOC_STARTER=0 "$build/starter"
    fi
fi

# ------------------------------------------------------------------ hugepages
if is_built hugepages; then
    simple hugepages.glibc glibc "$build/hugepages"
    if need_so hugepages.slaballoc; then
        simple hugepages.slaballoc sa "$build/hugepages"
        grep '^hugepages:' "$logs/hugepages.slaballoc.log" | sed 's/^/    /'
        simple hugepages.off sa env SLABALLOC_HUGEPAGES=0 "$build/hugepages" off
    fi
fi

# ------------------------------------------------------------------ reclaim (slaballoc only)
if is_built reclaim && need_so reclaim.background; then
    simple reclaim.background sa env SLABALLOC_BACKGROUND=1 "$build/reclaim" "$RECLAIM_MIB"
    grep '^reclaim:' "$logs/reclaim.background.log" | sed 's/^/    /'
    simple reclaim.default sa "$build/reclaim" "$RECLAIM_MIB"
    grep '^reclaim:' "$logs/reclaim.default.log" | sed 's/^/    /'
    simple reclaim.nobackground sa env SLABALLOC_BACKGROUND=0 "$build/reclaim" "$RECLAIM_MIB"
    grep '^reclaim:' "$logs/reclaim.nobackground.log" | sed 's/^/    /'
    # One thread, frees in a shuffled order: the memory is pinned by the
    # zone's cache and stash until the lazily started reclaimer sweeps it.
    simple reclaim.shuffled sa "$build/reclaim" "$RECLAIM_MIB" shuffled
    grep '^reclaim:' "$logs/reclaim.shuffled.log" | sed 's/^/    /'
    simple reclaim.shuffled_nobackground sa env SLABALLOC_BACKGROUND=0 "$build/reclaim" "$RECLAIM_MIB" shuffled
    grep '^reclaim:' "$logs/reclaim.shuffled_nobackground.log" | sed 's/^/    /'
fi

# ------------------------------------------------------------------ oom (RELIABILITY.md)
# rlimit: RLIMIT_AS = address space + 256 MiB; inject.N: SLABALLOC_FAIL_MAP_AFTER=N
if is_built oom; then
    simple oom.rlimit.glibc glibc "$build/oom" rlimit
    if need_so oom.rlimit.slaballoc; then
        simple oom.rlimit.slaballoc sa "$build/oom" rlimit
        for n in 0 1 3 10; do
            simple oom.inject.$n sa env SLABALLOC_FAIL_MAP_AFTER=$n "$build/oom" inject
        done
    fi
    for l in "$logs"/oom.*.log; do grep -h '^oom: \(fill\|replay\|live\)' "$l" | sed "s|^|    $(basename "$l" .log): |"; done
fi

# ------------------------------------------------------------------ soak (RELIABILITY.md)
if is_built soak; then
    simple soak.glibc glibc "$build/soak" "$SOAK_S"
    grep -h '^soak: \(final\|after\|ops\)' "$logs/soak.glibc.log" | sed 's/^/    /'
    if need_so soak.slaballoc; then
        simple soak.slaballoc sa env SLABALLOC_STATS=1 "$build/soak" "$SOAK_S"
        grep -h '^soak: \(final\|after\|ops\)' "$logs/soak.slaballoc.log" | sed 's/^/    /'
    fi
fi

# ------------------------------------------------------------------ fuzz (fuzz/run.sh: libFuzzer, or the
# deterministic driver when libFuzzer is missing; needs libslaballoc.a)
if [ -f "$ar" ]; then
    if timeout -k 10 $((FUZZ_S + 240)) bash "$root/fuzz/run.sh" "$FUZZ_S" >"$logs/fuzz.log" 2>&1; then pass fuzz
    else fail fuzz "exit $?"; fi
    grep -h '^fuzz:' "$logs/fuzz.log" | sed 's/^/    /'
else
    skip fuzz "no $ar"
fi

# ------------------------------------------------------------------ heap profiler (SLABALLOC_PROF)
# prof.c's sites are known: hold_most holds 80 % of the live bytes at exit,
# hold_rest 20 %, the *_freed sites nothing. A fixed seed gives the same
# samples on every run (each thread's generator is seeded in thread order).
# tools/slabprof reads the dumps: top table, flame graph, pprof.
if [ "$have_so" = 1 ]; then
    pdir=$build/prof.out
    rm -rf "$pdir"; mkdir -p "$pdir"
    if ! need_slabprof; then
        skip prof "no slabprof"
    elif ! $CC -O1 -g -pthread -Wall -o "$build/prof" "$here/prof.c" -ldl >"$logs/build.prof.log" 2>&1; then
        fail build.prof
    elif ! run prof.off sa env SLABALLOC_PROF_PREFIX="$pdir/off" "$build/prof" ||
         ls "$pdir" | grep -q .; then
        fail prof.off "exit status, or a profile written with SLABALLOC_PROF unset"
    else
        pass prof.off
        if run prof.run sa env SLABALLOC_PROF=1 SLABALLOC_PROF_SEED=42 SLABALLOC_PROF_PEAK=1 \
            SLABALLOC_PROF_PREFIX="$pdir/p" "$build/prof" dump; then
            pass prof.run
        else
            fail prof.run "exit $?"
        fi
        heap=$(ls "$pdir" | grep -E '^p\.[0-9]+\.heap$' | head -1)
        if [ -n "$heap" ] && "$slabprof" --top 0 --svg "$pdir/prof.svg" --pprof "$pdir/prof.pb.gz" \
            "$pdir/$heap" >"$logs/prof.top.log" 2>&1; then
            # The first site, its share, and no freed site.
            first=$(grep -A1 'allocation site$' "$logs/prof.top.log" | tail -1)
            pct=$(echo "$first" | awk '{print int($3)}')
            if echo "$first" | grep -q 'hold_most (prof.c:' && [ "$pct" -ge 70 ] && [ "$pct" -le 90 ] &&
               ! grep -q '_freed' "$logs/prof.top.log"; then
                pass prof.top
            else
                fail prof.top "first site: $first"
            fi
            sed -n '1,8p' "$logs/prof.top.log" | sed 's/^/    /'
            grep -q 'hold_most' "$pdir/prof.svg" && pass prof.svg || fail prof.svg
            if command -v go >/dev/null 2>&1; then
                if timeout 120 go tool pprof -top "$pdir/prof.pb.gz" >"$logs/prof.pprof.log" 2>&1 &&
                   grep -A1 'flat%' "$logs/prof.pprof.log" | tail -1 | grep -q hold_most; then
                    pass prof.pprof
                else
                    fail prof.pprof
                fi
            else
                [ -s "$pdir/prof.pb.gz" ] && gzip -t "$pdir/prof.pb.gz" && pass prof.pprof.written ||
                    fail prof.pprof.written
            fi
        else
            fail prof.top "no exit dump, or slabprof failed"
        fi
        # sa_prof_dump() midway, and the peaks: each a profile slabprof reads.
        ok=1; n=0
        for f in "$pdir"/p.*.1.heap "$pdir"/p.*.peak.*.heap; do
            [ -f "$f" ] || { ok=0; continue; }
            n=$((n + 1))
            "$slabprof" "$f" >"$logs/prof.more.log" 2>&1 && grep -q hold_most "$logs/prof.more.log" || ok=0
        done
        [ "$ok" = 1 ] && [ "$n" -ge 2 ] && pass prof.dump_and_peaks || fail prof.dump_and_peaks "$n files"
        # The child forked while the other thread sampled wrote its own dump.
        child=no
        for f in "$pdir"/p.*.1.heap; do
            [ -f "$f" ] && "$slabprof" "$f" 2>&1 | grep -q 'child_site (prof.c:' && child=yes
        done
        [ "$child" = yes ] && pass prof.fork || fail prof.fork "no dump with child_site"
        # Sampling nearly everything (a sample per 2-4 KiB): sampled blocks
        # are page runs, which must keep every malloc semantics (conformance)
        # through threads, remote frees, signals and forks (soak).
        is_built conformance && simple prof.conformance sa env SLABALLOC_PROF=1 \
            SLABALLOC_PROF_SAMPLE=2048 SLABALLOC_PROF_PREFIX="$pdir/c" "$build/conformance"
        is_built soak && simple prof.soak sa env SLABALLOC_PROF=1 SLABALLOC_PROF_SAMPLE=4096 \
            SLABALLOC_PROF_PREFIX="$pdir/s" "$build/soak" $((SOAK_S / 6))
    fi
else
    skip prof "no $so"
fi

# ------------------------------------------------------------------ bench workloads
# The workloads of bench/compare.py must keep building, and each verifies the
# contents of every block it frees: run them all at a small scale.
if [ "$have_so" = 1 ]; then
    wl_ok=1
    for f in "$here"/../bench/workloads/*.c "$here"/../bench/workloads/*.cc; do
        [ -e "$f" ] || continue
        w=$(basename "${f%.c*}")
        comp=$CC
        case $f in *.cc)
            comp=$CXX
            command -v "$comp" >/dev/null 2>&1 || { skip "bench_workloads.$w" "no C++ compiler"; continue; } ;;
        esac
        if ! $comp -O2 -pthread -Wall -o "$build/wl_$w" "$f" -lm >"$logs/build.wl_$w.log" 2>&1; then
            fail "bench_workloads.build.$w"; wl_ok=0; continue
        fi
        run "wl_$w" sa "$build/wl_$w" 0.05 || { fail "bench_workloads.$w" "exit $?"; wl_ok=0; }
    done
    [ "$wl_ok" = 1 ] && pass bench_workloads
else
    skip bench_workloads "no $so"
fi

# ------------------------------------------------------------------ report and live view (live.sh)
if [ "$have_so" = 1 ]; then
    slabtop=${SLABTOP:-$root/target/tools/slabtop}
    timeout -k 10 300 bash "$here/live.sh" "$so" "$slabtop" >"$logs/live.log" 2>&1
    while IFS= read -r l; do
        case $l in
            PASS\ *) echo "$l"; npass=$((npass + 1)) ;;
            FAIL\ *) echo "$l"; nfail=$((nfail + 1)) ;;
            *\ passed,\ *\ failed) ;;
            *) echo "$l" ;;
        esac
    done <"$logs/live.log"
    grep -q ' passed, ' "$logs/live.log" || fail live "live.sh did not finish"
else
    skip live "no $so"
fi

# ------------------------------------------------------------------ real programs
if [ "$have_so" = 1 ]; then
    QUICK=$QUICK timeout -k 10 900 bash "$here/realprogs.sh" "$so" >"$logs/realprogs.log" 2>&1
    while IFS= read -r l; do
        case $l in
            PASS\ *) echo "$l"; npass=$((npass + 1)) ;;
            FAIL\ *) echo "$l"; nfail=$((nfail + 1)) ;;
            SKIP\ *) echo "$l"; nskip=$((nskip + 1)) ;;
            *) echo "$l" ;;
        esac
    done <"$logs/realprogs.log"
else
    skip realprogs "no $so"
fi

summary="$npass passed, $nfail failed"
[ "$nskip" -gt 0 ] && summary="$summary, $nskip skipped"
echo "$summary"
[ "$nfail" = 0 ]
