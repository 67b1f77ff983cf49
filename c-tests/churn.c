/* churn.c - thread churn: blocks outlive their threads, TLS destructors free.
 *
 * NTHREADS (default 2000, argv[1] overrides) short-lived threads, at most 8
 * alive at a time, pinned alternately to CPU 0 and CPU 1. Each thread:
 *   - mallocs ~200 blocks (16 B .. 8 KiB, some up to 128 KiB), frees some of
 *     them locally, hands 40 to the main thread, frees the rest at exit;
 *   - registers a pthread_key destructor that verifies and frees a block
 *     (and on its first call mallocs a new one, so a second round runs), and
 *     a __cxa_thread_atexit_impl destructor (C++ thread_local style) that frees.
 * The main thread (CPU 0) checks every handed-over block after the join and
 * passes it to a freer thread pinned to CPU 1, which checks again and frees
 * it; one block in ten is kept until the very end.
 */
#define _GNU_SOURCE
#include "common.h"

#include <malloc.h>
#include <stdatomic.h>

#define BATCH 8
#define HAND 40

extern int __cxa_thread_atexit_impl(void (*)(void *), void *, void *);
extern void *__dso_handle;

struct blk {
    void *p;
    size_t n;
    uint64_t seed;
};

static int nthreads;
static struct blk *handed;       /* nthreads * HAND */
static _Atomic long errors;
static _Atomic long key_dtor_calls, cxa_dtor_calls;
static pthread_key_t key;

/* freer thread queue: mutex + condvar, bounded by the batch structure */
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static struct blk *queue;
static size_t qhead, qtail, qcap;
static int qdone;

static void err(const char *what, void *p, size_t n)
{
    if (atomic_fetch_add(&errors, 1) < 20) fprintf(stderr, "churn: %s: %p (%zu bytes)\n", what, p, n);
}

static void key_dtor(void *v)
{
    struct blk *b = v;
    atomic_fetch_add(&key_dtor_calls, 1);
    if (verify(b->p, b->n, b->seed) != (size_t)-1) err("key dtor block corrupted", b->p, b->n);
    free(b->p);
    int second = b->seed & 1;
    free(b);
    if (!second) { /* destructor mallocs and re-arms: glibc runs another round */
        struct blk *nb = malloc(sizeof *nb);
        nb->n = 333;
        nb->p = malloc(nb->n);
        nb->seed = 77777 | 1;
        fill(nb->p, nb->n, nb->seed);
        pthread_setspecific(key, nb);
    }
}

static void cxa_dtor(void *v)
{
    struct blk *b = v;
    atomic_fetch_add(&cxa_dtor_calls, 1);
    if (verify(b->p, b->n, b->seed) != (size_t)-1) err("thread_atexit block corrupted", b->p, b->n);
    free(b->p);
    free(b);
}

static void *thread_fn(void *arg)
{
    int id = (int)(intptr_t)arg;
    pin_to(id & 1);
    uint64_t rng = 0x1000 + (uint64_t)id * 0x9E37;
    enum { M = 200 };
    struct blk mine[M];
    for (int i = 0; i < M; i++) {
        uint64_t r = xorshift64(&rng);
        size_t n = (r % 16 == 0) ? (size_t)(r >> 8) % 131072 : 16 + (size_t)(r >> 8) % 8177;
        mine[i].n = n;
        mine[i].seed = ((uint64_t)id << 20) | (uint64_t)i;
        mine[i].p = (i % 5 == 0) ? calloc(1, n) : malloc(n);
        if (!mine[i].p) { err("malloc failed", NULL, n); mine[i].n = 0; continue; }
        fill(mine[i].p, n, mine[i].seed);
        if (i % 4 == 3) { /* free some locally right away */
            int k = i - 1 - (int)(r % 3);
            if (mine[k].p) {
                if (verify(mine[k].p, mine[k].n, mine[k].seed) != (size_t)-1) err("local block corrupted", mine[k].p, mine[k].n);
                free(mine[k].p);
                mine[k].p = NULL;
            }
        }
    }
    /* hand HAND live blocks to main */
    int h = 0;
    for (int i = M - 1; i >= 0 && h < HAND; i--)
        if (mine[i].p) {
            handed[(size_t)id * HAND + h++] = mine[i];
            mine[i].p = NULL;
        }
    /* TLS destructors */
    struct blk *kb = malloc(sizeof *kb);
    kb->n = 1000 + (size_t)id;
    kb->p = malloc(kb->n);
    kb->seed = (uint64_t)id << 1;
    fill(kb->p, kb->n, kb->seed);
    pthread_setspecific(key, kb);
    struct blk *cb = malloc(sizeof *cb);
    cb->n = 5000 + (size_t)id;
    cb->p = malloc(cb->n);
    cb->seed = (uint64_t)id * 3 + 5;
    fill(cb->p, cb->n, cb->seed);
    __cxa_thread_atexit_impl(cxa_dtor, cb, &__dso_handle);
    /* the rest are freed at exit */
    for (int i = 0; i < M; i++)
        if (mine[i].p) {
            if (verify(mine[i].p, mine[i].n, mine[i].seed) != (size_t)-1) err("block corrupted", mine[i].p, mine[i].n);
            free(mine[i].p);
        }
    return NULL;
}

