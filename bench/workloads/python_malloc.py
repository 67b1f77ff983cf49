"""python_malloc: an object-heavy CPython script, run by bench/compare.py as
a whole process with PYTHONMALLOC=malloc (so every object allocation goes to
the preloaded malloc) and PYTHONHASHSEED=0. argv[1] = scale. Prints a
deterministic digest of what it computed; compare.py checks that the output
is the same as under glibc. Written for this benchmark."""
import hashlib
import json
import sys

scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
rounds = max(1, int(30 * scale))
h = hashlib.sha256()
ops = 0


def records(seed, n):
    out = []
    x = seed
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out.append({"id": i, "name": "item-%d-%x" % (i, x >> 40), "score": (x >> 20) % 10007,
                    "tags": ["t%d" % ((x >> s) & 31) for s in range(0, 40, 8)],
                    "pos": ((x >> 8) % 1000) / 7.0})
    return out


for r in range(rounds):
    recs = records(r + 1, 6000)
    # dicts: index and group
    by_name = {d["name"]: d for d in recs}
    groups = {}
    for d in recs:
        for t in d["tags"]:
            groups.setdefault(t, []).append(d["id"])
    # strings: build, split, join, replace
    text = " ".join(d["name"] for d in recs)
    words = text.replace("item", "it").split()
    text2 = ",".join(w.upper() for w in words if len(w) > 6)
    # lists: sort by several keys, slices, comprehension
    recs.sort(key=lambda d: (d["score"], d["name"]))
    top = [(d["id"], d["score"]) for d in recs[:100]]
    recs.sort(key=lambda d: -d["pos"])
    squares = sorted((i * i) % 9973 for i in range(20000))
    # a small JSON round trip
    blob = json.dumps(recs[:2000], sort_keys=True)
    back = json.loads(blob)
    assert back == recs[:2000], "json round trip"
    # tuples and sets
    pairs = set((d["score"] % 97, d["id"] % 13) for d in recs)
    h.update(repr(top).encode())
    h.update(text2[:5000].encode())
    h.update(repr(sorted((k, len(v)) for k, v in groups.items())).encode())
    h.update(repr((len(by_name), len(pairs), squares[::997], len(blob))).encode())
    ops += len(recs) + len(words) + len(squares) + len(back)
    del recs, by_name, groups, text, words, text2, top, squares, blob, back, pairs

print("python_malloc rounds=%d ops=%d digest=%s" % (rounds, ops, h.hexdigest()))
