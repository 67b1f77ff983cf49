/* mixed: one thread, power-law sizes 8 B..64 KiB, random lifetimes:
 * a table of 10k live objects, each op replaces a random slot. */
#include "common.h"
#define WL "mixed"
#define SLOTS 10000
typedef struct { void *p; size_t n; uint64_t t; } slot_t;

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    uint64_t ops = (uint64_t)(3000000 * scale);
    slot_t *tab = calloc(SLOTS, sizeof(slot_t));
    rng_t r; rng_seed(&r, 1);
    double t0 = now_sec();
    for (uint64_t i = 0; i < ops; i++) {
        slot_t *s = &tab[rng_below(&r, SLOTS)];
        if (s->p) { check_or_die(WL, s->p, s->n, s->t); free(s->p); }
        s->n = size_powerlaw(&r, 8, 65536);
        s->t = rng_next(&r);
        s->p = xmalloc(WL, s->n);
        fill(s->p, s->n, s->t);
    }
    for (int i = 0; i < SLOTS; i++)
        if (tab[i].p) { check_or_die(WL, tab[i].p, tab[i].n, tab[i].t); free(tab[i].p); }
    double t1 = now_sec();
    free(tab);
    report(WL, 1, ops, t1 - t0);
    return 0;
}