static void *freer(void *arg)
{
    (void)arg;
    pin_to(1);
    for (;;) {
        pthread_mutex_lock(&qlock);
        while (qhead == qtail && !qdone) pthread_cond_wait(&qcond, &qlock);
        if (qhead == qtail && qdone) {
            pthread_mutex_unlock(&qlock);
            return NULL;
        }
        struct blk b = queue[qhead++ % qcap];
        pthread_mutex_unlock(&qlock);
        if (verify(b.p, b.n, b.seed) != (size_t)-1) err("block corrupted in freer", b.p, b.n);
        free(b.p);
    }
}

static void give(struct blk b)
{
    pthread_mutex_lock(&qlock);
    queue[qtail++ % qcap] = b;
    pthread_cond_signal(&qcond);
    pthread_mutex_unlock(&qlock);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    nthreads = argc > 1 ? atoi(argv[1]) : 2000;
    pin_to(0);
    handed = calloc((size_t)nthreads * HAND, sizeof *handed);
    qcap = (size_t)nthreads * HAND + 1;
    queue = malloc(qcap * sizeof *queue);
    if (!handed || !queue) DIE("oom");
    if (pthread_key_create(&key, key_dtor)) DIE("pthread_key_create");
    pthread_t fr;
    if (pthread_create(&fr, NULL, freer, NULL)) DIE("pthread_create");

    pthread_t th[BATCH];
    long kept = 0;
    for (int base = 0; base < nthreads; base += BATCH) {
        int cnt = nthreads - base < BATCH ? nthreads - base : BATCH;
        for (int i = 0; i < cnt; i++)
            if (pthread_create(&th[i], NULL, thread_fn, (void *)(intptr_t)(base + i))) DIE("pthread_create");
        for (int i = 0; i < cnt; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < cnt; i++) {
            int id = base + i;
            for (int h = 0; h < HAND; h++) {
                struct blk *b = &handed[(size_t)id * HAND + h];
                if (!b->p) continue;
                if (verify(b->p, b->n, b->seed) != (size_t)-1) err("handed block corrupted", b->p, b->n);
                if (id % 10 == 0) { kept++; continue; } /* outlive many more threads */
                give(*b);
                b->p = NULL;
            }
        }
    }
    pthread_mutex_lock(&qlock);
    qdone = 1;
    pthread_cond_signal(&qcond);
    pthread_mutex_unlock(&qlock);
    pthread_join(fr, NULL);
    for (size_t i = 0; i < (size_t)nthreads * HAND; i++)
        if (handed[i].p) {
            if (verify(handed[i].p, handed[i].n, handed[i].seed) != (size_t)-1) err("kept block corrupted", handed[i].p, handed[i].n);
            free(handed[i].p);
        }
    free(handed);
    free(queue);
    long kd = key_dtor_calls, cd = cxa_dtor_calls;
    printf("churn: threads=%d kept_blocks=%ld key_dtor_calls=%ld cxa_dtor_calls=%ld errors=%ld\n", nthreads, kept,
           kd, cd, (long)errors);
    if (kd != 2L * nthreads) err("pthread_key destructor call count", NULL, (size_t)kd);
    if (cd != nthreads) err("__cxa_thread_atexit destructor call count", NULL, (size_t)cd);
    if (errors) {
        printf("churn: FAILED\n");
        return 1;
    }
    printf("churn: ok\n");
    return 0;
}
