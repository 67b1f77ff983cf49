/* buffers: T threads (argv[2], default 2), each turning over I/O-style
 * buffers of 16-64 KiB: a table of 8 live buffers per thread, a random one
 * replaced each step. Half the requests are 32 KiB (a program's read,
 * compression or formatting buffer), half log-uniform in 16-64 KiB
 * (strings, small arrays, Python's bytearrays). Each buffer is written
 * (`fill`: every page) and checked before its free. These sizes lie above
 * slaballoc's size classes (16 KiB), inside snmalloc's (64 KiB),
 * mimalloc's small and medium pages, tcmalloc's per-CPU classes (256 KiB)
 * and jemalloc's thread cache (32 KiB). ops = buffers made. */
#include "common.h"
#define WL "buffers"
#define SLOTS 8
static uint64_t per_thread;

static void *worker(void *arg) {
    long id = (long)arg;
    slot_t tab[SLOTS];
    memset(tab, 0, sizeof tab);
    rng_t r; rng_seed(&r, 1100 + (uint64_t)id);
    for (uint64_t i = 0; i < per_thread; i++) {
        slot_t *s = &tab[rng_below(&r, SLOTS)];
        if (s->p) { check_or_die(WL, s->p, s->n, s->t); free(s->p); }
        if (rng_below(&r, 2)) s->n = 32768;
        else s->n = (size_t)(16384.0 * exp(rng_unit(&r) * log(4.0)));
        s->t = rng_next(&r);
        s->p = xmalloc(WL, s->n);
        fill(s->p, s->n, s->t);
    }
    for (int i = 0; i < SLOTS; i++)
        if (tab[i].p) { check_or_die(WL, tab[i].p, tab[i].n, tab[i].t); free(tab[i].p); }
    return NULL;
}

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    int T = arg_threads(argc, argv, 2);
    per_thread = (uint64_t)(1000000 * scale);
    pthread_t th[T];
    double t0 = now_sec();
    for (long i = 0; i < T; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    double t1 = now_sec();
    report(WL, T, per_thread * (uint64_t)T, t1 - t0);
    return 0;
}
