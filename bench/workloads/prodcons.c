/* prodcons: a producer thread allocates (16..512 B, filled with a pattern)
 * and hands objects through a lock-free single-producer/single-consumer ring
 * to a consumer thread pinned on another CPU, which checks and frees them.
 * Every free is a remote free. ops = objects transferred. threads = 2. */
#include "common.h"
#include <stdatomic.h>
#define WL "prodcons"
#define RING 1024               /* power of two */

static void *ring[RING];
static _Alignas(64) _Atomic uint64_t head;   /* written by producer */
static _Alignas(64) _Atomic uint64_t tail;   /* written by consumer */
static _Alignas(64) uint64_t nobj;

static void backoff(unsigned *spins) {
    if (++*spins < 256) cpu_relax(); else { sched_yield(); *spins = 0; }
}

static void *producer(void *arg) {
    (void)arg;
    pin_to(0);
    rng_t r; rng_seed(&r, 5);
    uint64_t h = 0;
    for (uint64_t i = 0; i <= nobj; i++) {
        void *o = i < nobj ? obj_new(WL, &r, rng_range(&r, 16, 512)) : NULL; /* NULL = end */
        unsigned spins = 0;
        while (h - atomic_load_explicit(&tail, memory_order_acquire) >= RING) backoff(&spins);
        ring[h & (RING - 1)] = o;
        atomic_store_explicit(&head, ++h, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    pin_to(1);
    uint64_t t = 0;
    for (;;) {
        unsigned spins = 0;
        while (atomic_load_explicit(&head, memory_order_acquire) == t) backoff(&spins);
        void *o = ring[t & (RING - 1)];
        atomic_store_explicit(&tail, ++t, memory_order_release);
        if (!o) break;
        obj_free(WL, o);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    nobj = (uint64_t)(3000000 * scale);
    pthread_t p, c;
    double t0 = now_sec();
    pthread_create(&c, NULL, consumer, NULL);
    pthread_create(&p, NULL, producer, NULL);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    double t1 = now_sec();
    report(WL, 2, nobj, t1 - t0);
    return 0;
}
