/* server: T threads (default 2) replace random slots of a shared table by
 * atomic exchange of slot pointers: each op allocates a new object
 * (power-law 16 B..4 KiB), swaps it into a random slot and checks+frees the
 * object that was there, which was usually made by another thread. */
#include "common.h"
#include <stdatomic.h>
#define WL "server"
#define SLOTS 8192
static _Atomic(void *) table[SLOTS];
static uint64_t per_thread_ops;
static pthread_barrier_t start;

static void *worker(void *arg) {
    long id = (long)arg;
    pin_to((int)id);
    rng_t r; rng_seed(&r, 200 + (uint64_t)id);
    pthread_barrier_wait(&start);
    for (uint64_t i = 0; i < per_thread_ops; i++) {
        void *o = obj_new(WL, &r, size_powerlaw(&r, 16, 4096));
        void *old = atomic_exchange_explicit(&table[rng_below(&r, SLOTS)], o, memory_order_acq_rel);
        if (old) obj_free(WL, old);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    int T = arg_threads(argc, argv, 2);
    per_thread_ops = (uint64_t)(1500000 * scale);
    pthread_t th[T];
    pthread_barrier_init(&start, NULL, (unsigned)T + 1);
    for (long i = 0; i < T; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    pthread_barrier_wait(&start);
    double t0 = now_sec();
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < SLOTS; i++) {
        void *o = atomic_load(&table[i]);
        if (o) obj_free(WL, o);
    }
    double t1 = now_sec();
    report(WL, T, per_thread_ops * (uint64_t)T, t1 - t0);
    return 0;
}
