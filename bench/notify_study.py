#!/usr/bin/env python3
"""The 100x study: how many cross-CPU notifications does slaballoc send per
remote free, in its default (batched) mode versus SLABALLOC_NOTIFY=every?

Runs the `prodcons` workload (every free is remote) under slaballoc with
SLABALLOC_STATS=1, in the default mode and with SLABALLOC_NOTIFY=every,
RUNS times each (alternating), and parses the line the library prints to
stderr at exit:
    slaballoc: ... remote_frees=N notifications=N futex_waits=N futex_wakes=N ring_overflows=N ...
Then one more run per mode under `strace -f -c -e trace=futex` to cross-check
the futex counters against the kernel's view (plus one glibc run under strace:
the futex calls that glibc's own pthread code makes, which are not the
allocator's). Writes bench/results/notify.md (and notify.csv with raw runs).

Environment: SLABALLOC_SO (default target/release/libslaballoc.so), RUNS
(default 3), SCALE (default 1.0 = 3M objects), QUICK=1 (1 run, scale 0.2).
"""
import csv
import datetime
import os
import re
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

MODES = [("default", {}), ("every", {"SLABALLOC_NOTIFY": "every"})]
KEYS = ["remote_frees", "notifications", "futex_waits", "futex_wakes", "ring_overflows"]


def parse_stats(stderr):
    for line in stderr.splitlines():
        if line.startswith("slaballoc:"):
            d = {}
            for tok in line.split()[1:]:
                k, sep, v = tok.partition("=")
                if sep:
                    try:
                        d[k] = int(v)
                    except ValueError:
                        try:
                            d[k] = float(v)
                        except ValueError:
                            d[k] = v
            return d, line.strip()
    return None, None


def parse_strace(path):
    """futex calls and errors from `strace -c` output."""
    try:
        text = open(path).read()
    except OSError:
        return None, None
    for line in text.splitlines():
        t = line.split()
        if t and t[-1] == "futex":
            # % time, seconds, usecs/call, calls, [errors], syscall
            calls = int(t[3])
            errors = int(t[4]) if len(t) == 6 else 0
            return calls, errors
    return 0, 0


def num(v):
    return v if isinstance(v, (int, float)) else None


def fmt_per(p):
    if p is None:
        return "n/a"
    if p == 0:
        return "0"
    if p < 0.1:
        return f"{p:.6f} (1 per {1 / p:,.0f})".replace(",", " ")
    return f"{p:.4f}"


def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def fmt(v, nd=0):
    if v is None:
        return "n/a"
    if isinstance(v, float) and nd:
        return f"{v:.{nd}f}"
    return f"{int(round(v)):,}".replace(",", " ")


