#!/usr/bin/env bash
# run-main.sh - the main job (`make run`): real programs under the library.
#
# Usage: tools/run-main.sh PATH/TO/libslaballoc.so
#
# sqlite3 (run-main.sql: 200,000 rows, an index, aggregates; many small
# objects) and a two-thread python3 producer/consumer pinned to two CPUs
# (run-main.py: objects made on one thread die on the other) run under
# LD_PRELOAD with SLABALLOC_STATS=1, which prints slaballoc's counters at
# exit on stderr. Each program's stdout must equal its stdout under glibc;
# exit 1 on a difference.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
so=${1:?usage: tools/run-main.sh PATH/TO/libslaballoc.so}
case $so in /*) ;; *) so=$PWD/$so ;; esac
[ -f "$so" ] || { echo "run-main.sh: no library at $so" >&2; exit 2; }

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

echo "== sqlite3 under slaballoc"
SLABALLOC_STATS=1 LD_PRELOAD=$so sqlite3 "$tmp/db.sqlite" < "$here/run-main.sql" > "$tmp/out.slab"
rm -f "$tmp/db.sqlite"; sqlite3 "$tmp/db.sqlite" < "$here/run-main.sql" > "$tmp/out.glibc"
cat "$tmp/out.slab"
if cmp -s "$tmp/out.slab" "$tmp/out.glibc"; then echo "sqlite3: output identical to glibc's"
else echo "sqlite3: OUTPUT DIFFERS"; exit 1; fi

echo "== python3 (PYTHONMALLOC=malloc): 2 threads, objects made on one and freed on the other"
py=$(python3 -c 'import sys; print(sys.executable)')
SLABALLOC_STATS=1 PYTHONMALLOC=malloc LD_PRELOAD=$so "$py" "$here/run-main.py" > "$tmp/py.slab"
PYTHONMALLOC=malloc "$py" "$here/run-main.py" > "$tmp/py.glibc"
cat "$tmp/py.slab"
if cmp -s "$tmp/py.slab" "$tmp/py.glibc"; then echo "python3: output identical to glibc's"
else echo "python3: OUTPUT DIFFERS"; exit 1; fi
