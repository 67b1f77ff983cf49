#!/usr/bin/env python3
"""A/B two builds of the library on the C workloads, alternating run by run.

    python3 bench/ab.py A.so B.so [workloads] [runs]

Runs bench/build/<workload> (build them first: `make compare QUICK=1` or
compare.py does) with LD_PRELOAD=A.so then B.so, `runs` times (default 7),
and prints the median of each workload's own seconds and the ratio B/A, plus
the geometric mean of the ratios. Used for the "Hardening costs" table of
bench/RESULTS.md.
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
for r in range(runs):
    for w in wl:
        for k, so in libs.items():
            out = subprocess.run([os.path.join(here, "build", w)],
                                 env=dict(os.environ, LD_PRELOAD=os.path.abspath(so)),
                                 capture_output=True, text=True)
            m = re.search(r"seconds=([0-9.]+)", out.stdout)
            if out.returncode != 0 or not m:
                sys.exit(f"{w} under {so} failed: {out.returncode} {out.stdout} {out.stderr}")
            res[(w, k)].append(float(m.group(1)))
    print(f"run {r + 1}/{runs} done", file=sys.stderr)
ratios = []
for w in wl:
    a = statistics.median(res[(w, "A")])
    b = statistics.median(res[(w, "B")])
    ratios.append(b / a)
    print(f"{w:16s} A {a:.3f}s  B {b:.3f}s  B/A {b / a:.3f}")
print("geomean B/A", round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 3))
