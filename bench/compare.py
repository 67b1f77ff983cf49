#!/usr/bin/env python3
"""Compare slaballoc against glibc, jemalloc, tcmalloc, mimalloc 2 and 3 and snmalloc.

Allocators (table/chart names):
    glibc      the system malloc, no preload (the baseline of every ratio)
    jemalloc   Debian libjemalloc2            } installed with apt-get when
    tcmalloc   Debian libtcmalloc-minimal4    } missing (an allocator that
    mimalloc2  Debian libmimalloc2.0 (2.0.9)  } cannot be had is skipped)
    mimalloc3  mimalloc 3.x  } built by bench/peers/build.sh from the C/C++
    snmalloc   snmalloc 0.7  } sources of sha256-pinned crates (libmimalloc-sys,
                             snmalloc-sys; see bench/peers/README.md) into
                             bench/build/peers/; skipped with a warning if
                             they cannot be fetched or built
    slaballoc  target/release/libslaballoc.so (a copy of it)
Every preload is checked with bench/tools/probe.c (malloc and free must come
from the preloaded library, else that allocator's runs are FAIL).

Workloads: the C programs bench/workloads/NAME.c (built into bench/build/;
conventions in common.h: argv[1] = scale, argv[2] = threads, contents verified
before every free, one `workload= threads= ops= seconds=` line): ten of our
own (mixed .. churn, buffers among them) and eight modelled on the classic mimalloc-bench programs
(malloc_large, cfrac_like, glibc_simple, xmalloc_like, xmalloc_deep, sh6_like,
sh8_like, larson_like);
plus two whole-process "command" workloads, python_malloc (CPython with
PYTHONMALLOC=malloc on bench/workloads/python_malloc.py) and shell_procs
(bench/workloads/shell_procs.sh: thousands of short processes, all under the
preload), timed by the runner's wall time and checked by their stdout being
equal to glibc's.

Every workload runs under every allocator (glibc without preload, the others
via LD_PRELOAD), alternating allocators run by run (A B C D E, A B C D E, ...).

Per run it records the workload's own time (its `seconds=` line, CLOCK_MONOTONIC
around the work; wall time for the command workloads), wall time, and peak RSS /
page faults from the rusage that wait4() returns for the workload (taken by the
small static launcher bench/tools/runner.c, because ru_maxrss of a child spawned
straight from Python includes the interpreter's own RSS). Writes
    bench/results/latest.md    medians + ratios to glibc + geometric mean, and the
                               speed issue's yardsticks ("Against the targets":
                               slaballoc against the best peer, now usually
                               mimalloc3 or snmalloc)
    bench/results/latest.csv   every raw run
    bench/results/latest.svg   chart of the time ratios (hand-written SVG)

Environment / options (options win):
    QUICK=1            1 run, scale 0.2 (about 30 s once installed and built)
    RUNS=N             runs per (workload, allocator)            [5]
    SCALE=F            work multiplier passed to every workload  [1.0]
    WORKLOADS=a,b      only these workloads
    ALLOCATORS=a,b     only these allocators (glibc is always kept as baseline;
                       `mimalloc` means mimalloc2)
    SLABALLOC_SO=path  library to test   [target/release/libslaballoc.so]
    SLABALLOC_BEFORE=path  an earlier build, run beside it as `slaballoc-before`
                       (interleaved with the rest, so before/after is paired in
                       one run; never counted as a peer)
    NO_INSTALL=1       never call apt-get (also not for cmake in bench/peers/build.sh)
    CC=cc              C compiler
    CXX=c++            C++ compiler (the C++ workloads: left out without one)
A workload that exits non-zero (content mismatch, crash, timeout, output
different from glibc's) under an allocator is shown as FAIL in the tables.
"""
import argparse
import csv
import datetime
import hashlib
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WL_DIR = os.path.join(HERE, "workloads")
TOOLS_DIR = os.path.join(HERE, "tools")
BUILD = os.path.join(HERE, "build")
RESULTS = os.path.join(HERE, "results")

PEERS_DIR = os.path.join(HERE, "peers")
PEERS_BUILD = os.path.join(BUILD, "peers")

# Order matters: it is the table/chart order. mixed .. churn are ours (but
# malloc_large); it and the rest are modelled on the classic mimalloc-bench
# programs (written from scratch). All but the COMMANDS are programs in bench/workloads/: NAME.c,
# or NAME.cc for the C++ ones (built with $CXX, left out without one).
WORKLOADS = ["mixed", "shortlived", "midsize", "buffers", "large_realloc", "malloc_large", "threads_noshare",
             "prodcons", "server", "falseshare", "churn",
             "cfrac_like", "glibc_simple", "xmalloc_like", "xmalloc_deep", "sh6_like", "sh8_like",
             "larson_like", "cxx_objects",
             "python_malloc", "shell_procs"]


