/* trim_load.c - malloc_trim while threads allocate, classes growing and
 * going idle in turn: no block is lost or damaged, and no chunk is lost to
 * a ring that shrank.
 *
 * One worker per CPU (at most 4, pinned) walks through the small sizes,
 * 16 B .. 1 KiB: for each, it allocates a window of WINDOW blocks, writes
 * them, checks and frees them, a few times (its CPU's ring of that class
 * grows past its base), then moves on to the next size, so the classes
 * behind it go idle while the next ones take new slabs (their rings shrink
 * and give their pages back, their stashes drain: zone::grow, cache::
 * shrink_to). Each worker also keeps KEEP blocks alive the whole time.
 * A trimmer thread calls malloc_trim(0) every 200 us meanwhile (every
 * zone's stash and slabs; the rings of the CPU it runs on). At the end the
 * kept blocks are checked and freed, each worker trims on its own CPU (a
 * ring is drained only from its CPU) and the main thread trims once more.
 *
 * [slaballoc] Then a class up to 1 KiB with no chunk in use (`sa_stats_get`)
 * must hold no slab: a chunk lost in a ring's purged slots would keep its
 * slab live for ever. (Classes with chunks in use are libc's: a thread's
 * DTV, stdio.) Under glibc the run only checks contents.
 *
 * Usage: trim_load [seconds]   (default 2)
 */
#define _GNU_SOURCE
#include "common.h"
#include "../include/slaballoc.h"

#include <malloc.h>
#include <stdatomic.h>

#define MAXW 4
#define WINDOW 3000
#define KEEP 256
#define REPS 4

static atomic_int stop;
static int nworkers;


static size_t size_at(int k) { return (size_t)16 << (k % 7); } /* 16 .. 1024 */

static void *worker(void *arg)
{
    int w = (int)(long)arg;
    pin_to(w);
    void **win = malloc(WINDOW * sizeof(void *));
    void *keep[KEEP];
    if (!win) DIE("malloc");
    for (int i = 0; i < KEEP; i++) {
        keep[i] = malloc(24 + (size_t)(i % 5) * 40);
        if (!keep[i]) DIE("malloc");
        fill(keep[i], 24 + (size_t)(i % 5) * 40, (uint64_t)w << 32 | (uint64_t)i);
    }
    uint64_t tag = (uint64_t)w << 48;
    for (int k = 0; !atomic_load(&stop); k++) {
        size_t n = size_at(k);
        for (int rep = 0; rep < REPS; rep++, tag += WINDOW) {
            for (int i = 0; i < WINDOW; i++) {
                if (!(win[i] = malloc(n))) DIE("malloc(%zu)", n);
                fill(win[i], n, tag + (uint64_t)i);
            }
            for (int i = 0; i < WINDOW; i++) {
                size_t bad = verify(win[i], n, tag + (uint64_t)i);
                CHECK(bad == (size_t)-1, "worker %d: block %d of %zu B corrupt at byte %zu", w, i, n, bad);
                free(win[i]);
            }
        }
    }
    for (int i = 0; i < KEEP; i++) {
        size_t bad = verify(keep[i], 24 + (size_t)(i % 5) * 40, (uint64_t)w << 32 | (uint64_t)i);
        CHECK(bad == (size_t)-1, "worker %d: kept block %d corrupt at byte %zu", w, i, bad);
        free(keep[i]);
    }
    free(win);
    malloc_trim(0); /* this CPU's rings */
    return NULL;
}

static void *trimmer(void *arg)
{
    long *n = arg;
    while (!atomic_load(&stop)) {
        malloc_trim(0);
        (*n)++;
        usleep(200);
    }
    return NULL;
}

static int (*p_stats_get)(struct sa_stats *, size_t);

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    nworkers = ncpu < 1 ? 1 : ncpu > MAXW ? MAXW : (int)ncpu;
    int sa = slaballoc_loaded();
    pthread_t th[MAXW], tr;
    long trims = 0;
    for (long w = 0; w < nworkers; w++)
        if (pthread_create(&th[w], NULL, worker, (void *)w)) DIE("pthread_create");
    if (pthread_create(&tr, NULL, trimmer, &trims)) DIE("pthread_create");
    double t0 = now();
    while (now() - t0 < secs) usleep(10000);
    atomic_store(&stop, 1);
    pthread_join(tr, NULL);
    for (int w = 0; w < nworkers; w++) pthread_join(th[w], NULL);
    malloc_trim(0);
    printf("trim_load: %d workers, %ld trims in %.1f s\n", nworkers, trims, secs);
    if (sa) {
        static struct sa_stats s;
        p_stats_get = (int (*)(struct sa_stats *, size_t))dlsym(RTLD_DEFAULT, "sa_stats_get");
        if (!p_stats_get || p_stats_get(&s, sizeof s) != 0) DIE("sa_stats_get failed");
        int idle = 0;
        for (uint32_t c = 0; c < s.nclasses && c < 36; c++) {
            if (s.classes[c].size > 1024) continue;
            if (s.classes[c].in_use == 0) idle++;
            CHECK(s.classes[c].in_use > 0 || s.classes[c].slabs == 0,
                  "class of %llu B: no chunk in use, yet %llu slabs live: chunks were lost",
                  (unsigned long long)s.classes[c].size, (unsigned long long)s.classes[c].slabs);
        }
        printf("trim_load: %d classes up to 1 KiB with no chunk in use, all without a slab\n", idle);
    }
    return g_fail ? 1 : 0;
}
