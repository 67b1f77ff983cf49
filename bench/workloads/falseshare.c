/* falseshare: the main thread allocates small objects (8..32 B, so several
 * share a cache line when the allocator packs them into one slab) and hands
 * one to each of T worker threads (default 2) pinned to other CPUs. Each
 * worker writes its object in a loop (active false sharing), checks and frees
 * it (a remote free), then allocates its own object of the same size, writes
 * it in a loop again (passive false sharing: does the allocator hand back the
 * remotely freed chunk next to the other thread's object?) and frees it.
 * ops = objects written (2 per worker per round). */
#include "common.h"
#define WL "falseshare"
#define WRITES 20000

typedef struct { _Alignas(64) void *obj; size_t n; uint64_t tag; } mailbox_t;
static mailbox_t *mb;
static int T, rounds;
static pthread_barrier_t go, done;

static void hammer(void *p, size_t n, uint64_t tag) {
    volatile uint8_t *b = (volatile uint8_t *)p;
    size_t i = 0;
    for (int w = 0; w < WRITES; w++) {
        b[i] = bpat(tag, i);
        if (++i == n) i = 0;
    }
}

static void *worker(void *arg) {
    long id = (long)arg;
    pin_to((int)(1 + id));
    rng_t r; rng_seed(&r, 300 + (uint64_t)id);
    for (int k = 0; k < rounds; k++) {
        pthread_barrier_wait(&go);
        mailbox_t *m = &mb[id];
        hammer(m->obj, m->n, m->tag);
        check_or_die(WL, m->obj, m->n, m->tag);
        free(m->obj);                         /* remote free */
        uint64_t t = rng_next(&r);
        void *own = xmalloc(WL, m->n);
        hammer(own, m->n, t);
        check_or_die(WL, own, m->n, t);
        free(own);
        pthread_barrier_wait(&done);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    T = arg_threads(argc, argv, 2);
    rounds = (int)(4000 * scale); if (rounds < 1) rounds = 1;
    mb = aligned_alloc(64, sizeof(mailbox_t) * (size_t)T);
    pthread_barrier_init(&go, NULL, (unsigned)T + 1);
    pthread_barrier_init(&done, NULL, (unsigned)T + 1);
    pin_to(0);
    pthread_t th[T];
    for (long i = 0; i < T; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    rng_t r; rng_seed(&r, 6);
    double t0 = now_sec();
    for (int k = 0; k < rounds; k++) {
        size_t n = rng_range(&r, 8, 32);
        for (int i = 0; i < T; i++) {     /* allocated back to back by one thread */
            mb[i].n = n;
            mb[i].tag = rng_next(&r);
            mb[i].obj = xmalloc(WL, n);
            fill(mb[i].obj, n, mb[i].tag);
        }
        pthread_barrier_wait(&go);
        pthread_barrier_wait(&done);
    }
    double t1 = now_sec();
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    report(WL, T, (uint64_t)rounds * (uint64_t)T * 2, t1 - t0);
    return 0;
}
