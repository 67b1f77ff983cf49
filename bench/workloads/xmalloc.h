/* Shared body of xmalloc_like and xmalloc_deep, in the spirit of the
 * classic xmalloc-test (`-w 2 -t 2 -s 64`; written from scratch): W
 * producers and W consumers (argv[2] = W, default 2, so 4 threads on 2
 * CPUs). A producer allocates self-describing objects (common.h) of
 * MINSZ..MAXSZ bytes into a batch of BATCH blocks and pushes the batch onto
 * a mutex-protected stack (last in, first out), waiting while MAX_PENDING
 * batches are pending; a consumer pops a batch, checks and frees its blocks,
 * then the batch. Every free is a free of another thread's block.
 * The includer defines WL, MINSZ, MAXSZ, BATCH, MAX_PENDING and SEED.
 * ops = blocks transferred; threads = 2W. */
#include "common.h"

typedef struct batch { struct batch *next; int n; void *obj[BATCH]; } batch_t;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER, not_full = PTHREAD_COND_INITIALIZER;
static batch_t *stack;
static int pending, producers_left;
static uint64_t per_producer;

static void *producer(void *arg) {
    long id = (long)arg;
    rng_t r; rng_seed(&r, SEED + (uint64_t)id);
    uint64_t made = 0;
    while (made < per_producer) {
        batch_t *b = xmalloc(WL, sizeof(batch_t));
        b->n = 0;
        while (b->n < BATCH && made < per_producer) {
            b->obj[b->n++] = obj_new(WL, &r, rng_range(&r, MINSZ, MAXSZ));
            made++;
        }
        pthread_mutex_lock(&mu);
        while (pending >= MAX_PENDING) pthread_cond_wait(&not_full, &mu);
        b->next = stack; stack = b; pending++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    if (--producers_left == 0) pthread_cond_broadcast(&not_empty);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void *consumer(void *arg) {
    uint64_t *freed = arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!stack && producers_left > 0) pthread_cond_wait(&not_empty, &mu);
        batch_t *b = stack;
        if (!b) { pthread_mutex_unlock(&mu); break; }
        stack = b->next; pending--;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&mu);
        for (int i = 0; i < b->n; i++) obj_free(WL, b->obj[i]);
        *freed += (uint64_t)b->n;
        free(b);
    }
    return NULL;
}

/* Moves `blocks` (times the scale) blocks from the producers to the
 * consumers and reports. */
static int xmalloc_main(int argc, char **argv, uint64_t blocks) {
    double scale = arg_scale(argc, argv);
    int W = arg_threads(argc, argv, 2);
    uint64_t total = (uint64_t)((double)blocks * scale);
    per_producer = total / (uint64_t)W; if (per_producer < 1) per_producer = 1;
    producers_left = W;
    pthread_t p[W], c[W];
    uint64_t freed[W];
    double t0 = now_sec();
    for (long i = 0; i < W; i++) {
        freed[i] = 0;
        pthread_create(&c[i], NULL, consumer, &freed[i]);
        pthread_create(&p[i], NULL, producer, (void *)i);
    }
    for (int i = 0; i < W; i++) pthread_join(p[i], NULL);
    for (int i = 0; i < W; i++) pthread_join(c[i], NULL);
    double t1 = now_sec();
    uint64_t n = 0;
    for (int i = 0; i < W; i++) n += freed[i];
    if (n != per_producer * (uint64_t)W) die(WL, "content mismatch (blocks lost)", NULL, (size_t)n);
    report(WL, 2 * W, n, t1 - t0);
    return 0;
}
