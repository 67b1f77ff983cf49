/* shortlived: many short-lived small objects, 16..256 B: alloc, use, free
 * immediately; and small batches (1..32 objects) freed in LIFO or FIFO order. */
#include "common.h"
#define WL "shortlived"

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    uint64_t rounds = (uint64_t)(400000 * scale);
    rng_t r; rng_seed(&r, 2);
    void *bp[32]; size_t bn[32]; uint64_t bt[32];
    uint64_t ops = 0;
    double t0 = now_sec();
    for (uint64_t i = 0; i < rounds; i++) {
        /* immediate alloc/use/free */
        for (int k = 0; k < 8; k++) {
            size_t n = rng_range(&r, 16, 256);
            uint64_t t = rng_next(&r);
            void *p = xmalloc(WL, n);
            fill(p, n, t);
            check_or_die(WL, p, n, t);
            free(p);
        }
        /* a small batch */
        int b = 1 + (int)rng_below(&r, 32);
        for (int k = 0; k < b; k++) {
            bn[k] = rng_range(&r, 16, 256);
            bt[k] = rng_next(&r);
            bp[k] = xmalloc(WL, bn[k]);
            fill(bp[k], bn[k], bt[k]);
        }
        if (i & 1) {
            for (int k = b - 1; k >= 0; k--) { check_or_die(WL, bp[k], bn[k], bt[k]); free(bp[k]); }
        } else {
            for (int k = 0; k < b; k++) { check_or_die(WL, bp[k], bn[k], bt[k]); free(bp[k]); }
        }
        ops += 8 + (uint64_t)b;
    }
    double t1 = now_sec();
    report(WL, 1, ops, t1 - t0);
    return 0;
}
