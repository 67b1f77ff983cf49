#!/usr/bin/env bash
# realprogs.sh - run real programs with and without LD_PRELOAD=libslaballoc.so
# and compare their stdout and exit status byte for byte.
#
# Usage: c-tests/realprogs.sh [path/to/libslaballoc.so]
#   (default: $SLABALLOC_SO, else target/release/libslaballoc.so in the repo)
# Env: QUICK=1 shrinks the inputs.
# Output: one line per program, "PASS realprogs.X" / "FAIL realprogs.X" /
# "SKIP realprogs.X (reason)"; exit status 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/.." && pwd))
so=${1:-${SLABALLOC_SO:-$root/target/release/libslaballoc.so}}
case $so in /*) ;; *) so=$root/$so ;; esac
QUICK=${QUICK:-0}

fails=0
work=$(mktemp -d "${TMPDIR:-/tmp}/slaballoc-realprogs.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ ! -f "$so" ]; then
    echo "SKIP realprogs (no $so)"
    exit 0
fi

pass() { echo "PASS realprogs.$1"; }
fail() { echo "FAIL realprogs.$1"; fails=$((fails + 1)); }
skip() { echo "SKIP realprogs.$1 ($2)"; }

# run_both NAME CMD...: runs CMD in $work/NAME.{glibc,sa}/ (fresh dir each,
# cwd there), stdout to out, stderr to err; compares stdout and status.
run_both() {
    local name=$1; shift
    local mode dir st_g st_s
    for mode in glibc sa; do
        dir=$work/$name.$mode
        rm -rf "$dir"; mkdir -p "$dir"
        if [ $mode = sa ]; then
            (cd "$dir" && LD_PRELOAD=$so timeout 300 "$@" >"$dir.out" 2>"$dir.err"); st_s=$?
        else
            (cd "$dir" && timeout 300 "$@" >"$dir.out" 2>"$dir.err"); st_g=$?
        fi
    done
    if [ "$st_g" != 0 ]; then
        fail "$name"
        echo "  $name failed under glibc (status $st_g): test problem, stderr:"
        head -20 "$work/$name.glibc.err" | sed 's/^/    /'
        return
    fi
    if [ "$st_s" != "$st_g" ] || ! cmp -s "$work/$name.glibc.out" "$work/$name.sa.out"; then
        fail "$name"
        echo "  status glibc=$st_g slaballoc=$st_s; stdout sizes $(wc -c <"$work/$name.glibc.out")/$(wc -c <"$work/$name.sa.out")"
        diff "$work/$name.glibc.out" "$work/$name.sa.out" | head -20 | sed 's/^/    /'
        echo "  slaballoc stderr:"
        tail -20 "$work/$name.sa.err" | sed 's/^/    /'
        return
    fi
    pass "$name"
}

have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- python3
if have python3; then
    # resolve pyenv-style shims to the real interpreter
    py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || echo python3)
    n=200000; [ "$QUICK" = 1 ] && n=30000
    cat >"$work/prog.py" <<EOF
import hashlib, json, sys, random, collections
N = $n
rnd = random.Random(12345)
class Shape:
    def __init__(self, name): self.name = name
    def area(self): raise NotImplementedError
    def __repr__(self): return f"{type(self).__name__}({self.name}, {self.area():.3f})"
class Rect(Shape):
    def __init__(self, name, w, h): super().__init__(name); self.w, self.h = w, h
    def area(self): return self.w * self.h
class Square(Rect):
    def __init__(self, name, s): super().__init__(name, s, s)
class Circle(Shape):
    def __init__(self, name, r): super().__init__(name); self.r = r
    def area(self): return 3.141592653589793 * self.r * self.r
shapes = []
for i in range(N // 10):
    k = rnd.randrange(3)
    if k == 0: shapes.append(Rect(f"r{i}", rnd.random() * 10, rnd.random() * 5))
    elif k == 1: shapes.append(Square(f"s{i}", rnd.random() * 7))
    else: shapes.append(Circle(f"c{i}", rnd.random() * 3))
shapes.sort(key=lambda s: (s.area(), s.name))
print(shapes[:3], shapes[-3:])
print(collections.Counter(type(s).__name__ for s in shapes).most_common())
d = {}
for i in range(N):
    k = "key%d" % (rnd.randrange(N // 4))
    d.setdefault(k, []).append(i * i % 9973)
print(len(d), sum(len(v) for v in d.values()), max(d, key=lambda k: (len(d[k]), k)))
words = ["".join(chr(97 + rnd.randrange(26)) for _ in range(rnd.randrange(1, 12))) for _ in range(N)]
text = " ".join(words)
print(len(text), text.count("ab"), text.upper()[:60], sorted(set(words))[:5])
freq = collections.Counter(words).most_common(10)
print(freq)
obj = {"shapes": [repr(s) for s in shapes[:2000]], "d": {k: d[k] for k in sorted(d)[:3000]},
       "nested": [[i, {"x": i / 3, "y": [str(i)] * 3}] for i in range(5000)]}
s = json.dumps(obj, sort_keys=True)
back = json.loads(s)
print(len(s), back == obj, hashlib.sha256(s.encode()).hexdigest())
h = hashlib.md5()
for w in words: h.update(w.encode())
print(h.hexdigest(), hashlib.sha1(text.encode()).hexdigest())
lst = list(range(N)); rnd.shuffle(lst); lst.sort(reverse=True)
print(lst[:5], sum(lst[::7]))
big = [bytearray(rnd.randrange(1, 300000)) for _ in range(200)]
print(sum(len(b) for b in big))
del big, d, words
print("done")
EOF
    run_both python3 "$py" "$work/prog.py"
    # stats line
    if SLABALLOC_STATS=1 LD_PRELOAD=$so "$py" -c 'print(sum(range(1000)))' >"$work/stats.out" 2>"$work/stats.err"; then
        line=$(grep '^slaballoc:' "$work/stats.err" | grep 'allocs=' | tail -1)
        missing=""
        for k in allocs local_frees remote_frees notifications ring_overflows futex_waits futex_wakes slabs_live slabs_cached bytes_mapped; do
            echo " $line " | grep -Eq "[ :]$k=[0-9]+( |\$)" || missing="$missing $k"
        done
        if [ -n "$line" ] && [ -z "$missing" ]; then
            pass python3.stats
            echo "  $line"
        else
            fail python3.stats
            echo "  stats line: '${line:-<none>}' missing keys:${missing}"
            head -5 "$work/stats.err" | sed 's/^/    /'
        fi
    else
        fail python3.stats
        echo "  SLABALLOC_STATS=1 python3 failed:"; head -10 "$work/stats.err" | sed 's/^/    /'
    fi
else
    skip python3 "not installed"
fi

# ---------------------------------------------------------------- sqlite3
if have sqlite3; then
    rows=50000; [ "$QUICK" = 1 ] && rows=10000
    cat >"$work/q.sql" <<EOF
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $rows)
INSERT INTO t(grp, name, val) SELECT x % 97, printf('name-%08d-%s', (x * 7919) % $rows, hex(x * x)), (x * 31 % 1000) / 7.0 FROM c;
SELECT count(*), sum(grp), round(avg(val), 6), min(name), max(name) FROM t;
SELECT grp, count(*), round(sum(val), 3), group_concat(id % 10, '') FROM t GROUP BY grp ORDER BY grp LIMIT 20;
CREATE INDEX t_name ON t(name);
SELECT id, name FROM t WHERE name BETWEEN 'name-00001000' AND 'name-00001100' ORDER BY name;
SELECT name, val FROM t ORDER BY val DESC, name ASC LIMIT 30;
SELECT length(group_concat(name)) FROM (SELECT name FROM t ORDER BY name);
UPDATE t SET name = upper(name) WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
VACUUM;
SELECT count(*), count(DISTINCT grp), max(length(name)) FROM t;
PRAGMA integrity_check;
EOF
    run_both sqlite3 sh -c "sqlite3 db.sqlite < '$work/q.sql'"
else
    skip sqlite3 "not installed"
fi

# ---------------------------------------------------------------- git
if have git; then
    cat >"$work/git.sh" <<'EOF'
set -e
export HOME=$PWD GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null LC_ALL=C TZ=UTC
export GIT_AUTHOR_NAME=Tester GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=Tester GIT_COMMITTER_EMAIL=t@example.com
git init -q -b main repo
cd repo
git config user.name Tester
git config user.email t@example.com
git config core.autocrlf false
git config gc.auto 0
for c in 1 2 3; do
    for f in $(seq 1 40); do
        mkdir -p dir$((f % 5))
        seq $((f * c)) $((f * c + 300 + c * 50)) | sed "s/^/line $c $f /" > dir$((f % 5))/file$f.txt
    done
    export GIT_AUTHOR_DATE="2020-01-0${c}T12:00:00Z" GIT_COMMITTER_DATE="2020-01-0${c}T12:00:00Z"
    git add -A
    git commit -q -m "commit $c"
done
git log --stat
git gc -q
git fsck --no-progress 2>&1
git count-objects -v | grep -v size
git rev-parse HEAD
git diff HEAD~2 --stat | tail -1
git grep -c "line 3 17" | head -5
EOF
    run_both git bash "$work/git.sh"
else
    skip git "not installed"
fi

# ---------------------------------------------------------------- gcc
if have gcc; then
    cat >"$work/prog.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *l, *r; int key; };
static struct node *ins(struct node *t, int k) {
    if (!t) { t = calloc(1, sizeof *t); t->key = k; return t; }
    if (k < t->key) t->l = ins(t->l, k); else t->r = ins(t->r, k);
    return t;
}
static long walk(struct node *t, int d) { if (!t) return 0; long s = walk(t->l, d + 1) + (long)t->key * d + walk(t->r, d + 1); free(t); return s; }
static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
int main(void) {
    struct node *t = NULL; unsigned x = 1;
    for (int i = 0; i < 100000; i++) { x = x * 1103515245u + 12345u; t = ins(t, (int)(x >> 8) % 1000000); }
    printf("tree %ld\n", walk(t, 0));
    char **s = malloc(50000 * sizeof *s);
    for (int i = 0; i < 50000; i++) { x = x * 1103515245u + 12345u; s[i] = malloc(32); snprintf(s[i], 32, "%u-%d", x % 7777, i); }
    qsort(s, 50000, sizeof *s, cmp);
    printf("%s %s %s\n", s[0], s[25000], s[49999]);
    for (int i = 0; i < 50000; i++) free(s[i]);
    free(s);
    return 0;
}
EOF
    cat >"$work/gcc.sh" <<EOF
set -e
gcc -O2 -Wall -o prog "$work/prog.c"
./prog
EOF
    run_both gcc bash "$work/gcc.sh"
else
    skip gcc "not installed"
fi

# ---------------------------------------------------------------- c++
# A C++ compile (cc1plus, as, ld) and the program it builds, both under the
# library: STL containers, strings, shared pointers and an exception, through
# the library's operator new and delete (ffi/src/cxx.rs).
if have c++; then
    n=200000; [ "$QUICK" = 1 ] && n=40000
    cat >"$work/prog.cc" <<EOF
#include <algorithm>
#include <cstdio>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>
struct Node { std::shared_ptr<Node> l, r; long v; };
static std::shared_ptr<Node> tree(int d, long &k) {
    if (!d) return nullptr;
    auto n = std::make_shared<Node>();
    n->v = k++; n->l = tree(d - 1, k); n->r = tree(d - 1, k);
    return n;
}
static long sum(const std::shared_ptr<Node> &n) { return n ? n->v + sum(n->l) + sum(n->r) : 0; }
int main() {
    unsigned long x = 12345, h = 0;
    std::map<std::string, std::vector<int>> m;
    std::unordered_map<unsigned long, std::string> u;
    std::list<std::string> l;
    for (int i = 0; i < $n; i++) {
        x = x * 6364136223846793005ul + 1442695040888963407ul;
        std::string w = "w" + std::to_string(x >> 50);
        m[w].push_back(i);
        u[x % 4099] += w.substr(0, 1 + i % 3);
        l.push_back(w);
        if (l.size() > 1000) l.pop_front();
    }
    for (auto &kv : m) h = h * 31 + kv.first.size() + kv.second.size();
    std::vector<std::string> keys;
    for (auto &kv : u) keys.push_back(kv.second.substr(0, 8));
    std::sort(keys.begin(), keys.end());
    for (auto &k : keys) for (char c : k) h = h * 131 + (unsigned char)c;
    long k = 0, total = 0;
    for (int r = 0; r < 20; r++) total += sum(tree(14, k));
    int caught = 0;
    try { volatile size_t huge = (size_t)1 << 62; (void)::operator new(huge); } catch (const std::bad_alloc &) { caught = 1; }
    std::printf("%zu %zu %zu %lu %ld %d\n", m.size(), u.size(), l.size(), h, total, caught);
    return 0;
}
EOF
    run_both cxx sh -c "c++ -O1 -o prog '$work/prog.cc' && ./prog"
else
    skip cxx "no C++ compiler"
fi

# ---------------------------------------------------------------- perl
if have perl; then
    lines=300000; [ "$QUICK" = 1 ] && lines=50000
    perl -e 'my $x = 42; for my $i (1..'"$lines"') { my @w; for (1..(1 + $i % 9)) { $x = ($x * 1103515245 + 12345) % 2147483648; push @w, "w" . ($x % 5000); } print join(" ", @w), "\n"; }' >"$work/words.txt"
    run_both perl perl -ne 'for my $w (split) { $c{$w}++; $l{length $w} .= substr($w, -1) } END { my @k = sort { $c{$b} <=> $c{$a} || $a cmp $b } keys %c; print scalar(@k), "\n"; print "$_ $c{$_}\n" for @k[0..49]; for my $n (sort { $a <=> $b } keys %l) { my %h; $h{$_}++ for split //, $l{$n}; print "$n ", join(",", map { "$_=$h{$_}" } sort keys %h), "\n" } }' "$work/words.txt"
else
    skip perl "not installed"
fi

# ---------------------------------------------------------------- sort
if have sort && have awk; then
    lines=1000000; [ "$QUICK" = 1 ] && lines=200000
    awk -v n=$lines 'BEGIN { x = 7; for (i = 0; i < n; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%d\t%s\n", x % 100000, substr("abcdefghijklmnopqrstuvwxyz", x % 26 + 1, x % 7 + 1) } }' >"$work/nums.txt"
    run_both sort sh -c "LC_ALL=C sort -n '$work/nums.txt' | md5sum; LC_ALL=C sort -n '$work/nums.txt' | head -3; LC_ALL=C sort -u '$work/nums.txt' | md5sum; LC_ALL=C sort -u '$work/nums.txt' | wc -l; LC_ALL=C sort -S 8M -k2,2 -k1,1n '$work/nums.txt' | md5sum"
else
    skip sort "not installed"
fi

exit $((fails > 0))
