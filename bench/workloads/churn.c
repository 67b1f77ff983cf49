/* churn: threads created and joined in a loop. Each short-lived thread
 * allocates a bit (64 objects, power-law 16 B..8 KiB), frees half of them and
 * hands the other half back to the main thread, which frees them after the
 * join (memory of a dead thread). T threads per generation (default 2).
 * ops = threads created. */
#include "common.h"
#define WL "churn"
#define PER 64
typedef struct { void *p[PER / 2]; size_t n[PER / 2]; uint64_t t[PER / 2]; uint64_t seed; } job_t;

static void *worker(void *arg) {
    job_t *j = arg;
    rng_t r; rng_seed(&r, j->seed);
    void *p[PER]; size_t n[PER]; uint64_t t[PER];
    for (int i = 0; i < PER; i++) {
        n[i] = size_powerlaw(&r, 16, 8192); t[i] = rng_next(&r);
        p[i] = xmalloc(WL, n[i]); fill(p[i], n[i], t[i]);
    }
    for (int i = 0; i < PER; i += 2) { check_or_die(WL, p[i], n[i], t[i]); free(p[i]); }
    for (int i = 1, k = 0; i < PER; i += 2, k++) { j->p[k] = p[i]; j->n[k] = n[i]; j->t[k] = t[i]; }
    return NULL;
}

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    int T = arg_threads(argc, argv, 2);
    int gens = (int)(5000 * scale); if (gens < 1) gens = 1;
    pthread_t th[T];
    job_t *jobs = calloc((size_t)T, sizeof(job_t));
    double t0 = now_sec();
    for (int g = 0; g < gens; g++) {
        for (int i = 0; i < T; i++) {
            jobs[i].seed = (uint64_t)g * 1000 + (uint64_t)i;
            if (pthread_create(&th[i], NULL, worker, &jobs[i])) die(WL, "pthread_create failed", NULL, 0);
        }
        for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < T; i++)
            for (int k = 0; k < PER / 2; k++) {
                check_or_die(WL, jobs[i].p[k], jobs[i].n[k], jobs[i].t[k]);
                free(jobs[i].p[k]);
            }
    }
    double t1 = now_sec();
    free(jobs);
    report(WL, T, (uint64_t)gens * (uint64_t)T, t1 - t0);
    return 0;
}
