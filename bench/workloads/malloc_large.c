/* malloc_large: large blocks of 5..25 MiB, up to 20 live, modelled on
 * mimalloc-bench's malloc-large (each step makes a new block for a random
 * slot, zeroes all of it as `std::make_unique<char[]>` does, and only then
 * frees the block the slot held). Image buffers, database pages, parser
 * arenas: an allocator that maps every block afresh pays a page fault per
 * 4 KiB; one that reuses freed blocks does not.
 * Contents are checked before every free (one word a page, see fill()).
 * ops = number of malloc calls. */
#include "common.h"
#define WL "malloc_large"
#define MiB (1024u * 1024u)
#define SLOTS 20

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    uint64_t steps = (uint64_t)(400 * scale);
    if (steps < 1) steps = 1;
    slot_t tab[SLOTS];
    memset(tab, 0, sizeof tab);
    rng_t r; rng_seed(&r, 42);
    double t0 = now_sec();
    for (uint64_t i = 0; i < steps; i++) {
        slot_t *s = &tab[rng_below(&r, SLOTS)];
        size_t n = rng_range(&r, 5 * MiB, 25 * MiB);
        uint64_t t = rng_next(&r);
        void *p = xmalloc(WL, n);
        memset(p, 0, n);
        fill(p, n, t);
        if (s->p) { check_or_die(WL, s->p, s->n, s->t); free(s->p); }
        s->p = p; s->n = n; s->t = t;
    }
    for (int i = 0; i < SLOTS; i++)
        if (tab[i].p) { check_or_die(WL, tab[i].p, tab[i].n, tab[i].t); free(tab[i].p); }
    double t1 = now_sec();
    report(WL, 1, steps, t1 - t0);
    return 0;
}
