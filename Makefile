# slaballoc — build, run, test, compare.
#
#   make            build target/release/libslaballoc.{so,a} (= cargo build --release)
#   make header     regenerate include/slaballoc.h from ffi/src/lib.rs
#   make run        the main job: real programs under the library, with its stats
#   make test       every test: Rust unit tests, then the C suite (c-tests/run.sh)
#   make compare    side-by-side benchmark against glibc, jemalloc, tcmalloc, mimalloc
#   make install PREFIX=/usr/local

SO      := target/release/libslaballoc.so
CARGO   ?= cargo
PREFIX  ?= /usr/local

.PHONY: all build header run test test-rust test-loom test-header test-c test-install test-config clippy fmt clean install

all: build

# The workspace's default members: the allocator crate (src/) and the C
# library (ffi/, built as target/release/libslaballoc.so and .a with free and
# malloc first in .text: see ffi/build.rs).
build:
	$(CARGO) build --release

# include/slaballoc.h from ffi/src/lib.rs (cbindgen, through xtask/).
header:
	$(CARGO) run -q -p xtask -- header

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

test: test-rust test-loom test-header test-c test-install test-config

test-rust:
	$(CARGO) test --release

# The checked-in header matches the FFI crate.
test-header:
	$(CARGO) run -q -p xtask -- header --check

# Model check of the lock-free protocol (remote push/detach, ring, doorbell)
# with loom, on the real slab.rs and ring.rs; separate target dir.
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release --test loom

# The library with zones picked by CPU number even where the kernel has
# mm_cid (what runs on Linux < 6.3), for the C suite's *.cpu_ids runs.
CPU_IDS_SO := target/cpu-ids/release/libslaballoc.so
build-cpu-ids:
	CARGO_TARGET_DIR=target/cpu-ids $(CARGO) build --release -p slaballoc-ffi --features cpu-ids

test-c: build build-cpu-ids
	CPU_IDS_SO=$(CURDIR)/$(CPU_IDS_SO) bash c-tests/run.sh

test-install: build
	bash c-tests/install.sh

test-config: build
	bash c-tests/config.sh

clippy:
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --check

clean:
	$(CARGO) clean
	rm -rf c-tests/build bench/build

install: build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(SO) $(DESTDIR)$(PREFIX)/lib/libslaballoc.so
	install -m 644 target/release/libslaballoc.a $(DESTDIR)$(PREFIX)/lib/libslaballoc.a
	install -m 644 include/slaballoc.h $(DESTDIR)$(PREFIX)/include/slaballoc.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' slaballoc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/slaballoc.pc
	sed -e 's|@LIBDIR@|$(PREFIX)/lib|g' tools/slabrun > $(DESTDIR)$(PREFIX)/bin/slabrun
	chmod 755 $(DESTDIR)$(PREFIX)/bin/slabrun

include bench/bench.mk
