#!/usr/bin/env python3
"""check-docs.py - the documentation's counts and links, checked against the tree.

    python3 tools/check-docs.py           check; exit 1 on any disagreement (make test-docs)
    python3 tools/check-docs.py --write   rewrite the generated blocks of RELIABILITY.md

RELIABILITY.md: the Rust test inventory (the block between
`<!-- generated: rust-tests -->` and `<!-- end generated -->`) is generated
from the `#[test]` functions of every tracked `.rs` file, so it must equal
what `--write` would put there. Every count the rest of the file states in
the words below ("N Rust tests", "N unit tests", "N loom models", "N cases",
"N C test programs", ...) must equal the count taken from the tree; every
test function must be named in the file; every C test program that
c-tests/run.sh builds must be named; every `module::item` it names must
exist in the Rust sources.

Links, in every tracked Markdown file except the generated bench/results/*.md:
a relative link must name a file or folder that exists (and an anchor, a
heading of that file); a backticked repository path (`src/...`, `bench/...`)
must exist, except in docs/experiments.md, whose paths are history. The
README must link docs/design.md, bench/RESULTS.md, docs/experiments.md and
RELIABILITY.md, and nothing outside the repository.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REL = "RELIABILITY.md"
BEGIN = "<!-- generated: rust-tests (python3 tools/check-docs.py --write) -->"
END = "<!-- end generated -->"

errors = []


def err(msg):
    errors.append(msg)


def tracked(*patterns):
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "--cached", "--others",
                              "--exclude-standard", "--", *patterns],
                             capture_output=True, text=True, check=True).stdout
        files = sorted(set(out.split()))
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, fs in os.walk(ROOT):
            dirs[:] = [x for x in dirs if x not in ("target", ".git", "build")]
            for f in fs:
                p = os.path.relpath(os.path.join(d, f), ROOT)
                if any(re.fullmatch(pat.replace(".", r"\.").replace("*", ".*"), p) for pat in patterns):
                    files.append(p)
    return [f for f in files if os.path.isfile(os.path.join(ROOT, f))]


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------------ the tree's counts

def rust_tests():
    """{path: [test fn names]} and the number of doc tests."""
    tests, doc = {}, 0
    for path in tracked("*.rs"):
        text = read(path)
        names = re.findall(r"#\[test\]\s*(?:#\[[^\]]*\]\s*)*(?:pub\s+)?(?:async\s+)?fn\s+(\w+)", text)
        if names:
            tests[path] = names
        # doc tests: opening fences in /// or //! comments that rustdoc runs
        fence_open = False
        for line in text.splitlines():
            m = re.match(r"\s*//[/!]\s?(.*)$", line)
            if not m:
                continue
            body = m.group(1).strip()
            if body.startswith("```"):
                if not fence_open:
                    info = body[3:].strip()
                    attrs = {a.strip() for a in info.split(",") if a.strip()}
                    if not attrs or attrs <= {"rust", "no_run", "should_panic", "compile_fail", "edition2021"}:
                        doc += 1
                fence_open = not fence_open
    return tests, doc


def kind(path):
    parts = path.split("/")
    if "tests" in parts[:-1]:
        return "loom" if parts[-1] == "loom.rs" else "integration"
    return "unit"


def invalid_free_cases():
    text = read("c-tests/invalid_free.c")
    m = re.search(r"cases\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    if not m:
        err("c-tests/invalid_free.c: no `cases[] = {...};` table")
        return 0
    return len(re.findall(r'^\s*\{\s*"', m.group(1), re.M))


def c_programs():
    """The programs c-tests/run.sh builds and runs, plus those config.sh builds."""
    run = read("c-tests/run.sh")
    m = re.search(r"^for t in ([\w ]+); do\s*\n\s*if \$CC", run, re.M)
    if not m:
        err("c-tests/run.sh: the build loop (`for t in ...; do if $CC ...`) not found")
        return []
    progs = m.group(1).split()
    for script in ("c-tests/config.sh", "c-tests/install.sh"):
        if os.path.exists(os.path.join(ROOT, script)):
            progs += [p for p in re.findall(r"(?:c-tests/|\$here/)(\w+)\.c\b", read(script)) if p not in progs]
    return progs


# ------------------------------------------------------------------ RELIABILITY.md

def generated_block(tests, doc):
    by_kind = {"unit": 0, "integration": 0, "loom": 0}
    for p, names in tests.items():
        by_kind[kind(p)] += len(names)
    total = by_kind["unit"] + by_kind["integration"] + doc
    integ_files = sorted(p for p in tests if kind(p) == "integration")
    lines = [
        BEGIN,
        f"{total} Rust tests: {by_kind['unit']} unit tests in the modules, "
        f"{by_kind['integration']} integration tests ({', '.join('`%s`' % p for p in integ_files)}) "
        f"and {doc} doc test{'s' if doc != 1 else ''}; plus {by_kind['loom']} loom models "
        f"(`cargo test --release --test loom` under `--cfg loom`, `make test-loom`).",
        "",
        "| file | tests |",
        "|---|---|",
    ]
    order = sorted(tests, key=lambda p: ({"unit": 0, "integration": 1, "loom": 2}[kind(p)], p))
    for p in order:
        lines.append(f"| `{p}` | {', '.join(tests[p])} |")
    lines.append(END)
    return "\n".join(lines), by_kind, total


def check_reliability(write):
    tests, doc = rust_tests()
    block, by_kind, total = generated_block(tests, doc)
    text = read(REL)
    if BEGIN not in text or END not in text:
        err(f"{REL}: no generated block ({BEGIN} ... {END})")
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + block + tail
    if new != text:
        if write:
            with open(os.path.join(ROOT, REL), "w", encoding="utf-8") as f:
                f.write(new)
            print(f"check-docs: {REL}: generated block rewritten")
        else:
            err(f"{REL}: the Rust test inventory is stale (run `python3 tools/check-docs.py --write`)")
    text = new
    outside = head + tail

    cases = invalid_free_cases()
    progs = c_programs()
    counts = {
        r"(\d+) Rust tests": total,
        r"(\d+) unit tests": by_kind["unit"],
        r"(\d+) integration tests": by_kind["integration"],
        r"(\d+) doc tests?": doc,
        r"(\d+) loom models?": by_kind["loom"],
        r"(\d+) (?:invalid-free )?cases": cases,
        r"(\d+) C test programs": len(progs),
    }
    for pat, want in counts.items():
        for m in re.finditer(pat, outside):
            if int(m.group(1)) != want:
                line = outside[:m.start()].count("\n") + 1
                err(f"{REL}: says \"{m.group(0)}\" (line {line} outside the generated block); the tree has {want}")
    # counts the file must state at least once (so a reader sees them)
    for pat, want in ((r"(\d+) (?:invalid-free )?cases", cases), (r"(\d+) C test programs", len(progs))):
        if not re.search(pat, outside):
            err(f"{REL}: states no count matching /{pat}/ (the tree has {want})")

    for p, names in tests.items():
        for n in names:
            if not re.search(r"\b%s\b" % re.escape(n), outside) and kind(p) != "unit" and kind(p) != "integration":
                err(f"{REL}: the loom model `{n}` ({p}) is not described outside the generated table")
    for prog in progs:
        if not re.search(r"`%s[.`]" % re.escape(prog), text):
            err(f"{REL}: the C test program `{prog}` (c-tests/{prog}.c) is not described")
    # the variants run.sh runs, as the file lists them
    run = read("c-tests/run.sh")
    m = re.search(r"for n in ([\d ]+); do\s*\n\s*simple oom\.inject", run)
    if m:
        want = "`oom.inject.{%s}`" % ",".join(m.group(1).split())
        if want not in text:
            err(f"{REL}: does not list {want} (c-tests/run.sh's fault-injection runs)")
    m = re.search(r"for t in ([\w ]+); do\s*\n(?:.*\n){0,3}?\s*simple \$t\.cpu_ids", run)
    if m:
        progs_ids = m.group(1).split()
        row = re.search(r"^\| `\*\.cpu_ids` \| ([^|]*)\|", text, re.M)
        listed = re.findall(r"\b(\w+)\b", row.group(1).split(" against ")[0]) if row else []
        listed = [w for w in listed if w != "and"]
        if sorted(listed) != sorted(progs_ids):
            err(f"{REL}: the `*.cpu_ids` row lists {listed}; c-tests/run.sh runs {progs_ids}")

    # `module::item` references must exist in the Rust sources
    rs = {p: read(p) for p in tracked("*.rs")}
    items = set()
    for p, src in rs.items():
        items.update(re.findall(r"\b(?:fn|mod|struct|enum|static|const|type|trait)\s+(\w+)", src))
        items.add(os.path.splitext(os.path.basename(p))[0])
    for m in re.finditer(r"`(?:[a-z_][a-z0-9_]*::)+([a-zA-Z_][A-Za-z0-9_]*)`", text):
        if m.group(1) not in items:
            err(f"{REL}: `{m.group(0).strip('`')}` names nothing in the Rust sources")
    return total, by_kind, doc, cases, progs


# ------------------------------------------------------------------ links

def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    text = read(path)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    out, seen = set(), {}
    for h in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        s = slug(h)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


# Files whose backticked repository paths must exist (docs/experiments.md is
# history: its paths are those of their day).
PATH_CHECKED = ("README.md", "RELIABILITY.md", "bench/RESULTS.md", "c-tests/README.md", "docs/design.md")
PATH_ROOTS = ("src/", "bench/", "c-tests/", "docs/", "tools/", "tests/", "fuzz/", "include/", "crates/")


def check_links():
    mds = [p for p in tracked("*.md") if not p.startswith("bench/results/")]
    for md in mds:
        text = read(md)
        body = re.sub(r"```.*?```", "", text, flags=re.S)
        base = os.path.dirname(md)
        for m in re.finditer(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", body):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                if md == "README.md":
                    err(f"README.md: links outside the repository: {target}")
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(base, path)) if path else md
            if not os.path.exists(os.path.join(ROOT, dest)):
                err(f"{md}: broken link ({target}): no {dest}")
                continue
            if anchor and dest.endswith(".md") and anchor not in anchors(dest):
                err(f"{md}: broken anchor ({target}): no heading #{anchor} in {dest}")
        if md == "README.md" and re.search(r"https?://", body):
            for u in re.findall(r"https?://[^\s)>`\]]+", body):
                if not any(u in e for e in errors):
                    err(f"README.md: names an address outside the repository: {u}")
        if md not in PATH_CHECKED:
            continue
        for m in re.finditer(r"`([^`\s]+)`", body):
            p = m.group(1).rstrip(".,:;")
            if not p.startswith(PATH_ROOTS) or re.search(r"[*{}$<>|=]", p):
                continue
            p = p.split("#")[0]
            if p.startswith("bench/build/") or p.startswith("c-tests/build/"):
                continue  # build outputs
            if not any(os.path.exists(os.path.join(ROOT, p + ext)) for ext in ("", ".c", ".sh", ".rs")):
                err(f"{md}: names `{p}`, which does not exist")
    readme = read("README.md")
    for want in ("docs/design.md", "bench/RESULTS.md", "docs/experiments.md", "RELIABILITY.md"):
        if not re.search(r"\]\(\.?/?%s(#[^)]*)?\)" % re.escape(want), readme):
            err(f"README.md: does not link {want}")
    return len(mds)


def main():
    write = "--write" in sys.argv[1:]
    r = check_reliability(write)
    n = check_links()
    if errors:
        for e in errors:
            print("check-docs: " + e)
        print(f"check-docs: {len(errors)} problem(s)")
        return 1
    total, by_kind, doc, cases, progs = r
    print(f"check-docs: {REL} agrees with the tree ({total} Rust tests, {by_kind['loom']} loom models, "
          f"{len(progs)} C test programs, {cases} invalid-free cases); links of {n} Markdown files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
