#!/usr/bin/env python3
"""A/B two builds of the library on the C workloads, alternating run by run.

    python3 bench/ab.py A.so B.so [workloads] [runs]

Runs bench/build/<workload> through bench/build/runner (build them first:
`make compare QUICK=1` or compare.py does) with LD_PRELOAD=A.so then B.so, `runs` times (default 7),
and prints the median of each workload's own seconds and of its peak RSS
(`ru_maxrss` from `wait4`), the ratios B/A (and the median of the ratios of
runs taken back to back), and the geometric means of the
ratios. Used for the "Hardening costs" and "Speed work" tables of
docs/experiments.md.
"""
import math
import os
import re
import statistics
import subprocess
import sys

if len(sys.argv) < 3:
    sys.exit(__doc__)
libs = {"A": sys.argv[1], "B": sys.argv[2]}
wl = (sys.argv[3] if len(sys.argv) > 3 else
      "shortlived,mixed,server,threads_noshare,prodcons,falseshare").split(",")
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 7
here = os.path.dirname(os.path.abspath(__file__))
res = {(w, k): [] for w in wl for k in libs}
rss = {(w, k): [] for w in wl for k in libs}
for r in range(runs):
    for w in wl:
        for k, so in libs.items():
            # Through the static launcher, so that ru_maxrss is the
            # workload's own (see bench/tools/runner.c).
            rfile = os.path.join(here, "build", f".ab-{os.getpid()}.rusage")
            proc = subprocess.run([os.path.join(here, "build", "runner"), rfile, "600",
                                   os.path.join(here, "build", w)],
                                  env=dict(os.environ, LD_PRELOAD=os.path.abspath(so)),
                                  capture_output=True, text=True)
            with open(rfile) as f:
                usage = dict(kv.split("=") for kv in f.read().split())
            os.unlink(rfile)
            m = re.search(r"seconds=([0-9.]+)", proc.stdout)
            if proc.returncode != 0 or usage["code"] != "0" or not m:
                sys.exit(f"{w} under {so} failed: {usage} {proc.stdout} {proc.stderr}")
            res[(w, k)].append(float(m.group(1)))
            rss[(w, k)].append(int(usage["maxrss_kb"]))
    print(f"run {r + 1}/{runs} done", file=sys.stderr)
ratios, paired_ratios, rss_ratios = [], [], []
for w in wl:
    a = statistics.median(res[(w, "A")])
    b = statistics.median(res[(w, "B")])
    ra = statistics.median(rss[(w, "A")])
    rb = statistics.median(rss[(w, "B")])
    # Each B run follows its A run at once: the median of those paired
    # ratios is less moved by the machine's slow and fast periods than the
    # ratio of the medians.
    paired = statistics.median(y / x for x, y in zip(res[(w, "A")], res[(w, "B")]))
    ratios.append(b / a)
    paired_ratios.append(paired)
    rss_ratios.append(rb / ra)
    print(f"{w:16s} A {a:.3f}s  B {b:.3f}s  B/A {b / a:.3f} (paired {paired:.3f})   "
          f"RSS A {ra:.0f} KiB  B {rb:.0f} KiB  B/A {rb / ra:.3f}")


def geomean(xs):
    return round(math.exp(sum(map(math.log, xs)) / len(xs)), 3)


print("geomean B/A time", geomean(ratios), " paired", geomean(paired_ratios),
      " RSS", geomean(rss_ratios))
