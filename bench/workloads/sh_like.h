/* Shared body of sh6_like and sh8_like, in the spirit of the classic
 * sh6bench/sh8bench programs (written from scratch). T threads (argv[2],
 * default 4, as the classic runs use). Each thread does rounds; a round
 * allocates a batch of blocks of mixed sizes (uniform in MINSZ..MAXSZ),
 * fills them, then frees them in one of three orders, round by round:
 * allocation order, reverse order, or every other block first and the rest
 * after. Every HANDOFF-th batch is instead pushed to the next thread's
 * mailbox (mutex + list; at most 8 batches wait there, a thread whose
 * neighbour's mailbox is full empties its own and yields) and freed there
 * (each thread empties its mailbox once a round), in reverse order, after
 * checking.
 * Half of the blocks of a locally freed batch survive into the next round
 * (freed with it), so batches overlap. ops = blocks allocated. */
#include "common.h"
#include <stdatomic.h>

typedef struct { void *p; size_t n; uint64_t t; } blk_t;
typedef struct shbatch { struct shbatch *next; int n; blk_t b[]; } shbatch_t;
typedef struct {
    pthread_mutex_t mu;
    shbatch_t *mail;
    int pending;               /* batches in mail */
    _Alignas(64) uint64_t allocated;
} shthread_t;

#define MAX_MAIL 8
static shthread_t *shth;
static int shT;
static uint64_t sh_rounds;
static _Atomic int sh_done;

static void sh_free_batch(shbatch_t *s, int order) {
    int n = s->n;
    if (order == 0) {
        for (int i = 0; i < n; i++) { check_or_die(WL, s->b[i].p, s->b[i].n, s->b[i].t); free(s->b[i].p); }
    } else if (order == 1) {
        for (int i = n; i-- > 0;) { check_or_die(WL, s->b[i].p, s->b[i].n, s->b[i].t); free(s->b[i].p); }
    } else {
        for (int i = 0; i < n; i += 2) { check_or_die(WL, s->b[i].p, s->b[i].n, s->b[i].t); free(s->b[i].p); }
        for (int i = 1; i < n; i += 2) { check_or_die(WL, s->b[i].p, s->b[i].n, s->b[i].t); free(s->b[i].p); }
    }
    free(s);
}

static void sh_drain(shthread_t *me) {
    pthread_mutex_lock(&me->mu);
    shbatch_t *m = me->mail; me->mail = NULL; me->pending = 0;
    pthread_mutex_unlock(&me->mu);
    while (m) { shbatch_t *nx = m->next; sh_free_batch(m, 1); m = nx; }
}

static void *sh_worker(void *arg) {
    long id = (long)arg;
    shthread_t *me = &shth[id], *next = &shth[(id + 1) % shT];
    rng_t r; rng_seed(&r, 900 + (uint64_t)id);
    shbatch_t *keep = NULL;            /* survivors of the previous round */
    for (uint64_t round = 0; round < sh_rounds; round++) {
        int n = (int)rng_range(&r, BATCH_MIN, BATCH_MAX);
        shbatch_t *s = xmalloc(WL, sizeof(shbatch_t) + (size_t)n * sizeof(blk_t));
        s->n = n;
        for (int i = 0; i < n; i++) {
            blk_t *b = &s->b[i];
            b->n = rng_range(&r, MINSZ, MAXSZ);
            b->t = rng_next(&r);
            b->p = xmalloc(WL, b->n);
            fill(b->p, b->n, b->t);
        }
        me->allocated += (uint64_t)n;
        if (keep) { sh_free_batch(keep, (int)(round % 3)); keep = NULL; }
        if (round % HANDOFF == HANDOFF - 1 && shT > 1) {
            /* at most MAX_MAIL batches wait in a mailbox (else the memory
             * would grow with the time the next thread is descheduled);
             * while we wait, we empty our own, so waits cannot cycle */
            for (;;) {
                pthread_mutex_lock(&next->mu);
                if (next->pending < MAX_MAIL) break;
                pthread_mutex_unlock(&next->mu);
                sh_drain(me);
                sched_yield();
            }
            s->next = next->mail; next->mail = s; next->pending++;
            pthread_mutex_unlock(&next->mu);
        } else {
            /* free the first half now in this round's order, keep the rest */
            int h = n / 2;
            shbatch_t *rest = xmalloc(WL, sizeof(shbatch_t) + (size_t)(n - h) * sizeof(blk_t));
            rest->n = n - h;
            memcpy(rest->b, s->b + h, (size_t)(n - h) * sizeof(blk_t));
            s->n = h;
            sh_free_batch(s, (int)((round + 1) % 3));
            keep = rest;
        }
        sh_drain(me);                  /* free what the previous thread handed us */
    }
    if (keep) sh_free_batch(keep, 0);
    atomic_fetch_add(&sh_done, 1);
    while (atomic_load(&sh_done) < shT) { sh_drain(me); sched_yield(); }
    sh_drain(me);                      /* nobody pushes any more */
    return NULL;
}

static int sh_main(int argc, char **argv, uint64_t base_rounds) {
    double scale = arg_scale(argc, argv);
    shT = arg_threads(argc, argv, 4);
    sh_rounds = (uint64_t)((double)base_rounds * scale); if (sh_rounds < 1) sh_rounds = 1;
    shth = calloc((size_t)shT, sizeof(shthread_t));
    for (int i = 0; i < shT; i++) pthread_mutex_init(&shth[i].mu, NULL);
    pthread_t th[shT];
    double t0 = now_sec();
    for (long i = 0; i < shT; i++) pthread_create(&th[i], NULL, sh_worker, (void *)i);
    for (int i = 0; i < shT; i++) pthread_join(th[i], NULL);
    double t1 = now_sec();
    uint64_t ops = 0;
    for (int i = 0; i < shT; i++) ops += shth[i].allocated;
    report(WL, shT, ops, t1 - t0);
    return 0;
}
