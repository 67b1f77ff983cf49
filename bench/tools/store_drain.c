/* store_drain: does a malloc+free pair wait for the program's own stores
 * still in flight?
 *
 *     cc -O2 -o store_drain bench/tools/store_drain.c
 *     LD_PRELOAD=lib.so ./store_drain [stores] [size]
 *
 * Before each pair the loop makes `stores` (default 4) one-byte stores to
 * random lines of a 256 MiB array, which miss every cache, then mallocs
 * and frees one block of `size` bytes (default 32768). A lock-prefixed
 * instruction on the allocator's path (a lock, a compare-and-swap, an
 * atomic add) cannot complete before the stores ahead of it leave the
 * store buffer, so its pair costs about the stores' miss latency more;
 * a path without one (rseq sections, thread-local lists) does not. Prints
 * the ns a pair costs: the loop's time less the same loop without the
 * pair. (Twenty-ninth session, docs/experiments.md, medians of 5 runs:
 * with 4 stores a 32 KiB pair cost 87 ns under slaballoc's zone try-lock,
 * 23 under snmalloc, 9 under tcmalloc, 48 under mimalloc 3; 24, 7, 6 and
 * 13 without stores. A 64-byte pair, on slaballoc's rseq path: 10 ns
 * either way.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int k = argc > 1 ? atoi(argv[1]) : 4;
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : 32768;
    size_t n = 256u << 20;
    char *a = malloc(n);
    if (!a) return 1;
    for (size_t i = 0; i < n; i += 4096) a[i] = 1;
    uint64_t x = 88172645463325252ull;
    const int iters = 1000000;
    double t0 = now();
    for (int i = 0; i < iters; i++)
        for (int j = 0; j < k; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            a[(x % (n / 64)) * 64] = (char)j;
        }
    double t1 = now();
    for (int i = 0; i < iters; i++) {
        for (int j = 0; j < k; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            a[(x % (n / 64)) * 64] = (char)j;
        }
        char *p = malloc(size);
        __asm__ volatile("" : "+r"(p));
        if (!p) return 1;
        p[0] = 1;
        free(p);
    }
    double t2 = now();
    printf("stores=%d size=%zu: stores alone %.1f ns, with the pair %.1f ns, the pair %.1f ns\n", k,
           size, (t1 - t0) * 1e9 / iters, (t2 - t1) * 1e9 / iters,
           ((t2 - t1) - (t1 - t0)) * 1e9 / iters);
    return 0;
}
