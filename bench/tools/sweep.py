#!/usr/bin/env python3
"""Thread sweeps and side-by-side runs from prebuilt binaries (no build step).

compare.py builds the workloads and the peers itself; this driver only runs
what is already built, for a machine that cannot build (a borrowed many-core
box): every workload under every allocator, interleaved (A B C, A B C, ...),
at each thread count, and prints medians and ratios to the best allocator.

    sweep.py --bin DIR --lib NAME=PATH [--lib ...] [--threads 1,2,4]
             [--rounds 3] [--scale 1.0] [--csv OUT] WORKLOAD [WORKLOAD ...]

`--lib glibc=` (empty path) runs without preload. A workload is a binary in
DIR that follows bench/workloads/common.h (argv[1] scale, argv[2] threads,
one `workload= threads= ops= seconds=` line); its time is that line's
seconds, its peak RSS the child's ru_maxrss (wait4).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"workload=(\S+) threads=(\d+) ops=(\d+) seconds=([0-9.eE+-]+)")


def run_rss(binary, lib, scale, threads, timeout):
    """Like run, with the child's own peak RSS from wait4."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if lib:
        env["LD_PRELOAD"] = lib
    args = [binary, str(scale)] + ([str(threads)] if threads else [])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(r)
        try:
            os.execve(binary, args, env)
        finally:
            os._exit(127)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status, ru = os.wait4(pid, 0)
    out = b"".join(chunks).decode(errors="replace")
    m = LINE.search(out)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 or not m:
        return None, None, f"status={status:#x}"
    return float(m.group(4)), ru.ru_maxrss / 1024.0, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--lib", action="append", default=[], help="NAME=PATH (empty PATH: no preload)")
    ap.add_argument("--threads", default="", help="comma list; empty: the workload's default")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--csv")
    ap.add_argument("workloads", nargs="+")
    a = ap.parse_args()
    libs = [tuple(x.split("=", 1)) for x in a.lib]
    threads = [int(t) for t in a.threads.split(",") if t] or [0]
    rows = []
    for wl in a.workloads:
        binary = os.path.join(a.bin, wl)
        for t in threads:
            times = {n: [] for n, _ in libs}
            rss = {n: [] for n, _ in libs}
            fails = {n: "" for n, _ in libs}
            for _ in range(a.rounds):
                for name, path in libs:
                    s, m, why = run_rss(binary, path, a.scale, t, a.timeout)
                    if s is None:
                        fails[name] = why
                    else:
                        times[name].append(s)
                        rss[name].append(m)
            med = {n: statistics.median(v) if v else None for n, v in times.items()}
            best = min((v for v in med.values() if v), default=None)
            cells = []
            for name, _ in libs:
                v = med[name]
                cells.append(f"{v:.3f} ({v / best:.2f}x)" if v and best else f"FAIL {fails[name]}")
                rows.append((wl, t, name, v, statistics.median(rss[name]) if rss[name] else None))
            print(f"{wl:16s} t={t:<3d} " + "  ".join(f"{n}={c}" for (n, _), c in zip(libs, cells)),
                  flush=True)
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("workload,threads,allocator,seconds,peak_rss_mib\n")
            for wl, t, n, v, m in rows:
                f.write(f"{wl},{t},{n},{'' if v is None else v},{'' if m is None else f'{m:.1f}'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
