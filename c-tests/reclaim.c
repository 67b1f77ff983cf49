/* reclaim.c - [slaballoc only] memory freed remotely to a quiet CPU goes back
 * to the OS when the reclaimer thread runs: started at start-up with
 * SLABALLOC_BACKGROUND=1, lazily by the frees by default (unset).
 *
 * A thread pinned to CPU 0 allocates ~MIB MiB (default 400, argv[1]) in
 * 256 B .. 4 KiB blocks and touches them; it hands them to a thread pinned to
 * CPU 1 which frees them all (remote frees); both threads exit. The main
 * thread (CPU 1) reads RSS from /proc/self/statm at the peak, then polls for
 * up to 10 s. With SLABALLOC_BACKGROUND=1 or unset, RSS must fall below 40%
 * of the peak; with SLABALLOC_BACKGROUND=0 (no thread) the numbers are only
 * reported (3 s look).
 * Under glibc: SKIP (exit 0) after printing the numbers.
 *
 * argv[2] = "shuffled": one thread (no pinning, no remote frees) allocates
 * the blocks and frees them in a shuffled order, which leaves a few free
 * chunks of most slabs in the per-CPU cache and the stash of its zone: only
 * a pass over the quiet zone (the reclaimer) gives that memory back.
 */
#define _GNU_SOURCE
#include "common.h"

#include <time.h>

static size_t target, nblk, cap;
static void **blocks;

static int shuffled;

static void *alloc_thread(void *arg)
{
    (void)arg;
    if (!shuffled) pin_to(0);
    uint64_t rng = 0xC0FFEE;
    size_t total = 0;
    while (total < target && nblk < cap) {
        size_t n = 256 + (size_t)(xorshift64(&rng) % (4096 - 256 + 1));
        char *p = malloc(n);
        if (!p) DIE("malloc(%zu) failed after %zu bytes", n, total);
        memset(p, (int)(nblk & 0xff) | 1, n);
        blocks[nblk++] = p;
        total += n;
    }
    return NULL;
}

static void *free_thread(void *arg)
{
    (void)arg;
    if (shuffled) {
        uint64_t rng = 0xBADC0DE;
        for (size_t i = nblk - 1; i > 0; i--) {
            size_t j = (size_t)(xorshift64(&rng) % (i + 1));
            void *t = blocks[i];
            blocks[i] = blocks[j];
            blocks[j] = t;
        }
        for (size_t i = 0; i < nblk; i++) {
            unsigned char *p = blocks[i];
            if (!(p[0] & 1)) DIE("block %zu corrupted", i);
            free(p);
        }
        return NULL;
    }
    pin_to(1);
    for (size_t i = 0; i < nblk; i++) {
        unsigned char *p = blocks[i];
        if (p[0] != ((i & 0xff) | 1)) DIE("block %zu corrupted", i);
        free(p);
    }
    return NULL;
}


int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 400;
    const char *bg = getenv("SLABALLOC_BACKGROUND");
    int assert_mode = !bg || (strcmp(bg, "0") != 0 && bg[0]);
    int sa = slaballoc_loaded();
    shuffled = argc > 2 && !strcmp(argv[2], "shuffled");
    if (!shuffled) pin_to(1);
    target = mib << 20;
    cap = target / 256 + 16;
    blocks = malloc(cap * sizeof *blocks); /* counted in RSS, freed later */
    if (!blocks) DIE("oom");
    size_t rss_start = rss_bytes();

    pthread_t a, f;
    size_t peak;
    if (shuffled) {
        alloc_thread(NULL);
        peak = rss_bytes();
        free_thread(NULL);
    } else {
        if (pthread_create(&a, NULL, alloc_thread, NULL)) DIE("pthread_create");
        pthread_join(a, NULL);
        peak = rss_bytes();
        if (pthread_create(&f, NULL, free_thread, NULL)) DIE("pthread_create");
        pthread_join(f, NULL);
    }
    size_t after_free = rss_bytes();
    printf("reclaim: %s, %s, background=%s: blocks=%zu start_kb=%zu peak_kb=%zu after_free_kb=%zu\n",
           sa ? "slaballoc" : "glibc", shuffled ? "shuffled" : "remote", assert_mode ? "on" : "off", nblk, rss_start >> 10, peak >> 10,
           after_free >> 10);

    /* quiet: all other threads have exited; main only sleeps and reads statm */
    double t0 = now(), t = 0;
    size_t cur = after_free;
    double limit = assert_mode ? 10.0 : 3.0; /* report mode: a short look is enough */
    while (t < limit) {
        cur = rss_bytes();
        if (cur * 10 < peak * 4) break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        t = now() - t0;
    }
    printf("reclaim: after %.1f s rss_kb=%zu (%.1f%% of peak)\n", now() - t0, cur >> 10, 100.0 * cur / peak);
    free(blocks);
    if (!sa) {
        printf("SKIP reclaim: slaballoc not loaded (numbers above are glibc's, for reference)\n");
        return 0;
    }
    if (!assert_mode) {
        printf("reclaim: SLABALLOC_BACKGROUND=0: report only\n");
        return 0;
    }
    if (cur * 10 >= peak * 4) {
        printf("reclaim: FAILED: RSS %zu kB not below 40%% of peak %zu kB within 10 s\n", cur >> 10, peak >> 10);
        return 1;
    }
    printf("reclaim: ok\n");
    return 0;
}
