/* larson_like: a larson-style server simulation (written from scratch after
 * what the classic `larson` benchmark does). T lineages (argv[2], default
 * 2); each owns an array of 1000 slots, filled with blocks of 8..1000 B.
 * A thread of a lineage repeatedly picks a random slot, checks and frees its
 * block and allocates a new block of a random size into it. After a number
 * of replacements it starts its successor thread, hands it the array and
 * exits, so the successor frees blocks that a thread which no longer exists
 * allocated (40 generations per lineage). ops = replacements. */
#include "common.h"
#define WL "larson_like"
#define SLOTS 1000
#define GENS 40
#define MINSZ 8
#define MAXSZ 1000

typedef struct { void *p; size_t n; uint64_t t; } lslot_t;
typedef struct {
    lslot_t slot[SLOTS];
    rng_t r;
    int gen;
    uint64_t per_gen, done;
    pthread_t tid[GENS];   /* tid[g + 1] is written by generation g only */
} lineage_t;

static void *generation(void *arg) {
    lineage_t *L = arg;
    for (uint64_t i = 0; i < L->per_gen; i++) {
        lslot_t *s = &L->slot[rng_below(&L->r, SLOTS)];
        check_or_die(WL, s->p, s->n, s->t);
        free(s->p);
        s->n = rng_range(&L->r, MINSZ, MAXSZ);
        s->t = rng_next(&L->r);
        s->p = xmalloc(WL, s->n);
        fill(s->p, s->n, s->t);
    }
    L->done += L->per_gen;
    int g = L->gen++;
    if (g + 1 < GENS && pthread_create(&L->tid[g + 1], NULL, generation, L) != 0)
        die(WL, "malloc returned NULL (pthread_create failed)", L, 0);
    return NULL;   /* main joins tid[g] and then reads tid[g + 1] */
}

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    int T = arg_threads(argc, argv, 2);
    uint64_t per_lineage = (uint64_t)(12000000 * scale);
    lineage_t *lin = calloc((size_t)T, sizeof(lineage_t));
    for (int l = 0; l < T; l++) {               /* main thread fills the arrays */
        rng_seed(&lin[l].r, 1000 + (uint64_t)l);
        for (int i = 0; i < SLOTS; i++) {
            lslot_t *s = &lin[l].slot[i];
            s->n = rng_range(&lin[l].r, MINSZ, MAXSZ);
            s->t = rng_next(&lin[l].r);
            s->p = xmalloc(WL, s->n);
            fill(s->p, s->n, s->t);
        }
        lin[l].per_gen = per_lineage / GENS; if (!lin[l].per_gen) lin[l].per_gen = 1;
    }
    double t0 = now_sec();
    for (int l = 0; l < T; l++) pthread_create(&lin[l].tid[0], NULL, generation, &lin[l]);
    uint64_t ops = 0;
    for (int l = 0; l < T; l++) {               /* follow each chain of generations */
        for (int g = 0; g < GENS; g++) pthread_join(lin[l].tid[g], NULL);
        ops += lin[l].done;
    }
    for (int l = 0; l < T; l++)
        for (int i = 0; i < SLOTS; i++) { lslot_t *s = &lin[l].slot[i]; check_or_die(WL, s->p, s->n, s->t); free(s->p); }
    double t1 = now_sec();
    if (ops != (uint64_t)T * GENS * lin[0].per_gen) die(WL, "content mismatch (lost generations)", NULL, (size_t)ops);
    free(lin);
    report(WL, T, ops, t1 - t0);
    return 0;
}