def main():
    quick = os.environ.get("QUICK", "") not in ("", "0")
    runs = int(os.environ.get("RUNS", 1 if quick else 3))
    scale = float(os.environ.get("SCALE", 0.2 if quick else 1.0))
    so = os.environ.get("SLABALLOC_SO", os.path.join(compare.ROOT, "target", "release", "libslaballoc.so"))
    out_md = os.path.join(compare.RESULTS, "notify.md")
    os.makedirs(compare.RESULTS, exist_ok=True)
    compare.build(os.environ.get("CC", "cc"), os.environ.get("CXX") or shutil.which("c++"))
    if not os.path.exists(so):
        msg = f"# Notification study\n\nNot run: `{so}` does not exist (run `make build`).\n"
        open(out_md, "w").write(msg)
        compare.warn(f"{so} missing; wrote {out_md} saying so")
        return 1
    so_built = datetime.datetime.fromtimestamp(os.path.getmtime(so)).strftime('%Y-%m-%d %H:%M:%S')
    so_name = os.path.relpath(os.path.abspath(so), compare.ROOT)
    copy = os.path.join(compare.BUILD, "libslaballoc.notify.so")   # the library may be rebuilt meanwhile
    shutil.copyfile(so, copy)
    so = copy
    rows = []
    for run in range(1, runs + 1):
        for mode, env in MODES:
            e = dict(env, SLABALLOC_STATS="1")
            rec, out, err = compare.run_one("prodcons", so, scale, 120, extra_env=e)
            stats, line = parse_stats(err)
            rec.update(mode=mode, run=run, traced=0, stats_line=line or "")
            for k in KEYS:
                rec[k] = (stats or {}).get(k, "")
            rows.append(rec)
            compare.log(f"notify: {mode:8s} run {run}/{runs}: {rec['status']} "
                        f"{rec['seconds'] if rec['seconds'] != '' else '-'} s  {line or '(no slaballoc: line)'}")
    strace = shutil.which("strace")
    traced = {}
    if not strace:
        compare.warn("strace not installed; no cross-check")
    else:
        for mode, env in MODES + [("glibc", None)]:
            with tempfile.TemporaryDirectory() as td:
                sf = os.path.join(td, "strace.txt")
                wrapper = [strace, "-f", "-c", "-e", "trace=futex", "-o", sf]
                if env is not None:
                    wrapper += ["-E", f"LD_PRELOAD={so}", "-E", "SLABALLOC_STATS=1"]
                    wrapper += [a for k, v in env.items() for a in ("-E", f"{k}={v}")]
                rec, out, err = compare.run_one("prodcons", None, scale, 300, wrapper=wrapper)
                calls, errors = parse_strace(sf)
            stats, line = parse_stats(err)
            rec.update(mode=mode, run=0, traced=1, stats_line=line or "", strace_futex=calls,
                       strace_futex_errors=errors)
            for k in KEYS:
                rec[k] = (stats or {}).get(k, "")
            rows.append(rec)
            traced[mode] = rec
            compare.log(f"notify: {mode:8s} under strace: {rec['status']} futex calls={calls} "
                        f"errors={errors}  {line or ''}")

    fields = ["mode", "run", "traced", "status", "detail", "ops", "seconds", "wall_s", "maxrss_kb",
              "other_cpu_s"] + KEYS + \
             ["strace_futex", "strace_futex_errors", "stats_line"]
    with open(os.path.join(compare.RESULTS, "notify.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})

    md = ["# Notification study (the \"100x\" study)\n",
          f"Generated by `bench/notify_study.sh`. Machine: {compare.machine_info()}.  ",
          f"Library: `{so_name}` (built {so_built}; a copy in bench/build/ is preloaded). Workload: `prodcons` "
          f"(producer pinned to CPU 0 allocates, consumer pinned to CPU 1 frees: every free is remote), "
          f"scale {scale}, {runs} run(s) per mode, modes alternated. Counters come from the "
          f"`slaballoc:` line printed at exit with `SLABALLOC_STATS=1`; medians over the runs.\n",
          "| mode | status | objects | time | throughput | remote frees | notifications | "
          "notifications / remote free | futex waits | futex wakes | futex syscalls (counters) | ring overflows |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    summary = {}
    for mode, env in MODES:
        rs = [r for r in rows if r["mode"] == mode and not r["traced"]]
        ok = [r for r in rs if r["status"] == "ok"]
        status = "ok" if len(ok) == len(rs) else f"FAIL {len(rs) - len(ok)}/{len(rs)}"
        s = {k: med([r[k] for r in ok]) for k in KEYS}
        s["seconds"] = med([r["seconds"] for r in ok])
        s["ops"] = med([r["ops"] for r in ok])
        s["tput"] = med([r["ops"] / r["seconds"] for r in ok if r["seconds"]])
        per = [r["notifications"] / r["remote_frees"] for r in ok
               if isinstance(r["notifications"], int) and isinstance(r["remote_frees"], int) and r["remote_frees"]]
        s["per"] = med(per)
        fx = [r["futex_waits"] + r["futex_wakes"] for r in ok
              if isinstance(r["futex_waits"], int) and isinstance(r["futex_wakes"], int)]
        s["futex"] = med(fx)
        summary[mode] = s
        env_s = " ".join(f"{k}={v}" for k, v in env.items()) or "(no SLABALLOC_NOTIFY)"
        t_s = "n/a" if s["seconds"] is None else f"{s['seconds']:.3f} s"
        tp_s = "n/a" if s["tput"] is None else f"{s['tput'] / 1e6:.2f} M/s"
        per_s = fmt_per(s["per"])
        md.append(f"| {mode} `{env_s}` | {status} | {fmt(s['ops'])} | {t_s} | {tp_s} | "
                  f"{fmt(s['remote_frees'])} | {fmt(s['notifications'])} | {per_s} | "
                  f"{fmt(s['futex_waits'])} | {fmt(s['futex_wakes'])} | {fmt(s['futex'])} | "
                  f"{fmt(s['ring_overflows'])} |")
    oth = [r["other_cpu_s"] for r in rows if not r["traced"] and isinstance(r.get("other_cpu_s"), float)]
    wall = [r["wall_s"] for r in rows if not r["traced"] and isinstance(r.get("wall_s"), float)]
    if oth and wall:
        md.append(f"\nNoise: other processes used {sum(oth):.1f} CPU-seconds during the {sum(wall):.1f} s "
                  f"of untraced runs (column `other_cpu_s` in notify.csv).\n")
    d, e = summary.get("default", {}), summary.get("every", {})
    md.append("")
    if d.get("per") and e.get("per"):
        md.append(f"Notifications per remote free: every / default = **{e['per'] / d['per']:.1f}x**.  ")
    elif d.get("per") == 0 and e.get("per"):
        md.append(f"Notifications per remote free: the default mode sent **none** (median of its runs); "
                  f"`every` sent {e['per']:.4f} per remote free.  ")
    if d.get("futex") and e.get("futex"):
        md.append(f"Futex syscalls (counters): every / default = **{e['futex'] / d['futex']:.1f}x**.  ")
    if d.get("tput") and e.get("tput"):
        md.append(f"Throughput: default / every = **{d['tput'] / e['tput']:.2f}x**.")
    if traced:
        md.append("\n## Cross-check with strace\n")
        md.append("One extra run per mode under `strace -f -c -e trace=futex` (slower, so its counts are "
                  "not the ones above). The glibc row is the same workload with glibc malloc and no "
                  "preload, for scale: its futex calls are mostly glibc's arena mutex under contention "
                  "(producer and consumer share the arena), plus thread create/join.\n")
        md.append("| run | status | futex calls (strace) | of which errors | futex_waits + futex_wakes (counters, same run) "
                  "| remote frees | notifications |")
        md.append("|---|---|---:|---:|---:|---:|---:|")
        for mode in ["default", "every", "glibc"]:
            r = traced.get(mode)
            if not r:
                continue
            fx = (r["futex_waits"] + r["futex_wakes"]) if isinstance(r.get("futex_waits"), int) and \
                isinstance(r.get("futex_wakes"), int) else None
            md.append(f"| {mode} | {r['status']} | {fmt(r.get('strace_futex'))} | {fmt(r.get('strace_futex_errors'))} | "
                      f"{fmt(fx) if mode != 'glibc' else '-'} | {fmt(num(r['remote_frees']))} | "
                      f"{fmt(num(r['notifications']))} |")
    fails = [r for r in rows if r["status"] != "ok"]
    if fails:
        md.append("\n## Failures\n")
        for r in fails:
            md.append(f"- {r['mode']} run {r['run']}{' (strace)' if r['traced'] else ''}: {r['detail']}")
    md.append("\n## Raw `slaballoc:` lines\n")
    md.append("```")
    for r in rows:
        if r.get("stats_line"):
            md.append(f"[{r['mode']}{' strace' if r['traced'] else ''} run {r['run']}] {r['stats_line']}")
    md.append("```\n")
    open(out_md, "w").write("\n".join(md))
    compare.log(f"notify: wrote {out_md} and notify.csv")
    print("\n".join(md))
    return 0 if not fails else 1


if __name__ == "__main__":
    sys.exit(main())
