/* sigsmall.c: small chunks through the per-CPU caches while their rseq
 * sections are aborted as often as we can make them: more threads than
 * CPUs (preemption, migration) and a stream of SIGUSR1s, sent by the main
 * thread to each worker in turn every few microseconds, whose handler
 * mallocs and frees small chunks of the same classes (a signal in the
 * middle of a section aborts it; the handler's own sections then run on
 * the same cache, and the thread's restart must find it changed). A
 * handler that interrupts its own thread's slow path (a zone lock held)
 * must not wait for another zone: slaballoc serves it from a mapping of
 * its own. (glibc deadlocks here: malloc is not async-signal-safe; this
 * test is slaballoc's alone.) Every chunk holds
 * its owner's tag in its first and last word, checked before each free: a
 * chunk handed to two owners at once (a section that ran unarmed and was
 * interrupted) shows as a mismatch. Batches of 1-64 blocks, freed in
 * allocation order, in reverse, or half by another thread (remote frees).
 * Prints "sigsmall: ok" and exits 0 on success. A worker that has not
 * finished 30 s after the storm ends is a hang: the test names it, what it
 * was doing (its batches so far, and whether a signal handler was running
 * on it) and aborts, so that a core (where enabled) shows where it waits,
 * rather than sitting out the harness's timeout with an empty log. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS 6
#define BATCH 64
static const size_t sizes[] = {16, 32, 48, 64, 96, 128, 256, 512};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static volatile sig_atomic_t stop = 0;
static volatile long nsig = 0;
static volatile int failed = 0;
/* Per worker, for the hang report: batches done, and the depth of signal
 * handlers running on it (written by the worker and its own handler). */
static volatile unsigned long progress[THREADS];
static volatile int in_handler[THREADS];
static __thread int my_id = -1;

static void tag(uint64_t *p, size_t n, uint64_t t)
{
    p[0] = t;
    p[n / 8 - 1] = ~t;
}

static int check(uint64_t *p, size_t n, uint64_t t)
{
    return p[0] == t && p[n / 8 - 1] == ~t;
}

static void handler(int s)
{
    (void)s;
    nsig++;
    int me = my_id;
    if (me >= 0) in_handler[me]++;
    uint64_t *h[4];
    size_t n = sizes[nsig % NSIZES];
    uint64_t t = 0x5151000000000000ull | (uint64_t)nsig;
    for (int i = 0; i < 4; i++) {
        h[i] = malloc(n);
        if (!h[i]) { failed = 1; return; }
        tag(h[i], n, t + (uint64_t)i);
    }
    for (int i = 0; i < 4; i++) {
        if (!check(h[i], n, t + (uint64_t)i)) failed = 2;
        free(h[i]);
    }
    if (me >= 0) in_handler[me]--;
}

/* A hand-off slot per thread pair: blocks one thread allocates and the next
 * frees (cross-thread frees under the same storm). */
static struct {
    pthread_mutex_t m;
    uint64_t *p[BATCH];
    size_t n[BATCH];
    uint64_t t[BATCH];
    int count;
} box[THREADS];

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    my_id = id;
    uint64_t *b[BATCH];
    uint64_t tg[BATCH];
    unsigned r = 12345u + (unsigned)id * 7919u;
    uint64_t serial = 0;
    while (!stop && !failed) {
        r = r * 1103515245u + 12345u;
        size_t n = sizes[(r >> 8) % NSIZES];
        int c = 1 + (int)((r >> 12) % BATCH);
        for (int i = 0; i < c; i++) {
            b[i] = malloc(n);
            if (!b[i]) { failed = 3; return 0; }
            tg[i] = ((uint64_t)id << 56) | ++serial;
            tag(b[i], n, tg[i]);
        }
        int mode = (int)((r >> 20) % 3);
        if (mode == 2) {
            /* hand the batch to the next thread; free what was left for us */
            int to = (id + 1) % THREADS;
            pthread_mutex_lock(&box[to].m);
            for (int i = 0; i < c && box[to].count < BATCH; i++) {
                int k = box[to].count++;
                box[to].p[k] = b[i]; box[to].n[k] = n; box[to].t[k] = tg[i];
                b[i] = 0;
            }
            pthread_mutex_unlock(&box[to].m);
            pthread_mutex_lock(&box[id].m);
            for (int k = 0; k < box[id].count; k++) {
                if (!check(box[id].p[k], box[id].n[k], box[id].t[k])) failed = 4;
                free(box[id].p[k]);
            }
            box[id].count = 0;
            pthread_mutex_unlock(&box[id].m);
        }
        for (int j = 0; j < c; j++) {
            int i = mode == 1 ? c - 1 - j : j;
            if (!b[i]) continue;
            if (!check(b[i], n, tg[i])) {
                if (!failed) printf("sigsmall: CORRUPT chunk %p (size %zu) of thread %d\n", (void *)b[i], n, id);
                failed = 5;
            }
            free(b[i]);
        }
        progress[id]++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.5;
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&box[i].m, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], 0, worker, (void *)(intptr_t)i)) { printf("sigsmall: pthread_create failed\n"); return 1; }
    long sent = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < THREADS; i++, sent++) pthread_kill(t[i], SIGUSR1);
        usleep(5);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) * 1e-9 < secs);
    stop = 1;
    for (int i = 0; i < THREADS; i++) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 30;
        if (pthread_timedjoin_np(t[i], 0, &dl) != 0) {
            printf("sigsmall: HANG: worker %d did not finish 30 s after the storm "
                   "(batches %lu, signal handlers running on it %d, failed %d, "
                   "signals %ld)\n", i, progress[i], in_handler[i], failed, (long)nsig);
            for (int k = 0; k < THREADS; k++)
                printf("sigsmall:   worker %d: batches %lu, in handler %d\n", k, progress[k], in_handler[k]);
            fflush(stdout);
            abort();
        }
    }
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < box[i].count; k++) {
            if (!check(box[i].p[k], box[i].n[k], box[i].t[k])) failed = 6;
            free(box[i].p[k]);
        }
    if (failed) { printf("sigsmall: FAILED (%d) after %ld signals\n", failed, (long)nsig); return 1; }
    if (nsig < 100) { printf("sigsmall: only %ld of %ld signals arrived\n", (long)nsig, sent); return 1; }
    printf("sigsmall: ok signals=%ld sent=%ld\n", (long)nsig, sent);
    return 0;
}
