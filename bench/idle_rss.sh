#!/usr/bin/env bash
# idle_rss.sh - does memory go back by itself? bench/tools/idle_rss.c under
# glibc, jemalloc, tcmalloc and slaballoc, interleaved (A B C D, A B C D, ...),
# in each free order (rev, fwd, rand): resident size at the peak, right after
# the frees and after each second of idling (no malloc or free at all).
#
# Usage: bench/idle_rss.sh [MIB] [SECS] [ROUNDS]   (default 800 5 3)
# Env:   SLABALLOC_SO (default target/release/libslaballoc.so), CC
# Writes bench/results/idle_rss.md (medians per allocator and order) and
# prints it.
set -eu
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
mib=${1:-800}; secs=${2:-5}; rounds=${3:-3}
so=${SLABALLOC_SO:-$root/target/release/libslaballoc.so}
mkdir -p "$root/bench/build"
bin=$root/bench/build/idle_rss
${CC:-cc} -O2 -Wall -o "$bin" "$here/tools/idle_rss.c"
lib=/usr/lib/x86_64-linux-gnu
allocs=(glibc)
declare -A pre=([glibc]="")
[ -f $lib/libjemalloc.so.2 ] && { allocs+=(jemalloc); pre[jemalloc]=$lib/libjemalloc.so.2; }
[ -f $lib/libtcmalloc_minimal.so.4 ] && { allocs+=(tcmalloc); pre[tcmalloc]=$lib/libtcmalloc_minimal.so.4; }
[ -f "$so" ] && { allocs+=(slaballoc); pre[slaballoc]=$so; }
raw=$(mktemp); trap 'rm -f "$raw"' EXIT
for r in $(seq "$rounds"); do
    for order in rev fwd rand; do
        for a in "${allocs[@]}"; do
            line=$(env -u SLABALLOC_SO -u SLABALLOC_BACKGROUND -u SLABALLOC_DECAY LD_PRELOAD="${pre[$a]}" "$bin" "$mib" "$secs" "$order")
            echo "$a $line" >>"$raw"
            echo "round $r $a $line" >&2
        done
    done
done
out=$root/bench/results/idle_rss.md
python3 - "$raw" "$mib" "$secs" "$rounds" "${allocs[@]}" >"$out" <<'PY'
import re, statistics, sys, platform, os
raw, mib, secs, rounds, allocs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
rows = {}
for l in open(raw):
    a, rest = l.split(" ", 1)
    kv = dict(re.findall(r"(\w+)=(\S+)", rest))
    rows.setdefault((a, kv["order"]), []).append(kv)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"# Resident size after freeing {mib} MiB of small blocks and idling\n")
print(f"`bench/idle_rss.sh {mib} {secs} {rounds}`: bench/tools/idle_rss.c, medians of {rounds} "
      f"interleaved rounds. Machine: {cpu}, {os.cpu_count()} CPUs, kernel {platform.release()}, "
      f"{os.confstr('CS_GNU_LIBC_VERSION')}. Default settings of every allocator.\n")
keys = ["peak_kb", "freed_kb"] + [f"idle{s}_kb" for s in range(1, secs + 1)]
print("| order | allocator | " + " | ".join(k[:-3] for k in keys) + " |")
print("|---|---|" + "---:|" * len(keys))
for order in ("rev", "fwd", "rand"):
    for a in allocs:
        rs = rows.get((a, order), [])
        if not rs:
            continue
        cells = [f"{statistics.median(int(r[k]) for r in rs) / 1024:.1f} MiB" for k in keys]
        print(f"| {order} | {a} | " + " | ".join(cells) + " |")
PY
cat "$out"