def python_for_workload():
    """Debian's CPython if there is one (a fixed, dynamically linked binary),
    else the interpreter running this script."""
    for c in ("/usr/bin/python3",):
        if os.access(c, os.X_OK):
            return c
    return sys.executable


# "Command" workloads: a whole process, timed from outside (the runner's
# wall time, process start and exit included); its stdout must equal what it
# printed under glibc. name: (argv builder taking the scale, extra env)
COMMANDS = {
    "python_malloc": (lambda scale: [python_for_workload(), os.path.join(WL_DIR, "python_malloc.py"),
                                     repr(scale)],
                      {"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}),
    "shell_procs": (lambda scale: ["/bin/sh", os.path.join(WL_DIR, "shell_procs.sh"), repr(scale)], {}),
}

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = {
    # name: (debian package, candidate paths, glob used on `dpkg -L` output)
    "jemalloc": ("libjemalloc2", [f"{LIBDIR}/libjemalloc.so.2"], r"/libjemalloc\.so\.\d+$"),
    "tcmalloc": ("libtcmalloc-minimal4", [f"{LIBDIR}/libtcmalloc_minimal.so.4"],
                 r"/libtcmalloc_minimal\.so\.\d+$"),
    "mimalloc2": ("libmimalloc2.0", [f"{LIBDIR}/libmimalloc.so.2", f"{LIBDIR}/libmimalloc.so.2.0"],
                  r"/libmimalloc\.so\.[\d.]+$"),
}
# Built by bench/peers/build.sh from the sources of pinned crates (peers.lock).
BUILT_PEERS = {
    "mimalloc3": os.path.join(PEERS_BUILD, "mimalloc3", "libmimalloc.so"),
    "snmalloc": os.path.join(PEERS_BUILD, "snmalloc", "libsnmallocshim.so"),
}
ALL_ALLOCS = ["glibc", "jemalloc", "tcmalloc", "mimalloc2", "mimalloc3", "snmalloc", "slaballoc"]
ALIASES = {"mimalloc": "mimalloc2"}   # the Debian one was called mimalloc before
COLORS = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#2ca02c",
          "mimalloc2": "#ff7f0e", "mimalloc": "#ff7f0e", "mimalloc3": "#9467bd",
          "snmalloc": "#17becf", "slaballoc": "#d62728", "slaballoc-before": "#e377c2"}


def log(msg="", end="\n"):
    sys.stderr.write(msg + end)
    sys.stderr.flush()


def warn(msg):
    log(f"compare.py: WARNING: {msg}")


# ---------------------------------------------------------------- building

def workload_source(w):
    """bench/workloads/W.cc for a C++ workload, else W.c."""
    cxx_src = os.path.join(WL_DIR, w + ".cc")
    return cxx_src if os.path.exists(cxx_src) else os.path.join(WL_DIR, w + ".c")


def build(cc, cxx):
    """Builds the workloads and tools; returns the workloads left out (C++
    ones without a C++ compiler)."""
    os.makedirs(BUILD, exist_ok=True)
    headers = [os.path.join(WL_DIR, h) for h in os.listdir(WL_DIR) if h.endswith(".h")]
    srcs = [(workload_source(w), w) for w in WORKLOADS if w not in COMMANDS]
    left_out = set()
    srcs += [(os.path.join(TOOLS_DIR, "probe.c"), "probe"),
             (os.path.join(TOOLS_DIR, "hotloop.c"), "hotloop"),
             (os.path.join(TOOLS_DIR, "runner.c"), "runner")]
    for src, name in srcs:
        compiler = cxx if src.endswith(".cc") else cc
        if not compiler:
            warn(f"no C++ compiler (CXX): workload {name} left out")
            left_out.add(name)
            continue
        out = os.path.join(BUILD, name)
        newest = max([os.path.getmtime(src)] + [os.path.getmtime(h) for h in headers])
        if os.path.exists(out) and os.path.getmtime(out) >= newest:
            continue
        cmd = [compiler, "-O2", "-pthread", "-Wall", "-o", out, src, "-lm"]
        if name == "runner":   # static: keeps its own RSS out of ru_maxrss
            cmd.insert(1, "-static")
        log("  " + " ".join(cmd))
        r = subprocess.run(cmd)
        if r.returncode != 0 and name == "runner":
            warn("static link of runner failed; linking it dynamically (RSS floor ~1 MiB higher)")
            cmd.remove("-static")
            r = subprocess.run(cmd)
        if r.returncode != 0:
            sys.exit(f"compare.py: failed to build {name}")
    return left_out


# ---------------------------------------------------------------- allocators

def find_peer(name):
    pkg, cands, rx = PEERS[name]
    for c in cands:
        if os.path.exists(c):
            return c
    try:
        out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if re.search(rx, line) and os.path.exists(line):
                return line
    except FileNotFoundError:
        pass
    return None


def apt_install(pkg):
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"  apt-get install {pkg} ...")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", pkg]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode == 0


