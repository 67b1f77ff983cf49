/* exited_threads: what becomes of the memory of threads that exited. 4
 * threads allocate 100,000 blocks of 64-176 B each and exit; the main
 * thread frees them all and allocates as many again, six times, printing
 * VmRSS after the workers, after the first re-allocation and at the end.
 *
 *   gcc -O2 -pthread bench/tools/exited_threads.c -o bench/build/exited_threads
 *   LD_PRELOAD=$PWD/target/release/libslaballoc.so bench/build/exited_threads */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T 4
#define N 100000
static void *blk[T][N];

static size_t size_of(int i) { return 64 + (size_t)(i % 8) * 16; }

static void fill(int t)
{
    for (int i = 0; i < N; i++) {
        blk[t][i] = malloc(size_of(i));
        if (!blk[t][i]) abort();
        memset(blk[t][i], 1, 64);
    }
}

static void *worker(void *a)
{
    fill((int)(long)a);
    return NULL;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char l[256];
    long r = -1;
    while (f && fgets(l, sizeof l, f))
        if (!strncmp(l, "VmRSS:", 6)) r = atol(l + 6);
    if (f) fclose(f);
    return r;
}

int main(void)
{
    pthread_t th[T];
    for (long t = 0; t < T; t++) pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    long r1 = rss_kib(), r2 = 0;
    for (int round = 0; round < 6; round++) {
        for (int t = 0; t < T; t++)
            for (int i = 0; i < N; i++) free(blk[t][i]);
        for (int t = 0; t < T; t++) fill(t);
        if (round == 0) r2 = rss_kib();
    }
    printf("exited_threads: VmRSS after the workers %ld KiB, after re-allocating %ld KiB, "
           "after 5 more rounds %ld KiB\n", r1, r2, rss_kib());
    return 0;
}
