#!/usr/bin/env python3
"""Checks that the allocator crate's modules depend one way.

    python3 tools/check-layers.py [--graph]

The modules of `src/` are listed below from the bottom up. A module may use
(`crate::...`, `super::...`) only modules listed before it: an edge to a
module listed after it, or to itself through another module, is a back edge,
and the script prints each one with its file and line and exits 1. A module's
own submodules (`mem/zone/stash.rs` of `mem/zone`) count as the module.

What counts: every path in code. Comments and doc comments are skipped (a
doc link is not a dependency), and so are items under `#[cfg(test)]` and
files named `tests.rs` (a module's tests in a file of their own, declared
`#[cfg(test)] mod tests;`): unit tests drive the whole allocator through
its entry points from any module.

`--graph` prints the edges that exist, layer by layer (for docs/design.md).
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")

# Bottom up. Within a layer the order matters too: a module may use only
# the modules before it.
LAYERS = [
    ("platform: system calls, the CPU, locks, formatting, options, size classes",
     ["hook", "os", "fmt", "config", "size_class", "cache_layout", "arch", "cpu", "sync"]),
    ("data structures: page map, page runs, slab descriptors and their lists, rings, counters",
     ["stats", "pagemap", "runs", "slab", "ring"]),
    ("memory: per-CPU caches, the heap profiler's table, zones, large blocks, giving memory back, the starter heap",
     ["cache", "prof", "zone", "reclaim", "large", "starter"]),
    ("entry points: validating pointers, foreign pointers, malloc and free, malloc types",
     ["integrity", "foreign", "alloc", "types"]),
    ("reports, the live view and the public API",
     ["report", "shm", "api", "lib"]),
]

ORDER = [m for _, mods in LAYERS for m in mods]
RANK = {m: i for i, m in enumerate(ORDER)}


def module_of_file(path):
    rel = os.path.relpath(path, SRC)[:-3]  # strip .rs
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)


def owner(mod):
    """The listed module that `mod` is (or is a submodule of)."""
    parts = mod.split("::")
    for n in range(len(parts), 0, -1):
        m = "::".join(parts[:n])
        if m in RANK:
            return m
    return None


def strip(text):
    """Code without comments and without #[cfg(test)] items."""
    # Comments (line comments and doc comments; block comments are rare).
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"\s*#\[cfg\(test\)\]\s*$", line):
            # Skip the attribute and the item after it (to its closing brace
            # or semicolon), keeping line numbers.
            out.append("")
            i += 1
            depth = 0
            opened = False
            while i < len(lines):
                l = lines[i]
                out.append("")
                depth += l.count("{") - l.count("}")
                opened = opened or "{" in l
                i += 1
                if (opened and depth <= 0) or (not opened and l.rstrip().endswith(";")):
                    break
            continue
        out.append(line)
        i += 1
    return out


def uses(mod, lines):
    """(line number, target module) for every path into another module."""
    found = []
    parent = mod.rsplit("::", 1)[0] if "::" in mod else ""
    for n, line in enumerate(lines, 1):
        # use crate::{a, b::c, d::{e, f}};  crate::a::b  super::x
        for m in re.finditer(r"\bcrate::\{([^;]*)\}", line):
            for item in re.split(r",", m.group(1)):
                item = item.strip().lstrip("{").strip()
                if item and item != "self":
                    found.append((n, item.split("::")[0] if "::" not in item else item))
        for m in re.finditer(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)", line):
            found.append((n, m.group(1)[2:]))
        for m in re.finditer(r"\bsuper((?:::[a-z_][a-z0-9_]*)+)", line):
            base = parent
            found.append((n, (base + "::" if base else "") + m.group(1)[2:]))
    return found


def main():
    graph = "--graph" in sys.argv
    files = []
    for d, _, fs in os.walk(SRC):
        files += [os.path.join(d, f) for f in fs if f.endswith(".rs") and f != "tests.rs"]
    errors = []
    edges = {}
    unlisted = []
    for path in sorted(files):
        mod = module_of_file(path)
        me = owner(mod)
        if me is None:
            unlisted.append(os.path.relpath(path, ROOT))
            continue
        with open(path) as f:
            lines = strip(f.read())
        for n, target in uses(mod, lines):
            t = owner(target)
            if t is None or t == me:
                continue
            edges.setdefault(me, set()).add(t)
            if RANK[t] > RANK[me]:
                errors.append(f"{os.path.relpath(path, ROOT)}:{n}: {me} uses {t}, "
                              f"which is above it")
    for u in unlisted:
        errors.append(f"{u}: module not listed in tools/check-layers.py")
    if graph:
        for name, mods in LAYERS:
            print(f"{name}")
            for m in mods:
                if m in RANK and (m in edges or any(m in v for v in edges.values())):
                    deps = ", ".join(sorted(edges.get(m, ()), key=RANK.get))
                    print(f"  {m:24} -> {deps or '(nothing)'}")
    for e in errors:
        print(e)
    n = sum(len(v) for v in edges.values())
    if errors:
        print(f"check-layers: {len(errors)} back edge(s) or unlisted module(s)")
        return 1
    print(f"check-layers: {len(ORDER)} modules in {len(LAYERS)} layers, "
          f"{n} edges, all pointing down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
