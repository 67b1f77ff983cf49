/* lines.c - small blocks allocated back to back land on different cache lines.
 *
 * A thread that allocates two small blocks one after the other and hands them
 * to two threads on two CPUs makes those threads fight over one cache line if
 * the blocks share it (active false sharing; bench/workloads/falseshare.c).
 * slaballoc carves a slab page onto its free list so that two successive
 * mallocs never return chunks of one 64-byte line (zone::carve_page), and
 * refills keep the order chunks come back in. Two checks:
 *
 *   sequential: one thread, pinned, 20000 mallocs of 8..32 bytes kept alive;
 *               how many successive pairs share a line.
 *   handoff:    the falseshare pattern: the main thread (pinned to the first
 *               CPU) allocates a pair per round and hands one block to each of
 *               two workers on two CPUs, which write it, free it (one of the
 *               frees is remote) and allocate and free a block of their own;
 *               how many rounds' pairs share a line.
 *
 * Under slaballoc (sa_malloc visible) both must stay at or below 5 % of the
 * pairs; under glibc the figures are only printed (glibc packs such blocks
 * two or four to a line). Exit 1 on failure.
 *
 * A process's first blocks come from the starter heap (src/starter/), which
 * packs them one after the other as glibc does, until 4096 mallocs come
 * within 50 ms; the checks are of the zones' carve, so the test first makes
 * that many (`fast_pairs`, common.h). */
#include "common.h"

#define LINE 64
#define NSEQ 20000
#define ROUNDS 2000

static int same_line(const void *a, const void *b)
{
    return (uintptr_t)a / LINE == (uintptr_t)b / LINE;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        DIE("malloc(%zu) failed", n);
    return p;
}

/* ---- sequential */
static int sequential(void)
{
    static void *p[NSEQ];
    uint64_t rng = 0x1234567;
    int shared = 0;
    for (int i = 0; i < NSEQ; i++) {
        p[i] = xmalloc(8 + xorshift64(&rng) % 25);
        memset(p[i], 0x5a, 8);
        if (i > 0 && same_line(p[i - 1], p[i]))
            shared++;
    }
    for (int i = 0; i < NSEQ; i++)
        free(p[i]);
    return shared;
}

/* ---- handoff */
static pthread_barrier_t go, done;
static void *box[2];
static size_t box_n;

static void *worker(void *arg)
{
    long id = (long)arg;
    pin_to((int)(1 + id));
    for (int k = 0; k < ROUNDS; k++) {
        pthread_barrier_wait(&go);
        volatile char *b = box[id];
        for (int w = 0; w < 64; w++)
            b[w % box_n] = (char)w;
        free(box[id]);
        char *own = xmalloc(box_n);
        memset(own, (int)id, box_n);
        free(own);
        pthread_barrier_wait(&done);
    }
    return NULL;
}

static int handoff(void)
{
    pthread_t th[2];
    uint64_t rng = 0x9876543;
    int shared = 0;
    pthread_barrier_init(&go, NULL, 3);
    pthread_barrier_init(&done, NULL, 3);
    for (long i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0)
            DIE("pthread_create");
    for (int k = 0; k < ROUNDS; k++) {
        box_n = 8 + xorshift64(&rng) % 25;
        box[0] = xmalloc(box_n);
        box[1] = xmalloc(box_n);
        if (same_line(box[0], box[1]))
            shared++;
        pthread_barrier_wait(&go);
        pthread_barrier_wait(&done);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    return shared;
}

int main(void)
{
    int sa = slaballoc_loaded();
    if (pin_to(0) < 0)
        DIE("cannot pin to a CPU");
    fast_pairs(9000, 1); /* the starter heap retires */
    int seq = sequential();
    int hand = handoff();
    printf("lines: allocator=%s sequential: %d of %d successive pairs share a %d-byte line;"
           " handoff: %d of %d rounds\n",
           sa ? "slaballoc" : "glibc", seq, NSEQ - 1, LINE, hand, ROUNDS);
    if (sa) {
        CHECK(seq * 20 <= NSEQ - 1, "sequential: %d of %d pairs share a line", seq, NSEQ - 1);
        CHECK(hand * 20 <= ROUNDS, "handoff: %d of %d pairs share a line", hand, ROUNDS);
    }
    return g_fail ? 1 : 0;
}
