/* starter.c - a process's first blocks: the starter heap (src/starter/).
 *
 * [both allocators] Blocks made first (four of 8000 B, a hundred small
 * ones, a realloc'd string, a 32 KiB calloc above the size classes, as
 * ls's opendir buffer and perl's first callocs are, realloc'd to 50,000 B)
 * keep their contents through everything that
 * follows: 9000 malloc/free pairs (two windows of the starter heap's
 * 4096 mallocs, fast: it retires), a fork whose child allocates and frees, four threads that
 * allocate and free at once; realloc moves them intact, aligned_alloc
 * honours its alignment, malloc_usable_size covers the request.
 *
 * [slaballoc] While the starter heap serves, no arena is mapped
 * (sa_stats_get: bytes_mapped 0, starter_mallocs counting); after the 9000
 * pairs the zones serve (bytes_mapped > 0). Once the four 8000-byte
 * blocks are freed, the pages only they covered are no longer resident
 * (mincore): the retired starter heap gives back what its blocks left.
 * With SLABALLOC_STARTER=0 (a second run) the blocks made after start-up
 * come from the zones at once (an arena is mapped before the first check).
 */
#define _GNU_SOURCE
#include "common.h"
#include "../include/slaballoc.h"

#include <malloc.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define NBIG 4
#define BIG 8000
#define NSMALL 100
#define DIRBUF 32768

static int (*p_stats_get)(struct sa_stats *, size_t);

static int intact(const void *p, size_t n, uint64_t seed) { return verify(p, n, seed) == (size_t)-1; }

static struct sa_stats *stats(void)
{
    static struct sa_stats s;
    if (!p_stats_get) p_stats_get = (int (*)(struct sa_stats *, size_t))dlsym(RTLD_DEFAULT, "sa_stats_get");
    if (!p_stats_get || p_stats_get(&s, sizeof s) != 0) DIE("sa_stats_get failed");
    return &s;
}

static void *churn(void *arg)
{
    uint64_t seed = (uint64_t)(long)arg;
    for (int i = 0; i < 2000; i++) {
        size_t n = 16 + (size_t)(i * 37 + seed * 11) % 700;
        char *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu) in a thread", n);
        fill(p, n, seed + (uint64_t)i);
        CHECK(intact(p, n, seed + (uint64_t)i), "a thread's block of %zu B damaged", n);
        free(p);
    }
    return NULL;
}

/* Pages of [p, p + n) that lie wholly inside it and are resident. */
static int resident_inside(char *p, size_t n)
{
    uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, b = ((uintptr_t)p + n) & ~(uintptr_t)4095;
    if (b <= a) return 0;
    unsigned char v[64];
    size_t np = (b - a) / 4096;
    if (np > sizeof v) np = sizeof v;
    if (mincore((void *)a, np * 4096, v) != 0) DIE("mincore: %s", strerror(errno));
    int r = 0;
    for (size_t i = 0; i < np; i++) r += v[i] & 1;
    return r;
}

