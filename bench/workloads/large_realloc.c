/* large_realloc: very large blocks.
 *  phase A: a block starts at 1 MiB and grows by realloc in 1 MiB steps up to
 *           32 MiB (contents checked after every step), then is freed;
 *  phase B: several-MiB blocks (2..8 MiB) are freed and the same size is
 *           requested again right after (allocators that give the pages back
 *           to the kernel on free pay page faults here).
 * ops = number of malloc + realloc calls. */
#include "common.h"
#define WL "large_realloc"
#define MiB (1024u * 1024u)

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    int growths = (int)(8 * scale); if (growths < 1) growths = 1;
    int reuses = (int)(600 * scale); if (reuses < 1) reuses = 1;
    rng_t r; rng_seed(&r, 4);
    uint64_t ops = 0;
    double t0 = now_sec();
    /* phase A: realloc growth, two blocks growing interleaved so that
     * in-place growth is not always possible */
    for (int g = 0; g < growths; g++) {
        size_t na = 1 * MiB, nb = 1 * MiB;
        uint64_t ta = rng_next(&r), tb = rng_next(&r);
        char *a = xmalloc(WL, na), *b = xmalloc(WL, nb);
        fill(a, na, ta); fill(b, nb, tb);
        ops += 2;
        while (na < 32 * MiB) {
            size_t nn = na + MiB;
            char *a2 = realloc(a, nn);
            if (!a2) die(WL, "malloc returned NULL (realloc)", a, nn);
            check_or_die(WL, a2, na, ta);     /* old contents preserved */
            a = a2; na = nn; fill(a, na, ta);
            nn = nb + MiB + (size_t)rng_below(&r, MiB / 2);
            char *b2 = realloc(b, nn);
            if (!b2) die(WL, "malloc returned NULL (realloc)", b, nn);
            check_or_die(WL, b2, nb, tb);
            b = b2; nb = nn; fill(b, nb, tb);
            ops += 2;
        }
        check_or_die(WL, a, na, ta); free(a);
        check_or_die(WL, b, nb, tb); free(b);
    }
    /* phase B: free + immediately request several-MiB blocks again */
    enum { LIVE = 4 };
    void *p[LIVE]; size_t n[LIVE]; uint64_t t[LIVE];
    for (int i = 0; i < LIVE; i++) {
        n[i] = (2 + rng_below(&r, 7)) * MiB; t[i] = rng_next(&r);
        p[i] = xmalloc(WL, n[i]); fill(p[i], n[i], t[i]); ops++;
    }
    for (int k = 0; k < reuses; k++) {
        int i = (int)rng_below(&r, LIVE);
        check_or_die(WL, p[i], n[i], t[i]);
        free(p[i]);
        if (rng_below(&r, 4)) n[i] = (2 + rng_below(&r, 7)) * MiB; /* usually a new size */
        t[i] = rng_next(&r);
        p[i] = xmalloc(WL, n[i]);
        fill(p[i], n[i], t[i]);
        ops++;
    }
    for (int i = 0; i < LIVE; i++) { check_or_die(WL, p[i], n[i], t[i]); free(p[i]); }
    double t1 = now_sec();
    report(WL, 1, ops, t1 - t0);
    return 0;
}
