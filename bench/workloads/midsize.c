/* midsize: 16 KiB..1 MiB blocks (log-uniform), random replace in a table
 * of 64 slots. */
#include "common.h"
#define WL "midsize"
#define SLOTS 64

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    uint64_t ops = (uint64_t)(150000 * scale);
    slot_t tab[SLOTS];
    memset(tab, 0, sizeof tab);
    rng_t r; rng_seed(&r, 3);
    double t0 = now_sec();
    for (uint64_t i = 0; i < ops; i++) {
        slot_t *s = &tab[rng_below(&r, SLOTS)];
        if (s->p) { check_or_die(WL, s->p, s->n, s->t); free(s->p); }
        /* log-uniform in [16 KiB, 1 MiB] */
        s->n = (size_t)(16384.0 * exp(rng_unit(&r) * log(64.0)));
        s->t = rng_next(&r);
        s->p = xmalloc(WL, s->n);
        fill(s->p, s->n, s->t);
    }
    for (int i = 0; i < SLOTS; i++)
        if (tab[i].p) { check_or_die(WL, tab[i].p, tab[i].n, tab[i].t); free(tab[i].p); }
    double t1 = now_sec();
    report(WL, 1, ops, t1 - t0);
    return 0;
}