int main(void)
{
    int sa = slaballoc_loaded();
    const char *knob = getenv("SLABALLOC_STARTER");
    int on = sa && !(knob && strcmp(knob, "0") == 0);
    char *big[NBIG], *small[NSMALL];
    for (int i = 0; i < NBIG; i++) {
        big[i] = malloc(BIG);
        CHECK(big[i] != NULL && (uintptr_t)big[i] % 16 == 0, "malloc(%d)", BIG);
        fill(big[i], BIG, 100 + (uint64_t)i);
    }
    for (int i = 0; i < NSMALL; i++) {
        size_t n = 8 + (size_t)i * 13 % 400;
        small[i] = malloc(n);
        CHECK(small[i] != NULL && (uintptr_t)small[i] % 16 == 0, "malloc(%zu)", n);
        CHECK(malloc_usable_size(small[i]) >= n, "usable size of a %zu B block", n);
        fill(small[i], n, 200 + (uint64_t)i);
    }
    int first = 0;
    for (int i = 0; i < NBIG; i++) first += resident_inside(big[i], malloc_usable_size(big[i]));
    if (getenv("VERBOSE")) printf("starter: %d pages inside the big blocks at first\n", first);
    char *s = strdup("the starter heap");
    for (int i = 0; i < 6; i++) {
        size_t n = strlen(s);
        s = realloc(s, 2 * n + 1);
        CHECK(s != NULL, "realloc");
        memcpy(s + n, s, n + 1);
    }
    CHECK(strlen(s) == 16 * 64 && strncmp(s + 16 * 63, "the starter heap", 16) == 0, "realloc lost bytes");
    char *dir = calloc(1, DIRBUF);
    CHECK(dir != NULL && (uintptr_t)dir % 16 == 0, "calloc(1, %d)", DIRBUF);
    size_t nz = 0;
    for (size_t i = 0; i < DIRBUF; i++) nz += dir[i] != 0;
    CHECK(nz == 0, "calloc's block has %zu bytes that are not zero", nz);
    fill(dir, DIRBUF, 300);
    dir = realloc(dir, 50000);
    CHECK(dir != NULL && intact(dir, DIRBUF, 300), "realloc of the %d B block lost bytes", DIRBUF);
    if (sa) {
        struct sa_stats *st = stats();
        printf("starter: after the first blocks: starter_mallocs=%llu bytes_mapped=%llu\n",
               (unsigned long long)st->totals.starter_mallocs, (unsigned long long)st->totals.bytes_mapped);
        if (on) {
            CHECK(st->totals.starter_mallocs >= NBIG + NSMALL, "the starter heap served %llu mallocs",
                  (unsigned long long)st->totals.starter_mallocs);
            CHECK(st->totals.bytes_mapped == 0, "an arena is mapped while the starter heap serves");
        } else {
            CHECK(st->totals.bytes_mapped > 0, "SLABALLOC_STARTER=0, yet no arena is mapped");
        }
    }

    /* fast mallocs: the starter heap retires within two of its windows */
    fast_pairs(9000, 200);
    if (sa) {
        struct sa_stats *st = stats();
        printf("starter: after 9000 more pairs: starter_mallocs=%llu bytes_mapped=%llu\n",
               (unsigned long long)st->totals.starter_mallocs, (unsigned long long)st->totals.bytes_mapped);
        CHECK(st->totals.bytes_mapped > 0, "the zones never started");
    }

    /* aligned beyond 16 bytes: never the starter heap's (zones start) */
    void *al = aligned_alloc(64, 64);
    CHECK(al != NULL && (uintptr_t)al % 64 == 0, "aligned_alloc(64, 64) = %p", al);

    pid_t pid = fork();
    if (pid < 0) DIE("fork");
    if (pid == 0) {
        churn((void *)7);
        for (int i = 0; i < NBIG; i++) CHECK(intact(big[i], BIG, 100 + (uint64_t)i), "child: big block damaged");
        _exit(g_fail ? 1 : 0);
    }
    int wst;
    if (waitpid(pid, &wst, 0) != pid) DIE("waitpid");
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "the forked child failed (status %#x)", wst);

    pthread_t th[4];
    for (long t = 0; t < 4; t++)
        if (pthread_create(&th[t], NULL, churn, (void *)t)) DIE("pthread_create");
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    for (int i = 0; i < NSMALL; i++)
        CHECK(intact(small[i], 8 + (size_t)i * 13 % 400, 200 + (uint64_t)i), "small block %d damaged", i);
    for (int i = 0; i < NBIG; i++) CHECK(intact(big[i], BIG, 100 + (uint64_t)i), "big block %d damaged", i);
    CHECK(strncmp(s, "the starter heap", 16) == 0, "the realloc'd string damaged");
    CHECK(intact(dir, DIRBUF, 300), "the %d B block damaged", DIRBUF);

    int inside = 0;
    size_t usable[NBIG];
    for (int i = 0; i < NBIG; i++) usable[i] = malloc_usable_size(big[i]);
    for (int i = 0; i < NBIG; i++) inside += resident_inside(big[i], usable[i]);
    for (int i = 0; i < NBIG; i++) free(big[i]);
    int left = 0;
    for (int i = 0; i < NBIG; i++) left += resident_inside(big[i], usable[i]);
    printf("starter: pages wholly inside the big blocks: %d resident before their free, %d after\n", inside, left);
    if (on) CHECK(inside > 0 && left == 0, "the retired starter heap kept %d of %d freed pages", left, inside);

    for (int i = 0; i < NSMALL; i++) free(small[i]);
    free(s);
    free(dir);
    free(al);
    printf("starter: %s\n", g_fail ? "FAILED" : "ok");
    return g_fail ? 1 : 0;
}
