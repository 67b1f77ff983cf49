/* idle_rss: does memory go back by itself once a program is done with it?
 * Allocates about MIB MiB (argv[1], default 800) of small blocks (16 B ..
 * 1 KiB, touched), frees them all (argv[3]: `rev` last allocated first, the
 * default; `fwd` in allocation order; `rand` shuffled), then idles (no
 * malloc or free) for SECS seconds (argv[2], default 5), printing its
 * resident size (/proc/self/statm) at the peak, right after the frees and
 * after every second of idling:
 *     idle_rss peak_kb=.. freed_kb=.. idle1_kb=.. ... idle5_kb=..
 * Not a timed workload (it sleeps): bench/idle_rss.sh runs it under each
 * allocator. Single-threaded, so no allocator can blame remote frees. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static size_t rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    size_t pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%zu %zu", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (size_t)sysconf(_SC_PAGESIZE) / 1024;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 800;
    int secs = argc > 2 ? atoi(argv[2]) : 5;
    const char *order = argc > 3 ? argv[3] : "rev";
    size_t target = mib << 20, total = 0, n = 0, cap = target / 256 + 1;
    void **v = malloc(cap * sizeof *v);
    if (!v) return 3;
    unsigned long long x = 88172645463325252ull;
    while (total < target && n < cap) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t sz = 16 + x % 1009;
        char *p = malloc(sz);
        if (!p) return 3;
        memset(p, (int)(n & 0x7f) | 1, sz);
        v[n++] = p;
        total += sz;
    }
    size_t peak = rss_kb();
    if (!strcmp(order, "rand")) /* shuffle (Fisher-Yates), tags kept in the blocks */
        for (size_t i = n - 1; i > 0; i--) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            size_t j = x % (i + 1);
            void *t = v[i]; v[i] = v[j]; v[j] = t;
        }
    for (size_t k = 0; k < n; k++) {
        size_t i = !strcmp(order, "rev") ? n - 1 - k : k;
        char *p = v[i];
        if (!(p[0] & 1)) return 2;
        free(p);
    }
    free(v);
    printf("idle_rss order=%s blocks=%zu peak_kb=%zu freed_kb=%zu", order, n, peak, rss_kb());
    fflush(stdout);
    for (int s = 1; s <= secs; s++) {
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        printf(" idle%d_kb=%zu", s, rss_kb());
        fflush(stdout);
    }
    printf("\n");
    return 0;
}
