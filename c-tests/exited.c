/* exited.c - memory of threads that exited is reused.
 *
 * 4 threads, pinned to alternate CPUs, allocate ~MIB MiB in all (default 48,
 * argv[1]) of 64..176 B blocks and exit. The main thread frees every block
 * (the frees are remote: the workers' zones own the slabs, and nothing runs
 * there any more) and allocates as much again, three times, checking each
 * block's contents before freeing it. Its RSS after that must stay within
 * 25 % of the RSS after the workers: the memory the dead threads' zones got
 * back must serve the new blocks. (Before the zones were tended from the
 * slow path that maps a new slab, it was 32-64 % more: the freed chunks
 * waited on remote lists that only the dead zones' owners collect.) Under
 * glibc the numbers are printed, not checked (its per-thread arenas keep
 * them: about 2x).
 */
#define _GNU_SOURCE
#include "common.h"

#define T 4
static size_t per_thread;
static void **blk[T];

static size_t size_of(size_t i) { return 64 + (i % 8) * 16; }

static void fill_all(int t)
{
    for (size_t i = 0; i < per_thread; i++) {
        blk[t][i] = malloc(size_of(i));
        if (!blk[t][i]) DIE("malloc failed");
        fill(blk[t][i], size_of(i), (uint64_t)t * per_thread + i);
    }
}

static void check_free_all(int t)
{
    for (size_t i = 0; i < per_thread; i++) {
        size_t bad = verify(blk[t][i], size_of(i), (uint64_t)t * per_thread + i);
        CHECK(bad == (size_t)-1, "block %zu of thread %d corrupt at byte %zu", i, t, bad);
        free(blk[t][i]);
    }
}

static void *worker(void *arg)
{
    int t = (int)(long)arg;
    pin_to(t % 2);
    fill_all(t);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 48;
    per_thread = (mib << 20) / T / 128; /* mean block 120 B, plus headers */
    for (int t = 0; t < T; t++)
        if (!(blk[t] = calloc(per_thread, sizeof(void *)))) DIE("calloc");
    pthread_t th[T];
    for (long t = 0; t < T; t++)
        if (pthread_create(&th[t], NULL, worker, (void *)t)) DIE("pthread_create");
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    size_t r1 = rss_bytes();
    for (int round = 0; round < 3; round++)
        for (int t = 0; t < T; t++) {
            check_free_all(t);
            fill_all(t);
        }
    size_t r2 = rss_bytes();
    printf("exited: RSS after the workers %zu KiB, after the main thread re-allocated "
           "it three times %zu KiB (%.2fx)\n", r1 >> 10, r2 >> 10, (double)r2 / (double)r1);
    for (int t = 0; t < T; t++) check_free_all(t);
    if (!slaballoc_loaded()) {
        printf("exited: the RSS check is for slaballoc only\n");
        return g_fail ? 1 : 0;
    }
    CHECK(r2 * 4 <= r1 * 5, "RSS grew %.2fx: the exited threads' memory was not reused",
          (double)r2 / (double)r1);
    return g_fail ? 1 : 0;
}
