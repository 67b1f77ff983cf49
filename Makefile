# slaballoc — build, run, test, compare.
#
#   make            build target/release/libslaballoc.{so,a} (= cargo build --release)
#   make header     regenerate include/slaballoc.h from ffi/src/lib.rs
#   make run        the main job: real programs under the library, with its stats
#   make test       every test: Rust unit tests, then the C suite (c-tests/run.sh), then the docs' counts and links
#   make compare    side-by-side benchmark against glibc, jemalloc, tcmalloc, mimalloc
#   make install PREFIX=/usr/local

SO      := target/release/libslaballoc.so
CARGO   ?= cargo
PREFIX  ?= /usr/local

.PHONY: all build header tools run test test-rust test-tools test-loom test-header test-layers test-c test-install test-config test-docs clippy fmt clean install

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
# library, printing slaballoc's counters at exit; output checked against glibc
# (tools/run-main.sh, with its SQL and Python beside it).
run: build
	@bash tools/run-main.sh $(CURDIR)/$(SO)

test: test-rust test-tools test-loom test-header test-layers test-c test-install test-config test-docs

# The tools, workspace members built on demand: slabtop (the live view) and
# slabprof (heap profiles to top tables, flame graphs, pprof).
SLABTOP  := target/tools/slabtop
SLABPROF := target/tools/slabprof
tools:
	$(CARGO) build --profile tools -p slabtop -p slabprof

test-tools:
	$(CARGO) test --release -p slabtop -p slabprof

test-rust:
	$(CARGO) test --release

# Modules depend one way: no module uses one in a layer above it
# (tools/check-layers.py; --graph prints the edges).
test-layers:
	python3 tools/check-layers.py

# The checked-in header matches the FFI crate.
test-header:
	$(CARGO) run -q -p xtask -- header --check

# Model check of the lock-free protocol (remote push/detach, ring, doorbell)
# with loom, on the real slab/ and ring.rs; separate target dir.
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release --test loom

# The library with zones picked by CPU number even where the kernel has
# mm_cid (what runs on Linux < 6.3), for the C suite's *.cpu_ids runs.
CPU_IDS_SO := target/cpu-ids/release/libslaballoc.so
build-cpu-ids:
	CARGO_TARGET_DIR=target/cpu-ids $(CARGO) build --release -p slaballoc-ffi --features cpu-ids

test-c: build build-cpu-ids tools
	CPU_IDS_SO=$(CURDIR)/$(CPU_IDS_SO) SLABTOP=$(CURDIR)/$(SLABTOP) SLABPROF=$(CURDIR)/$(SLABPROF) bash c-tests/run.sh

test-install: build tools
	bash c-tests/install.sh

test-config: build build-cpu-ids tools
	CPU_IDS_SO=$(CURDIR)/$(CPU_IDS_SO) SLABTOP=$(CURDIR)/$(SLABTOP) bash c-tests/config.sh

# The documentation against the tree: RELIABILITY.md's counts (Rust tests,
# loom models, C test programs, invalid-free cases) and every link of the
# Markdown files (tools/check-docs.py; --write regenerates the test inventory).
test-docs:
	python3 tools/check-docs.py

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all --check

clean:
	$(CARGO) clean
	rm -rf c-tests/build bench/build

install: build tools
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(SO) $(DESTDIR)$(PREFIX)/lib/libslaballoc.so
	install -m 644 target/release/libslaballoc.a $(DESTDIR)$(PREFIX)/lib/libslaballoc.a
	install -m 644 include/slaballoc.h $(DESTDIR)$(PREFIX)/include/slaballoc.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' slaballoc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/slaballoc.pc
	sed -e 's|@LIBDIR@|$(PREFIX)/lib|g' tools/slabrun > $(DESTDIR)$(PREFIX)/bin/slabrun
	chmod 755 $(DESTDIR)$(PREFIX)/bin/slabrun
	install -m 755 $(SLABTOP) $(DESTDIR)$(PREFIX)/bin/slabtop
	install -m 755 $(SLABPROF) $(DESTDIR)$(PREFIX)/bin/slabprof

include bench/bench.mk
