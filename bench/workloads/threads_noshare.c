/* threads_noshare: T threads (default 2), each doing mixed-like work on a
 * private table (no object crosses threads). Work per thread is constant, so
 * perfect scaling keeps `seconds` flat as T grows; ops is the total. */
#include "common.h"
#define WL "threads_noshare"
#define SLOTS 10000
static uint64_t per_thread_ops;
static pthread_barrier_t start;

static void *worker(void *arg) {
    long id = (long)arg;
    pin_to((int)id);
    pthread_barrier_wait(&start);
    slot_table_run(WL, 100 + (uint64_t)id, SLOTS, per_thread_ops);
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
    double t1 = now_sec();
    report(WL, T, per_thread_ops * (uint64_t)T, t1 - t0);
    return 0;
}