def build_peers(wanted, no_install):
    """Run bench/peers/build.sh for the wanted built peers (it skips what is
    already built and only warns about what it cannot build)."""
    names = [n for n in BUILT_PEERS if n in wanted]
    if not names:
        return
    env = dict(os.environ)
    if no_install:
        env["NO_INSTALL"] = "1"
    try:
        subprocess.run(["bash", os.path.join(PEERS_DIR, "build.sh")] + names, env=env, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        warn(f"bench/peers/build.sh: {e}")


def peer_lock():
    """{name: (crate, version, sha256)} from bench/peers/peers.lock."""
    out = {}
    try:
        for line in open(os.path.join(PEERS_DIR, "peers.lock")):
            f = line.split()
            if len(f) >= 4 and not f[0].startswith("#"):
                out[f[0]] = (f[1], f[2], f[3])
    except OSError:
        pass
    return out


def pkg_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "?"


def probe(lib):
    """Which object provides malloc when `lib` is preloaded (None = glibc)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if lib:
        env["LD_PRELOAD"] = lib
    r = subprocess.run([os.path.join(BUILD, "probe")], env=env, capture_output=True,
                       text=True, timeout=30)
    m = re.search(r"malloc=(\S+) free=(\S+)", r.stdout)
    return r.returncode, (m.group(1), m.group(2)) if m else None, r.stderr.strip()


def setup_allocators(wanted, no_install, slaballoc_so):
    """Returns list of (name, lib path or None, description, preload problem or None)."""
    allocs = []
    glibc_ver = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else "glibc"
    allocs.append(("glibc", None, f"{glibc_ver} (no preload)", None))
    for name in ("jemalloc", "tcmalloc", "mimalloc2"):
        if name not in wanted:
            continue
        path = find_peer(name)
        if not path and not no_install:
            if apt_install(PEERS[name][0]):
                path = find_peer(name)
        if not path:
            warn(f"{name} not available (package {PEERS[name][0]}); skipped")
            continue
        allocs.append((name, path, f"{path} (Debian {PEERS[name][0]} {pkg_version(PEERS[name][0])})", None))
    build_peers(wanted, no_install)
    lock = peer_lock()
    for name, path in BUILT_PEERS.items():
        if name not in wanted:
            continue
        if not os.path.exists(path):
            warn(f"{name} not built (see bench/peers/build.sh output above); skipped")
            continue
        crate, ver, sha = lock.get(name, ("?", "?", "?"))
        stamp = ""
        try:
            stamp = open(os.path.join(os.path.dirname(path), "STAMP")).read().split()
        except OSError:
            pass
        note = "" if stamp == [crate, ver, sha] else "; WARNING: built from other sources than peers.lock says"
        allocs.append((name, path, f"{os.path.relpath(path, ROOT)} (built by bench/peers/build.sh from "
                       f"crate {crate} {ver}, .crate sha256 {sha[:12]}{note})", None))
    if "slaballoc" in wanted:
        if os.path.exists(slaballoc_so):
            # Preload a private copy: the library may be rebuilt while we run.
            st = os.stat(slaballoc_so)
            when = datetime.datetime.fromtimestamp(st.st_mtime).strftime("%Y-%m-%d %H:%M:%S")
            copy = os.path.join(BUILD, "libslaballoc.under-test.so")
            shutil.copyfile(slaballoc_so, copy)
            with open(copy, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:12]
            allocs.append(("slaballoc", copy,
                           f"{os.path.relpath(slaballoc_so, ROOT)} (built {when}, sha256 {digest}; "
                           f"a copy in bench/build/ is preloaded)", None))
        else:
            warn(f"{slaballoc_so} does not exist (run `make build`); slaballoc skipped")
    before = os.environ.get("SLABALLOC_BEFORE", "")
    if before:
        if os.path.exists(before):
            copy = os.path.join(BUILD, "libslaballoc.before.so")
            shutil.copyfile(before, copy)
            with open(copy, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:12]
            allocs.append(("slaballoc-before", copy,
                           f"{before} (SLABALLOC_BEFORE, sha256 {digest}; a copy in bench/build/ is preloaded)",
                           None))
        else:
            warn(f"SLABALLOC_BEFORE={before} does not exist; skipped")
    checked = []
    for name, lib, desc, _ in allocs:
        problem = None
        try:
            rc, who, err = probe(lib)
        except subprocess.TimeoutExpired:
            rc, who, err = -1, None, "probe timed out"
        if rc != 0 or who is None:
            problem = f"probe failed rc={rc} {err[:200]}"
        elif lib and (os.path.realpath(who[0]) != os.path.realpath(lib)
                      or os.path.realpath(who[1]) != os.path.realpath(lib)):
            problem = f"preload not effective: malloc from {who[0]}, free from {who[1]} {err[:200]}"
        if problem:
            warn(f"{name}: {problem}; its runs will be reported as FAIL")
        checked.append((name, lib, desc, problem))
    return checked


# ---------------------------------------------------------------- running

def cpu_busy_s():
    """System-wide busy CPU seconds so far (all CPUs), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


RESULT_RE = re.compile(r"workload=(\S+) threads=(\d+) ops=(\d+) seconds=([0-9.eE+-]+)")


def run_one(workload, lib, scale, timeout, extra_env=None, wrapper=None):
    """Run one workload under `lib` (None = glibc) via bench/build/runner, which
    reports the workload's rusage from wait4(). Returns (record, stdout, stderr)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if lib:
        env["LD_PRELOAD"] = lib
    if extra_env:
        env.update(extra_env)
    if workload in COMMANDS:
        build_argv, cenv = COMMANDS[workload]
        prog = build_argv(scale)
        env.update(cenv)
    else:
        prog = [os.path.join(BUILD, workload), repr(scale)]
    with tempfile.TemporaryDirectory() as td:
        outp, errp, rup = (os.path.join(td, n) for n in ("out", "err", "rusage"))
        fl = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        argv = [os.path.join(BUILD, "runner"), rup, str(timeout)] + (wrapper or []) + prog
        busy0 = cpu_busy_s()
        t0 = time.monotonic()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, outp, fl, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, errp, fl, 0o644)])
        while True:   # runner enforces the timeout; this is only a backstop
            wpid, status, _ = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                break
            if time.monotonic() - t0 > timeout + 30:
                os.kill(pid, signal.SIGKILL)
                os.wait4(pid, 0)
                break
            time.sleep(0.002)
        busy1 = cpu_busy_s()
        out = open(outp, errors="replace").read()
        err = open(errp, errors="replace").read()
        ru = {}
        if os.path.exists(rup):
            for tok in open(rup).read().split():
                k, _, v = tok.partition("=")
                ru[k] = float(v) if "." in v else int(v)
    rec = {k: ru.get(k, "") for k in ("wall_s", "maxrss_kb", "utime_s", "stime_s", "minflt",
                                          "majflt", "nvcsw", "nivcsw")}
    rec.update(threads="", ops="", seconds="", status="ok", detail="", other_cpu_s="")
    if busy0 is not None and busy1 is not None and ru:
        # CPU time other processes used while this run was going on: a noise
        # indicator (jiffy resolution, so +-0.02 s or so)
        rec["other_cpu_s"] = round(max(0.0, busy1 - busy0 - ru.get("utime_s", 0) - ru.get("stime_s", 0)), 3)
    m = RESULT_RE.search(out)
    if m:
        rec.update(threads=int(m.group(2)), ops=int(m.group(3)), seconds=float(m.group(4)))
    elif workload in COMMANDS and ru and out.strip():
        # whole-process workload: its time is the runner's wall time; its
        # output is checked against glibc's by the caller
        m = re.search(r"\bops=(\d+)|\bn=(\d+)", out)
        rec.update(threads=1, ops=int(m.group(1) or m.group(2)) if m else "", seconds=ru.get("wall_s", ""))
        m = True
    if not ru:
        rec["status"], rec["detail"] = "FAIL", "runner failed"
    elif ru.get("timeout"):
        rec["status"], rec["detail"] = "FAIL", f"timeout after {timeout}s"
    elif ru.get("signal"):
        rec["status"], rec["detail"] = "FAIL", f"killed by signal {ru['signal']}"
    elif ru.get("code"):
        rec["status"], rec["detail"] = "FAIL", f"exit {ru['code']}"
    elif not m:
        rec["status"], rec["detail"] = "FAIL", "no result line"
    if "ERROR: ld.so" in err:
        rec["status"] = "FAIL"
        rec["detail"] = (rec["detail"] + " preload failed").strip()
    if rec["status"] != "ok":
        lines = [l for l in err.strip().splitlines() if l.strip()]
        if lines:
            rec["detail"] += ": " + lines[-1][:160]
    return rec, out, err


# ---------------------------------------------------------------- reporting

def fmt_time(s):
    return f"{s:.3f} s" if s >= 0.1 else f"{s * 1000:.1f} ms"


def fmt_kb(kb):
    return f"{kb / 1024:.1f} MiB" if kb >= 1024 else f"{kb} KiB"


def fmt_ratio(r):
    return f"{r:.2f}x"


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def summarize(rows, workloads, allocs):
    """{(wl, alloc): dict(ok, n, nfail, time, rss, minflt, detail)}"""
    summ = {}
    for wl in workloads:
        for a in allocs:
            rs = [r for r in rows if r["workload"] == wl and r["allocator"] == a]
            if not rs:
                continue
            bad = [r for r in rs if r["status"] != "ok"]
            good = [r for r in rs if r["status"] == "ok"]
            d = {"n": len(rs), "nfail": len(bad), "ok": not bad,
                 "detail": bad[0]["detail"] if bad else ""}
            if good:
                d["time"] = statistics.median(r["seconds"] for r in good)
                d["tmin"] = min(r["seconds"] for r in good)
                d["tmax"] = max(r["seconds"] for r in good)
                d["rss"] = statistics.median(r["maxrss_kb"] for r in good)
                d["minflt"] = statistics.median(r["minflt"] for r in good)
            summ[(wl, a)] = d
    return summ


def table(summ, workloads, allocs, key, fmt):
    hdr = "| workload | " + " | ".join(allocs) + " |"
    sep = "|---|" + "---:|" * len(allocs)
    lines = [hdr, sep]
    ratios = {a: [] for a in allocs}
    for wl in workloads:
        cells = []
        base = summ.get((wl, "glibc"))
        for a in allocs:
            d = summ.get((wl, a))
            if d is None:
                cells.append("n/a")
            elif not d["ok"]:
                cells.append(f"**FAIL** ({d['nfail']}/{d['n']})")
            else:
                v = d[key]
                if base and base["ok"] and base[key] > 0:
                    r = v / base[key]
                    ratios[a].append(r)
                    cells.append(f"{fmt(v)} ({fmt_ratio(r)})")
                else:
                    cells.append(fmt(v))
        lines.append(f"| {wl} | " + " | ".join(cells) + " |")
    gm = []
    for a in allocs:
        rs = ratios[a]
        if not rs:
            gm.append("n/a")
        else:
            s = fmt_ratio(geomean(rs))
            if len(rs) < len(workloads):
                s += f" ({len(rs)}/{len(workloads)} workloads)"
            gm.append(s)
    lines.append("| **geomean ratio to glibc** | " + " | ".join(gm) + " |")
    return "\n".join(lines), ratios


def paired(rows, wl, a, b):
    """Median over the rounds of a's time divided by b's in the same round.
    The allocators of one round ran back to back, so the machine's slow and
    fast periods, which move every allocator's time by up to 3x on a shared
    host, cancel out of it better than out of a ratio of medians. (Against
    the best of several peers per round it would be biased: the minimum of
    noisy times.)"""
    by_round = {}
    for r in rows:
        if r["workload"] == wl and r["status"] == "ok" and isinstance(r.get("seconds"), float):
            by_round.setdefault(r["run"], {})[r["allocator"]] = r["seconds"]
    rs = [v[a] / v[b] for v in by_round.values() if a in v and v.get(b, 0) > 0]
    return statistics.median(rs) if rs else None


def targets(rows, summ, workloads, allocs, me="slaballoc"):
    """The speed issue's yardsticks, for `me` against the peers that ran:
    time against the best peer overall and per workload (medians, and
    paired per round), the slowest workload, peak RSS against the best peer
    and against glibc. Returns markdown lines (empty if `me` or no peer ran)."""
    peers = [a for a in allocs if not a.startswith("slaballoc")]
    if me not in allocs or not peers:
        return []

    def ok(wl, a):
        d = summ.get((wl, a))
        return d is not None and d["ok"] and "time" in d

    wls = [wl for wl in workloads if ok(wl, me) and all(ok(wl, a) for a in peers)]
    if not wls:
        return []
    gm = {a: geomean([summ[(wl, a)]["time"] for wl in wls]) for a in peers}
    best_all = min(peers, key=lambda a: gm[a])
    per_wl, per_wl_paired, rss_best, rss_glibc = {}, {}, [], {}
    for wl in wls:
        best = min(peers, key=lambda a: summ[(wl, a)]["time"])
        per_wl[wl] = (summ[(wl, me)]["time"] / summ[(wl, best)]["time"], best)
        per_wl_paired[wl] = paired(rows, wl, me, best)
        rss_best.append(summ[(wl, me)]["rss"] / min(summ[(wl, a)]["rss"] for a in peers))
        if "glibc" in peers:
            rss_glibc[wl] = summ[(wl, me)]["rss"] / summ[(wl, "glibc")]["rss"]
    vs_all = geomean([summ[(wl, me)]["time"] / summ[(wl, best_all)]["time"] for wl in wls])
    vs_all_p = [paired(rows, wl, me, best_all) for wl in wls]
    vs_wl = geomean([v for v, _ in per_wl.values()])
    vs_wl_p = [v for v in per_wl_paired.values() if v]
    worst = max(per_wl, key=lambda w: per_wl[w][0])
    worst_p = max((w for w in wls if per_wl_paired[w]), key=per_wl_paired.get, default=None)
    out = [f"Over {len(wls)} workloads. \"Paired\": the median over the rounds of "
           f"{me}'s time divided by that peer's in the same round (the best peer of a "
           "workload is the one with the lowest median).\n",
           "| yardstick | median of the runs | paired |", "|---|---:|---:|",
           f"| time / {best_all} (the best peer by geomean), geomean | {vs_all:.3f} | "
           + (f"{geomean([v for v in vs_all_p if v]):.3f}" if all(vs_all_p) else "n/a") + " |",
           f"| time / best peer of each workload, geomean | {vs_wl:.3f} | "
           + (f"{geomean(vs_wl_p):.3f}" if len(vs_wl_p) == len(wls) else "n/a") + " |",
           f"| slowest workload against its best peer | {worst} {per_wl[worst][0]:.2f} | "
           + (f"{worst_p} {per_wl_paired[worst_p]:.2f}" if worst_p else "n/a") + " |",
           f"| peak RSS / best peer of each workload, geomean | {geomean(rss_best):.3f} | |"]
    if rss_glibc:
        hi = max(rss_glibc, key=rss_glibc.get)
        out.append(f"| highest peak RSS / glibc | {hi} {rss_glibc[hi]:.2f} | |")
    out.append("")
    out.append("| workload | best peer | time / best peer | paired |")
    out.append("|---|---|---:|---:|")
    for wl in wls:
        v, b = per_wl[wl]
        pv = per_wl_paired[wl]
        out.append(f"| {wl} | {b} | {v:.3f} | " + (f"{pv:.3f}" if pv else "n/a") + " |")
    return out


def machine_info():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    osname = "?"
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs online, {mem} RAM, {osname}, "
            f"kernel {platform.release()}, {os.confstr('CS_GNU_LIBC_VERSION')}")


def write_md(path, summ, workloads, allocs, alloc_desc, args, rows, started, elapsed):
    t_table, t_ratios = table(summ, workloads, allocs, "time", fmt_time)
    r_table, _ = table(summ, workloads, allocs, "rss", lambda kb: fmt_kb(int(kb)))
    f_table, _ = table(summ, workloads, allocs, "minflt", lambda x: f"{int(x)}")
    out = []
    out.append("# Allocator comparison\n")
    out.append(f"Generated by `bench/compare.py` on {started} in {elapsed:.0f} s.  ")
    out.append(f"Machine: {machine_info()}.  ")
    out.append(f"Runs per cell: {args.runs}; scale: {args.scale}; allocators alternated run by run.\n")
    out.append("Allocators:\n")
    for a in allocs:
        out.append(f"- **{a}**: {alloc_desc[a]}")
    out.append("")
    out.append("## Time\n")
    out.append("Median of the workload's own `seconds` (CLOCK_MONOTONIC around the work); "
               "in parentheses the ratio to glibc (lower is better).\n")
    cmds = [w for w in workloads if w in COMMANDS]
    if cmds:
        out.append("Whole-process workloads (" + ", ".join(cmds) + "): the runner's wall time instead, "
                   "process start and exit included; their output must equal glibc's. "
                   "Programs: " + "; ".join(f"{w}: `{' '.join(os.path.relpath(x, ROOT) if x.startswith(ROOT) else x for x in COMMANDS[w][0](args.scale))}`"
                                           + (" with " + " ".join(f"{k}={v}" for k, v in COMMANDS[w][1].items()) if COMMANDS[w][1] else "")
                                           for w in cmds) + ".\n")
    out.append(t_table)
    out.append("\n## Peak RSS\n")
    out.append("Median `ru_maxrss` of the workload process (from `wait4`, via the static launcher `bench/tools/runner.c`; floor about 1 MiB); ratio to glibc.\n")
    out.append(r_table)
    out.append("\n## Minor page faults\n")
    out.append("Median `ru_minflt`; ratio to glibc.\n")
    out.append(f_table)
    tg = targets(rows, summ, workloads, allocs)
    if tg:
        out.append("\n## Against the targets\n")
        out.extend(tg)
    out.append("\n## Spread\n")
    out.append("min..max of the time over the runs (relative spread = (max-min)/median).\n")
    out.append("| workload | " + " | ".join(allocs) + " |")
    out.append("|---|" + "---:|" * len(allocs))
    for wl in workloads:
        cells = []
        for a in allocs:
            d = summ.get((wl, a))
            if d is None or "time" not in d:
                cells.append("n/a")
            else:
                spread = (d["tmax"] - d["tmin"]) / d["time"] * 100 if d["time"] else 0
                cells.append(f"{fmt_time(d['tmin'])}..{fmt_time(d['tmax'])} ({spread:.0f}%)")
        out.append(f"| {wl} | " + " | ".join(cells) + " |")
    out.append("\n## Noise\n")
    noisy = [r for r in rows if isinstance(r.get("other_cpu_s"), float) and isinstance(r.get("wall_s"), float)
             and r["wall_s"] > 0 and r["other_cpu_s"] > 0.1 * r["wall_s"]]
    measured = [r for r in rows if isinstance(r.get("other_cpu_s"), float)]
    if measured:
        tot = sum(r["other_cpu_s"] for r in measured)
        wall = sum(r["wall_s"] for r in measured if isinstance(r.get("wall_s"), float))
        out.append(f"Other processes used {tot:.1f} CPU-seconds during {wall:.1f} s of runs "
                   f"(/proc/stat busy time minus the workload's own rusage; column `other_cpu_s` in the CSV). "
                   f"{len(noisy)} of {len(measured)} runs had other processes using more than 10% of a CPU"
                   + (": " + ", ".join(sorted({r['workload'] for r in noisy})) if noisy else "") + ".")
    fails = [r for r in rows if r["status"] != "ok"]
    out.append("\n## Failures\n")
    if not fails:
        out.append("None: every run exited 0 with its contents verified.")
    else:
        for r in fails:
            out.append(f"- {r['workload']} / {r['allocator']} run {r['run']}: {r['detail']}")
    rel = os.path.relpath(args.out, ROOT)
    out.append(f"\nRaw runs: `{rel}.csv`; chart: `{rel}.svg`.\n")
    with open(path, "w") as f:
        f.write("\n".join(out))


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_svg(path, summ, workloads, allocs, subtitle=""):
    groups = list(workloads) + ["geomean"]
    ratio = {}
    for a in allocs:
        rs = []
        for wl in workloads:
            d, b = summ.get((wl, a)), summ.get((wl, "glibc"))
            if d is None:
                continue
            if not d["ok"] or not (b and b["ok"]):
                ratio[(wl, a)] = "FAIL" if not d["ok"] else None
                continue
            r = d["time"] / b["time"]
            ratio[(wl, a)] = r
            rs.append(r)
        ratio[("geomean", a)] = geomean(rs) if rs else None
    vals = [v for v in ratio.values() if isinstance(v, float) and v > 0]
    lo = min([0.25] + vals)
    hi = max([4.0] + vals)
    e_lo, e_hi = math.floor(math.log2(lo)), math.ceil(math.log2(hi))
    bw, gap = (14 if len(allocs) <= 5 else 10), 22
    gw = bw * len(allocs) + gap
    left, top, plot_h, bottom = 60, 50, 320, 110
    width = left + gw * len(groups) + 20
    height = top + plot_h + bottom

    def y(v):
        return top + plot_h * (e_hi - math.log2(v)) / (e_hi - e_lo)

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
         f'Time relative to glibc (log scale, lower is better)</text>',
         f'<text x="{width / 2}" y="36" text-anchor="middle" fill="#555">{esc(subtitle)}</text>']
    for e in range(e_lo, e_hi + 1):
        v = 2.0 ** e
        yy = y(v)
        s.append(f'<line x1="{left}" x2="{width - 20}" y1="{yy:.1f}" y2="{yy:.1f}" '
                 f'stroke="{"#000" if e == 0 else "#ddd"}" stroke-width="{1.2 if e == 0 else 1}"/>')
        lab = f"{v:g}x" if v >= 1 else f"1/{int(round(1 / v))}x"
        s.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{lab}</text>')
    y1 = y(1.0)
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gap / 2
        for ai, a in enumerate(allocs):
            v = ratio.get((g, a))
            x = x0 + ai * bw
            if v == "FAIL":
                s.append(f'<text x="{x + bw / 2:.1f}" y="{y1 - 4:.1f}" text-anchor="middle" '
                         f'fill="{COLORS.get(a, "#000")}" font-weight="bold" '
                         f'transform="rotate(-90 {x + bw / 2:.1f} {y1 - 4:.1f})">FAIL</text>')
                continue
            if not isinstance(v, float):
                continue
            yy = y(v)
            top_y, h = min(yy, y1), abs(yy - y1)
            s.append(f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{bw - 2}" height="{max(h, 1):.1f}" '
                     f'fill="{COLORS.get(a, "#000")}"><title>{esc(g)} / {esc(a)}: {v:.2f}x</title></rect>')
        lx = x0 + len(allocs) * bw / 2
        ly = top + plot_h + 12
        s.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" '
                 f'transform="rotate(-35 {lx:.1f} {ly})">{esc(g)}</text>')
    lx = left
    for a in allocs:
        s.append(f'<rect x="{lx}" y="{height - 22}" width="12" height="12" fill="{COLORS.get(a, "#000")}"/>')
        s.append(f'<text x="{lx + 16}" y="{height - 12}">{esc(a)}</text>')
        lx += 16 + 8 * len(a) + 20
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


# ---------------------------------------------------------------- main

def main():
    quick = os.environ.get("QUICK", "") not in ("", "0")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", 1 if quick else 5)))
    ap.add_argument("--scale", type=float, default=float(os.environ.get("SCALE", 0.2 if quick else 1.0)))
    ap.add_argument("--workloads", default=os.environ.get("WORKLOADS", ",".join(WORKLOADS)))
    ap.add_argument("--allocators", default=os.environ.get("ALLOCATORS", ",".join(ALL_ALLOCS)))
    ap.add_argument("--slaballoc", default=os.environ.get(
        "SLABALLOC_SO", os.path.join(ROOT, "target", "release", "libslaballoc.so")))
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("RUN_TIMEOUT", 30 if quick else 60)),
                    help="seconds before a run is killed and counted as FAIL")
    ap.add_argument("--no-install", action="store_true", default=os.environ.get("NO_INSTALL", "") not in ("", "0"))
    ap.add_argument("--out", default=os.path.join(RESULTS, "latest"), help="output prefix (.md/.csv/.svg)")
    ap.add_argument("--targets", metavar="CSV",
                    help="run nothing: print the 'Against the targets' section for the runs of CSV")
    args = ap.parse_args()
    if args.targets:
        return print_targets(args.targets)

    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"compare.py: unknown workload {w}; known: {', '.join(WORKLOADS)}")
    wanted = set(ALIASES.get(a, a) for a in args.allocators.split(",") if a) | {"glibc"}
    for a in wanted:
        if a not in ALL_ALLOCS:
            sys.exit(f"compare.py: unknown allocator {a}; known: {', '.join(ALL_ALLOCS)}")

    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    t_start = time.monotonic()
    log("compare.py: building workloads")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    left_out = build(os.environ.get("CC", "cc"), cxx)
    workloads = [w for w in workloads if w not in left_out]
    log("compare.py: allocators")
    checked = setup_allocators(wanted, args.no_install, args.slaballoc)
    allocs = [c[0] for c in checked]
    alloc_desc = {c[0]: c[2] for c in checked}
    for name, lib, desc, problem in checked:
        log(f"  {name:10s} {desc}" + (f"  [PROBLEM: {problem}]" if problem else ""))
    log(f"compare.py: {len(workloads)} workloads x {len(allocs)} allocators x {args.runs} runs, "
        f"scale {args.scale}")

    rows = []
    reference = {}   # command workload -> its stdout under glibc (or the first allocator that ran it)
    for wi, wl in enumerate(workloads):
        for run in range(1, args.runs + 1):
            log(f"[{wi + 1}/{len(workloads)}] {wl:15s} run {run}/{args.runs}:", end="")
            for name, lib, desc, problem in checked:
                if problem:
                    rec = {"wall_s": "", "maxrss_kb": "", "utime_s": "", "stime_s": "", "minflt": "",
                           "majflt": "", "nvcsw": "", "nivcsw": "", "threads": "", "ops": "",
                           "seconds": "", "status": "FAIL", "detail": problem}
                else:
                    rec, out, _ = run_one(wl, lib, args.scale, args.timeout)
                    if wl in COMMANDS and rec["status"] == "ok":
                        ref = reference.setdefault(wl, (name, out))
                        if out != ref[1]:
                            rec["status"] = "FAIL"
                            rec["detail"] = (f"output differs from {ref[0]}'s: "
                                             f"{out.strip()[-80:]!r} vs {ref[1].strip()[-80:]!r}")
                rec.update(workload=wl, allocator=name, run=run, scale=args.scale)
                rows.append(rec)
                if rec["status"] == "ok":
                    log(f"  {name} {rec['seconds']:.3f}s {rec['maxrss_kb'] / 1024:.0f}M", end="")
                else:
                    log(f"  {name} FAIL", end="")
            log()

    elapsed = time.monotonic() - t_start
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fields = ["workload", "allocator", "run", "scale", "status", "threads", "ops", "seconds", "wall_s",
              "maxrss_kb", "minflt", "majflt", "utime_s", "stime_s", "nvcsw", "nivcsw", "other_cpu_s",
              "detail"]
    with open(args.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})
    summ = summarize(rows, workloads, allocs)
    write_md(args.out + ".md", summ, workloads, allocs, alloc_desc, args, rows, started, elapsed)
    write_svg(args.out + ".svg", summ, workloads, allocs,
              f"median of {args.runs} run(s), scale {args.scale}, glibc = 1x; {started}")
    log(f"compare.py: done in {elapsed:.0f} s; wrote {args.out}.md, .csv, .svg")
    with open(args.out + ".md") as f:
        md = f.read()
    # the time table on stdout for the impatient
    sec = md.split("## Time", 1)[1].split("## Peak RSS", 1)[0]
    print("## Time" + sec.rstrip())
    nfail = sum(1 for r in rows if r["status"] != "ok")
    if nfail:
        log(f"compare.py: {nfail} failing run(s), see the Failures section")
    return 0


def print_targets(path):
    """The targets section of an earlier run, from its CSV."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in ("seconds", "maxrss_kb"):
                try:
                    r[k] = float(r[k])
                except ValueError:
                    r[k] = ""
            rows.append(r)
    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in rows)]
    allocs = list(dict.fromkeys(r["allocator"] for r in rows))
    lines = targets(rows, summarize(rows, workloads, allocs), workloads, allocs)
    if not lines:
        sys.exit(f"compare.py: {path} has no slaballoc and peer runs of one workload to compare")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
