/* Shared helpers for the slaballoc benchmark workloads.
 *
 * Every workload:
 *   - takes optional argv[1] = scale (float, default 1.0) and argv[2] = threads;
 *   - writes a pattern into what it allocates and verifies it before free,
 *     exiting with status 2 on a mismatch (3 on a NULL from malloc);
 *   - prints exactly one line on stdout:
 *       workload=NAME threads=T ops=N seconds=S
 *     where S is CLOCK_MONOTONIC time around the work only.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64* PRNG, one state per thread. */
typedef struct { uint64_t s; } rng_t;
static inline void rng_seed(rng_t *r, uint64_t seed) {
    r->s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (!r->s) r->s = 1;
}
static inline uint64_t rng_next(rng_t *r) {
    uint64_t x = r->s;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static inline uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }
static inline double rng_unit(rng_t *r) {          /* (0,1] */
    return ((double)(rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi) { /* [lo,hi] */
    return lo + (size_t)rng_below(r, (uint64_t)(hi - lo + 1));
}

/* Power-law (Pareto, alpha = 0.7) size in [lo, hi]: most objects are small,
 * a long tail reaches hi. */
#include <math.h>
static inline size_t size_powerlaw(rng_t *r, size_t lo, size_t hi) {
    double s = (double)lo * pow(rng_unit(r), -1.0 / 0.7);
    if (s > (double)hi) s = (double)hi;
    return (size_t)s;
}

static inline void die(const char *wl, const char *what, void *p, size_t n) {
    fprintf(stderr, "workload=%s ERROR: %s (ptr=%p size=%zu)\n", wl, what, p, n);
    fflush(stderr);
    exit(what[0] == 'm' && what[1] == 'a' ? 3 : 2);
}

static inline void *xmalloc(const char *wl, size_t n) {
    void *p = malloc(n);
    if (!p) die(wl, "malloc returned NULL", p, n);
    return p;
}

/* Pattern: the 8-byte word w of an object with tag t holds wpat(t, w);
 * byte i holds byte (i & 7) of wpat(t, i >> 3) (little endian), so word and
 * byte writes agree wherever they overlap. */
static inline uint64_t wpat(uint64_t t, size_t w) { return t + (uint64_t)w * 0x9E3779B97F4A7C15ull; }
static inline uint8_t bpat(uint64_t t, size_t i) { return (uint8_t)(wpat(t, i >> 3) >> ((i & 7) * 8)); }
static inline void wput(uint8_t *b, size_t w, uint64_t t) { uint64_t v = wpat(t, w); memcpy(b + w * 8, &v, 8); }
static inline int wok(const uint8_t *b, size_t w, uint64_t t) { uint64_t v; memcpy(&v, b + w * 8, 8); return v == wpat(t, w); }

/* Which bytes we write/check: every byte of small objects (<= 256 B);
 * for bigger ones the first 64 bytes, the last 16 bytes and one 8-byte
 * word in every 4 KiB page (so every page of the block is touched). */
#define FULL_LIMIT 256
static inline void fill(void *p, size_t n, uint64_t t) {
    uint8_t *b = (uint8_t *)p;
    if (n <= FULL_LIMIT) {
        size_t nw = n / 8;
        for (size_t w = 0; w < nw; w++) wput(b, w, t);
        for (size_t i = nw * 8; i < n; i++) b[i] = bpat(t, i);
        return;
    }
    for (size_t w = 0; w < 8; w++) wput(b, w, t);
    for (size_t pg = 4096; pg + 8 <= n; pg += 4096) wput(b, pg / 8, t);
    for (size_t i = n - 16; i < n; i++) b[i] = bpat(t, i);
}
static inline int check(const void *p, size_t n, uint64_t t) {
    const uint8_t *b = (const uint8_t *)p;
    if (n <= FULL_LIMIT) {
        size_t nw = n / 8;
        for (size_t w = 0; w < nw; w++) if (!wok(b, w, t)) return 0;
        for (size_t i = nw * 8; i < n; i++) if (b[i] != bpat(t, i)) return 0;
        return 1;
    }
    for (size_t w = 0; w < 8; w++) if (!wok(b, w, t)) return 0;
    for (size_t pg = 4096; pg + 8 <= n; pg += 4096) if (!wok(b, pg / 8, t)) return 0;
    for (size_t i = n - 16; i < n; i++) if (b[i] != bpat(t, i)) return 0;
    return 1;
}
static inline void check_or_die(const char *wl, const void *p, size_t n, uint64_t t) {
    if (!check(p, n, t)) die(wl, "content mismatch", (void *)p, n);
}

/* A self-describing object for cross-thread workloads: header holds size and
 * tag so whoever frees it can verify it. */
typedef struct { size_t size; uint64_t tag; } objhdr_t;
static inline void *obj_new(const char *wl, rng_t *r, size_t n) {
    if (n < sizeof(objhdr_t)) n = sizeof(objhdr_t);
    objhdr_t *h = (objhdr_t *)xmalloc(wl, n);
    h->size = n;
    h->tag = rng_next(r);
    fill((char *)h + sizeof(objhdr_t), n - sizeof(objhdr_t), h->tag);
    return h;
}
static inline void obj_free(const char *wl, void *o) {
    objhdr_t *h = (objhdr_t *)o;
    size_t n = h->size;
    if (n < sizeof(objhdr_t) || n > (1u << 30)) die(wl, "corrupt object header", o, n);
    check_or_die(wl, (char *)h + sizeof(objhdr_t), n - sizeof(objhdr_t), h->tag);
    free(o);
}

static inline double arg_scale(int argc, char **argv) {
    if (argc > 1) { double s = atof(argv[1]); if (s > 0) return s; }
    return 1.0;
}
static inline int arg_threads(int argc, char **argv, int dflt) {
    if (argc > 2) { int t = atoi(argv[2]); if (t > 0) return t; }
    return dflt;
}
static inline int ncpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
/* Pin the calling thread to cpu (mod online CPUs); ignore failures. */
static inline void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % ncpus(), &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline void report(const char *wl, int threads, uint64_t ops, double secs) {
    printf("workload=%s threads=%d ops=%llu seconds=%.6f\n", wl, threads,
           (unsigned long long)ops, secs);
    fflush(stdout);
}
/* A table of `slots` live objects; each of `ops` steps replaces a random slot
 * with a fresh block of a power-law size (8 B..64 KiB), checking the old
 * block's contents before freeing it. Used by `mixed` (one thread) and
 * `threads_noshare` (one private table per thread). */
typedef struct { void *p; size_t n; uint64_t t; } slot_t;
static inline void slot_table_run(const char *wl, uint64_t seed, int slots, uint64_t ops) {
    slot_t *tab = (slot_t *)calloc((size_t)slots, sizeof(slot_t));
    rng_t r; rng_seed(&r, seed);
    for (uint64_t i = 0; i < ops; i++) {
        slot_t *s = &tab[rng_below(&r, slots)];
        if (s->p) { check_or_die(wl, s->p, s->n, s->t); free(s->p); }
        s->n = size_powerlaw(&r, 8, 65536);
        s->t = rng_next(&r);
        s->p = xmalloc(wl, s->n);
        fill(s->p, s->n, s->t);
    }
    for (int i = 0; i < slots; i++)
        if (tab[i].p) { check_or_die(wl, tab[i].p, tab[i].n, tab[i].t); free(tab[i].p); }
    free(tab);
}

#endif
