#!/usr/bin/env python3
"""Instructions on the hit paths of malloc and free, counted in the binary.

    python3 bench/fastpath_count.py [path/to/libslaballoc.so]

Callgrind cannot count the per-CPU cache path: valgrind does not implement
rseq, so under it glibc registers no rseq area and slaballoc falls back to
its locked path (what bench/callgrind.sh measures). This script counts the
path a cache hit takes instead, statically: from the exported `malloc` and
`free`, it follows the code as executed when every conditional branch falls
through (on both hit paths every conditional jump leads off the fast path:
to a slow path, an error, or the abort handler), follows unconditional
jumps, and stops at the first `ret` or tail `jmp` to another function. A
`call` on the way is reported (there should be none). It prints each
instruction of both paths and the counts; run after `make build`.
"""
import re
import subprocess
import sys

so = sys.argv[1] if len(sys.argv) > 1 else "target/release/libslaballoc.so"


def symbol_addr(name):
    out = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[2] == name:
            return int(f[0], 16)
    sys.exit(f"{name} not exported by {so}")


def disassemble(start, length=0x600):
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-M", "intel",
         f"--start-address={start:#x}", f"--stop-address={start + length:#x}", so],
        capture_output=True, text=True, check=True).stdout
    ins = {}
    order = []
    for line in out.splitlines():
        m = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
        if m:
            a = int(m.group(1), 16)
            ins[a] = m.group(2).strip()
            order.append(a)
    return ins, order


def hit_path(name):
    start = symbol_addr(name)
    ins, order = disassemble(start)
    path = []
    pc = start
    seen = set()
    while pc in ins and pc not in seen:
        seen.add(pc)
        text = ins[pc]
        path.append((pc, text))
        op = text.split()[0]
        if op == "ret":
            break
        if op == "jmp":
            m = re.match(r"jmp\s+([0-9a-f]+)", text)
            if not m or int(m.group(1), 16) not in ins:
                break  # tail call out of the function
            pc = int(m.group(1), 16)
            continue
        i = order.index(pc)
        if i + 1 >= len(order):
            break
        pc = order[i + 1]
    return path


total = 0
for name in ("malloc", "free"):
    path = hit_path(name)
    calls = [t for _, t in path if t.startswith("call")]
    print(f"## {name}: {len(path)} instructions on the cache-hit path"
          + (f" ({len(calls)} calls!)" if calls else ""))
    for a, t in path:
        print(f"    {a:x}: {t}")
    total += len(path)
print(f"malloc+free pair: {total} instructions (static count of the rseq cache-hit paths)")
