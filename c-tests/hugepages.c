/* hugepages.c - big blocks on transparent huge pages, and the arena's
 * mappings as they were once such a block is freed (src/large.rs).
 *
 * [both allocators] An 8 MiB block (a page run of the arena) and a 40 MiB
 * one (a mapping of its own), filled and checked, then freed.
 *
 * [slaballoc] Reads the kernel's flags for the mapping under each block
 * (/proc/self/smaps, VmFlags): the 8 MiB block's whole 2 MiB pages are
 * advised huge ("hg"), the block one mapping (so that realloc's mremap can
 * move it), and so is the 40 MiB block's mapping; a small block's
 * page in the arena is advised never to be ("nh"); once the 8 MiB block is
 * freed its range is "nh" again and the process has as many mappings as
 * before it was made (the advice split the arena's mapping, and taking it
 * back merged it again; a second round the same). With
 * SLABALLOC_HUGEPAGES=0 (argument "off") no block is advised huge. How many
 * huge pages the kernel then gave is printed, not checked: that depends on
 * the machine (THP "never", or memory too fragmented).
 */
#define _GNU_SOURCE
#include "common.h"

#define BIG (8UL << 20)
#define HUGE (40UL << 20)

static uintptr_t g_lo, g_hi; /* the bounds of the mapping vma_of found */

/* The VmFlags line and the AnonHugePages (KiB) of the mapping holding `p`;
 * 0 if it is not found. */
static int vma_of(const void *p, char *flags, size_t nflags, long *anon_huge)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) DIE("/proc/self/smaps: %s", strerror(errno));
    char line[512];
    int in = 0, found = 0;
    uintptr_t a = (uintptr_t)p;
    *anon_huge = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a >= lo && a < hi;
            if (in) g_lo = lo, g_hi = hi;
            continue;
        }
        if (!in) continue;
        if (strncmp(line, "AnonHugePages:", 14) == 0) *anon_huge = strtol(line + 14, NULL, 10);
        if (strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, nflags, "%.*s", (int)nflags - 1, line + 8);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

static int has_flag(const char *flags, const char *fl)
{
    char pat[8];
    snprintf(pat, sizeof pat, " %s", fl);
    const char *at = strstr(flags, pat);
    return at && (at[3] == ' ' || at[3] == '\n' || at[3] == 0);
}

static int mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) DIE("/proc/self/maps: %s", strerror(errno));
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF) n += ch == '\n';
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    /* A kernel built without transparent huge pages refuses the advice and
       shows no flag: only the blocks' contents are checked then. */
    int sa = slaballoc_loaded() && access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
    if (slaballoc_loaded() && !sa) printf("hugepages: no transparent huge pages in this kernel: flags not checked\n");
    int on = !(argc > 1 && strcmp(argv[1], "off") == 0);
    char flags[256];
    long anon;

    /* The arena exists, with a small block in it. */
    char *small = malloc(100);
    CHECK(small != NULL, "malloc(100)");
    fast_pairs(9000, 200); /* past the starter heap: the zones serve */
    char *chunk = malloc(100);
    CHECK(chunk != NULL, "malloc(100)");
    if (sa) {
        CHECK(vma_of(chunk, flags, sizeof flags, &anon), "no mapping holds a small block");
        CHECK(has_flag(flags, "nh") && !has_flag(flags, "hg"),
              "a small block's page is not advised against huge pages:%s", flags);
    }

    for (int round = 0; round < 2; round++) {
        /* A block of the same size first, so that the arena has the room
           and both counts see the same arenas. */
        void *warm = malloc(BIG);
        CHECK(warm != NULL, "malloc(%lu)", BIG);
        free(warm);
        int before = mappings();
        char *b = malloc(BIG);
        CHECK(b != NULL, "malloc(%lu)", BIG);
        fill(b, BIG, 7 + (uint64_t)round);
        CHECK(verify(b, BIG, 7 + (uint64_t)round) == (size_t)-1, "the %lu B block lost bytes", BIG);
        char *mid = b + BIG / 2; /* inside a whole 2 MiB page of the block */
        if (sa) {
            CHECK(vma_of(mid, flags, sizeof flags, &anon), "no mapping holds the big block");
            printf("hugepages: round %d: 8 MiB block: %ld KiB on huge pages, %d mappings (%d before)\n", round, anon,
                   mappings(), before);
            /* one mapping, which realloc's mremap can move whole */
            CHECK(g_lo <= (uintptr_t)b && (uintptr_t)b + BIG <= g_hi,
                  "the 8 MiB block spans several mappings (%#lx-%#lx holds its middle)", (unsigned long)g_lo,
                  (unsigned long)g_hi);
            if (on)
                CHECK(has_flag(flags, "hg"), "the 8 MiB block is not advised huge:%s", flags);
            else
                CHECK(!has_flag(flags, "hg"), "SLABALLOC_HUGEPAGES=0, yet the block is advised huge:%s", flags);
        }
        free(b);
        if (sa) {
            CHECK(vma_of(mid, flags, sizeof flags, &anon), "no mapping holds the freed range");
            CHECK(has_flag(flags, "nh") && !has_flag(flags, "hg"), "the freed range is still advised huge:%s", flags);
            int after = mappings();
            CHECK(after == before, "%d mappings after the free, %d before the block", after, before);
        }
    }

    char *h = malloc(HUGE);
    CHECK(h != NULL, "malloc(%lu)", HUGE);
    fill(h, HUGE, 9);
    CHECK(verify(h, HUGE, 9) == (size_t)-1, "the %lu B block lost bytes", HUGE);
    if (sa) {
        CHECK(vma_of(h + HUGE / 2, flags, sizeof flags, &anon), "no mapping holds the 40 MiB block");
        printf("hugepages: 40 MiB block: %ld KiB on huge pages\n", anon);
        if (on) CHECK(has_flag(flags, "hg"), "the 40 MiB block is not advised huge:%s", flags);
    }
    free(h);
    free(small);
    free(chunk);
    printf("hugepages: %s\n", g_fail ? "FAILED" : "ok");
    return g_fail ? 1 : 0;
}
