# slaballoc — build, run, test, compare.
#
#   make            build target/release/libslaballoc.{so,a} and include/slaballoc.h
#   make run        the main job: real programs under the library, with its stats
#   make test       every test: Rust unit tests, then the C suite (c-tests/run.sh)
#   make compare    side-by-side benchmark against glibc, jemalloc, tcmalloc, mimalloc
#   make install PREFIX=/usr/local

SO      := target/release/libslaballoc.so
CARGO   ?= cargo
PREFIX  ?= /usr/local

.PHONY: all build run test test-rust test-loom test-c test-install test-config clippy fmt clean install slabtop test-slabtop

all: build

# The shipped libraries are built as cdylib and staticlib only: with the rlib
# in the same compilation (Cargo.toml lists it for the Rust tests and benches)
# Cargo skips LTO and every static and internal call goes through the GOT
# (about 15 more instructions on the malloc+free fast path; see
# bench/RESULTS.md). `cargo build --release` still works, but gives that slower
# target/release/libslaballoc.so.
#
# The link puts free and malloc first in .text, at the start of a page of
# their own (src/hot-symbols.txt, -z separate-code): where the linker left
# them otherwise moved with every change to other code, and the same machine
# code for both ran `mixed` up to 5 % slower at some offsets (RESULTS.md).
# Those are LLD options (rustc's default linker on x86-64 Linux since 1.90);
# with a linker that rejects them the library is built without them.
HOT_LINK := -C link-arg=-Wl,--symbol-ordering-file=$(CURDIR)/src/hot-symbols.txt \
	-C link-arg=-Wl,--no-warn-symbol-ordering -C link-arg=-Wl,-z,separate-code
build:
	$(CARGO) rustc --release --lib --crate-type cdylib,staticlib -- --cfg slaballoc_nostd $(HOT_LINK) || \
	{ echo "make build: the linker refused the hot-code order (not LLD?): building without it"; \
	  $(CARGO) rustc --release --lib --crate-type cdylib,staticlib -- --cfg slaballoc_nostd; }

# The main job: sqlite3 (many small objects) and a two-thread python3
# producer/consumer (objects made on one thread die on the other) under the
# library, printing slaballoc's counters at exit; output checked against glibc.
run: build
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	printf '%s\n' \
	  "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);" \
	  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<200000)" \
	  "  INSERT INTO t SELECT x, printf('name-%08d', (x*7919)%200000), x*0.5 FROM c;" \
	  "CREATE INDEX t_name ON t(name);" \
	  "SELECT count(*), sum(v), min(name), max(name) FROM t;" \
	  "SELECT substr(name,6,2) k, count(*), avg(v) FROM t GROUP BY k ORDER BY k LIMIT 5;" \
	  > $$tmp/q.sql; \
	echo "== sqlite3 under slaballoc"; \
	SLABALLOC_STATS=1 LD_PRELOAD=$(CURDIR)/$(SO) sqlite3 $$tmp/db.sqlite < $$tmp/q.sql > $$tmp/out.slab; \
	rm -f $$tmp/db.sqlite; sqlite3 $$tmp/db.sqlite < $$tmp/q.sql > $$tmp/out.glibc; \
	cat $$tmp/out.slab; cmp -s $$tmp/out.slab $$tmp/out.glibc && echo "sqlite3: output identical to glibc's" || { echo "sqlite3: OUTPUT DIFFERS"; exit 1; }; \
	echo "== python3 (PYTHONMALLOC=malloc): 2 threads, objects made on one and freed on the other"; \
	printf '%s\n' \
	  "import threading, queue, hashlib, os" \
	  "cpus = sorted(os.sched_getaffinity(0))" \
	  "def pin(k): os.sched_setaffinity(0, {cpus[k % len(cpus)]})" \
	  "q = queue.Queue(maxsize=1000)" \
	  "def produce():" \
	  "    pin(0)" \
	  "    for i in range(100000):" \
	  "        q.put({'id': i, 'name': 'item-%d' % i, 'tags': [str(i % 7), str(i % 11)] * (i % 5)})" \
	  "    q.put(None)" \
	  "h = hashlib.sha256()" \
	  "def consume():" \
	  "    pin(1)" \
	  "    while (o := q.get()) is not None:" \
	  "        h.update(('%d %s %s' % (o['id'], o['name'], ','.join(o['tags']))).encode())" \
	  "t = [threading.Thread(target=f) for f in (produce, consume)]" \
	  "[x.start() for x in t]; [x.join() for x in t]" \
	  "print('digest', h.hexdigest())" > $$tmp/pc.py; \
	py=$$(python3 -c 'import sys; print(sys.executable)'); \
	SLABALLOC_STATS=1 PYTHONMALLOC=malloc LD_PRELOAD=$(CURDIR)/$(SO) $$py $$tmp/pc.py > $$tmp/py.slab; \
	PYTHONMALLOC=malloc $$py $$tmp/pc.py > $$tmp/py.glibc; \
	cat $$tmp/py.slab; cmp -s $$tmp/py.slab $$tmp/py.glibc && echo "python3: output identical to glibc's" || { echo "python3: OUTPUT DIFFERS"; exit 1; }

test: test-rust test-slabtop test-loom test-c test-install test-config

# slabtop, the live view (its own crate, with its own target directory).
SLABTOP := tools/slabtop/target/release/slabtop
slabtop:
	$(CARGO) build --release --manifest-path tools/slabtop/Cargo.toml

test-slabtop:
	$(CARGO) test --release --manifest-path tools/slabtop/Cargo.toml

test-rust:
	$(CARGO) test --release

# Model check of the lock-free protocol (remote push/detach, ring, doorbell)
# with loom, on the real slab.rs and ring.rs; separate target dir.
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release --test loom

# The library with zones picked by CPU number even where the kernel has
# mm_cid (what runs on Linux < 6.3), for the C suite's *.cpu_ids runs.
CPU_IDS_SO := target/cpu-ids/release/libslaballoc.so
build-cpu-ids:
	CARGO_TARGET_DIR=target/cpu-ids $(CARGO) rustc --release --lib --crate-type cdylib -- --cfg slaballoc_nostd --cfg slaballoc_cpu_ids

test-c: build build-cpu-ids slabtop
	CPU_IDS_SO=$(CURDIR)/$(CPU_IDS_SO) SLABTOP=$(CURDIR)/$(SLABTOP) bash c-tests/run.sh

test-install: build slabtop
	bash c-tests/install.sh

test-config: build slabtop
	SLABTOP=$(CURDIR)/$(SLABTOP) bash c-tests/config.sh

clippy:
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) clippy --release --all-targets --manifest-path tools/slabtop/Cargo.toml -- -D warnings

fmt:
	$(CARGO) fmt --check
	$(CARGO) fmt --check --manifest-path tools/slabtop/Cargo.toml

clean:
	$(CARGO) clean
	rm -rf c-tests/build bench/build

install: build slabtop
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(SO) $(DESTDIR)$(PREFIX)/lib/libslaballoc.so
	install -m 644 target/release/libslaballoc.a $(DESTDIR)$(PREFIX)/lib/libslaballoc.a
	install -m 644 include/slaballoc.h $(DESTDIR)$(PREFIX)/include/slaballoc.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' slaballoc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/slaballoc.pc
	sed -e 's|@LIBDIR@|$(PREFIX)/lib|g' tools/slabrun > $(DESTDIR)$(PREFIX)/bin/slabrun
	chmod 755 $(DESTDIR)$(PREFIX)/bin/slabrun
	install -m 755 $(SLABTOP) $(DESTDIR)$(PREFIX)/bin/slabtop

include bench/bench.mk
