# Benchmark targets. Include from the top-level Makefile with
#     include bench/bench.mk
# (paths are relative to the repository root, where make runs).
# A failing `make build` does not stop the comparison: slaballoc is
# then simply left out (or tested in whatever state target/release has).
#
#   make compare          full comparison, 20 workloads x 7 allocators x 5 runs (~20 min on 2 cores)
#   make idle-rss         resident size after freeing 800 MiB and idling, per allocator
#                         (bench/idle_rss.sh -> bench/results/idle_rss.md)
#   make compare QUICK=1  1 run, scale 0.2 (~30 s, plus apt-get and peer builds the first time)
#   make peers            build mimalloc3 and snmalloc (bench/peers/build.sh; compare does it too)
#   make compare-quick    same as QUICK=1
#   make notify-study     the 100x study -> bench/results/notify.md
#   make callgrind        instructions per malloc+free -> bench/results/callgrind.md
#   make bench-criterion  cargo bench (criterion, sa_* API)
#   make bench-clean      remove bench/build

PYTHON ?= python3

.PHONY: compare compare-quick peers notify-study callgrind bench-criterion bench-clean idle-rss

compare:
	-$(MAKE) build
	$(PYTHON) bench/compare.py

peers:
	bash bench/peers/build.sh

compare-quick:
	-$(MAKE) build
	QUICK=1 $(PYTHON) bench/compare.py

idle-rss:
	-$(MAKE) build
	bash bench/idle_rss.sh

notify-study:
	$(MAKE) build
	sh bench/notify_study.sh

callgrind:
	-$(MAKE) build
	bash bench/callgrind.sh

bench-criterion:
	cargo bench --bench alloc

bench-clean:
	rm -rf bench/build
