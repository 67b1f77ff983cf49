/* order.c - chunks freed in the order they were allocated come back in it.
 *
 * A program that builds a large structure, frees it front to back and
 * builds the next (CPython's object graphs, a parser's nodes) walks memory
 * in address order only if the allocator hands back a run of frees in the
 * order it went in (or reversed), through every level it passes: the
 * per-CPU ring, the zone's stash and the slabs' free lists (docs/design.md,
 * "The order chunks come back in"). One pinned thread allocates NCHUNK
 * blocks of a class, frees them in allocation order, and does it again,
 * ROUNDS times; along the last round's allocation sequence it counts the
 * changes of page, against the pages the blocks lie on.
 *
 * Under slaballoc (sa_malloc visible) the changes must stay below 1.5x the
 * pages for every size (a run of frees cut into stretches at every round
 * trip gave 3x, and grew with the rounds); under glibc the figures are only
 * printed. Exit 1 on failure. */
#include "common.h"

#define NCHUNK 20000
#define ROUNDS 6
#define PAGE 4096

static int cmp_uptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* One size: returns the page changes along the last round, and the pages
 * in *pages. */
static int rounds(size_t size, int *pages)
{
    static void *p[NCHUNK];
    static uintptr_t pg[NCHUNK];
    int changes = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NCHUNK; i++) {
            p[i] = malloc(size);
            if (!p[i])
                DIE("malloc(%zu) failed", size);
            memset(p[i], r, 16);
        }
        if (r == ROUNDS - 1) {
            for (int i = 0; i < NCHUNK; i++) {
                pg[i] = (uintptr_t)p[i] / PAGE;
                if (i > 0 && pg[i] != pg[i - 1])
                    changes++;
            }
            qsort(pg, NCHUNK, sizeof pg[0], cmp_uptr);
            *pages = 1;
            for (int i = 1; i < NCHUNK; i++)
                *pages += pg[i] != pg[i - 1];
        }
        for (int i = 0; i < NCHUNK; i++)
            free(p[i]);
    }
    return changes;
}

int main(void)
{
    static const size_t sizes[] = {48, 160, 496};
    int sa = slaballoc_loaded();
    if (pin_to(0) < 0)
        DIE("cannot pin to a CPU");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int pages = 0;
        int changes = rounds(sizes[k], &pages);
        printf("order: allocator=%s size=%zu: %d page changes along %d blocks on %d pages\n",
               sa ? "slaballoc" : "glibc", sizes[k], changes, NCHUNK, pages);
        if (sa)
            CHECK(changes * 2 < pages * 3, "size %zu: %d page changes for %d pages", sizes[k],
                  changes, pages);
    }
    return g_fail ? 1 : 0;
}
