/* oom.c - out-of-memory behaviour of every allocating entry point.
 *
 * Usage: oom rlimit [MIB]   RLIMIT_AS = current address space + MIB (default 256)
 *        oom inject [trim]  the runner sets SLABALLOC_FAIL_MAP_AFTER=N; "trim": call
 *                           malloc_trim(0) before the large replay (diagnostic)
 *
 * Both modes allocate until failure with a random mix of small (<= 16 KiB),
 * large (16 KiB .. 32 MiB) and huge (32 .. 96 MiB) sizes through malloc,
 * calloc, realloc (growth of a live block), reallocarray, aligned_alloc,
 * posix_memalign and memalign. Checks:
 *   - every failure returns NULL with errno ENOMEM (posix_memalign: returns
 *     ENOMEM and leaves *memptr untouched); nothing crashes;
 *   - a failed realloc / reallocarray leaves the old block intact (contents and
 *     usable size verified);
 *   - every success is 16-byte (or requested) aligned, usable size >= size,
 *     calloc memory reads as zero, contents survive until freed.
 * The mix runs until NFAIL_STOP consecutive failures of the small sizes (the
 * heap is full), or the op cap. Then everything is verified and freed, and
 *   rlimit: the sizes live at the end of the fill are allocated again, largest
 *           first (failures skipped), and at least 90 % of the bytes must be
 *           allocated again: once without and once after malloc_trim(0). (The
 *           exact set does not always fit again at the limit, not even under
 *           glibc: fragmentation.) Then 10000 small mallocs must succeed;
 *   inject: once the mapping limit is reached every new mapping fails, so
 *           only memory freed earlier can be reused: the small sizes are
 *           allocated again (largest first) and must all succeed; freed; then
 *           the large (page run) sizes: >= 90 % of their bytes; huge blocks
 *           (own mappings, unmapped on free) are counted but not required.
 * Prints the op counts (ops=, failures=, realloc_failures_checked=).
 * Large blocks are filled/verified in their first and last 64 KiB (position-
 * dependent pattern) to bound the run time; smaller blocks in full.
 */
#define _GNU_SOURCE
#include "common.h"

#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define MAXBLK 400000
#define NFAIL_STOP 2000
#define EDGE (64 * 1024)

enum { E_MALLOC, E_CALLOC, E_REALLOC, E_REALLOCARRAY, E_ALIGNED, E_POSIXMEM, E_MEMALIGN, E_N };
static const char *ename[E_N] = {"malloc", "calloc", "realloc", "reallocarray",
                                 "aligned_alloc", "posix_memalign", "memalign"};

struct blk {
    unsigned char *p;
    size_t n;
    uint64_t seed;
};
struct rec { /* a successful allocation, for the replay */
    unsigned char ent, cls;
    size_t n, align;
};

static struct blk *blk;
static size_t nblk;
static struct rec *recs;
static size_t nrec;
static long ops, nfails, nrefail_checked, nsucc[E_N], nfail_e[E_N];

/* byte-exact pattern check of the range [a, b) of a block */
static size_t vrange(const unsigned char *p, size_t a, size_t b, uint64_t s)
{
    for (size_t i = a; i < b; i++)
        if (p[i] != pat(i, s))
            return i;
    return (size_t)-1;
}
static void frange(unsigned char *p, size_t a, size_t b, uint64_t s)
{
    for (size_t i = a; i < b && (i & 7); i++)
        p[i] = pat(i, s);
    size_t i = (a + 7) & ~(size_t)7;
    for (; i + 8 <= b; i += 8) {
        uint64_t v = patw(i / 8, s);
        memcpy(p + i, &v, 8);
    }
    for (; i < b; i++)
        p[i] = pat(i, s);
}
static void fillblk(unsigned char *p, size_t n, uint64_t s)
{
    if (n <= 2 * EDGE) {
        fill(p, n, s);
    } else {
        frange(p, 0, EDGE, s);
        frange(p, n - EDGE, n, s);
    }
}
static size_t verifyblk(const unsigned char *p, size_t n, uint64_t s)
{
    if (n <= 2 * EDGE)
        return verify(p, n, s);
    size_t r = verify(p, EDGE, s);
    if (r != (size_t)-1)
        return r;
    return vrange(p, n - EDGE, n, s);
}

static int zero_edges(const unsigned char *p, size_t n)
{
    size_t k = n <= 2 * EDGE ? n : EDGE;
    for (size_t i = 0; i < k; i++)
        if (p[i]) return 0;
    for (size_t i = n > 2 * EDGE ? n - EDGE : n; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static double mib(size_t n) { return n / 1048576.0; }
static size_t vm_bytes(void);
static int cls_of(size_t n) { return n <= 16384 ? 0 : n < (32u << 20) ? 1 : 2; }

static size_t rand_size(uint64_t *rng, int cls)
{
    uint64_t r = xorshift64(rng);
    switch (cls) {
    case 0: return (r >> 8) % 4 ? (r >> 12) % 513 : (r >> 12) % 16385;
    case 1: return 16385 + (size_t)((r >> 8) % 4 ? (r >> 12) % (1u << 20) : (r >> 12) % ((32u << 20) - 16385));
    default: return (32u << 20) + (size_t)((r >> 12) % (64u << 20));
    }
}
static size_t rand_align(uint64_t *rng)
{
    return (size_t)16 << (xorshift64(rng) % 13); /* 16 .. 64 KiB */
}

/* One allocation through entry point e; returns the block or NULL.
 * On failure checks errno / return value. */
static unsigned char *do_alloc(int e, size_t n, size_t align, int *checked)
{
    void *p = NULL;
    *checked = 1;
    errno = 0;
    switch (e) {
    case E_MALLOC: p = malloc(n); break;
    case E_CALLOC: p = n % 3 == 0 && n ? calloc(3, n / 3) : calloc(n, 1); break;
    case E_ALIGNED: p = aligned_alloc(align, (n + align - 1) / align * align); break;
    case E_MEMALIGN: p = memalign(align, n); break;
    case E_POSIXMEM: {
        void *q = (void *)0x1234;
        int rc = posix_memalign(&q, align, n);
        if (rc == 0) {
            p = q;
        } else {
            CHECK(rc == ENOMEM, "posix_memalign(%zu, %zu) returned %d, want ENOMEM", align, n, rc);
            CHECK(q == (void *)0x1234, "posix_memalign changed *memptr on failure");
            return NULL;
        }
        break;
    }
    default: p = malloc(n); break;
    }
    if (!p)
        CHECK(errno == ENOMEM, "%s(%zu, align %zu) = NULL with errno %d, want ENOMEM", ename[e], n, align, errno);
    return p;
}

static void record(int e, size_t n, size_t align)
{
    if (nrec < MAXBLK)
        recs[nrec++] = (struct rec){(unsigned char)e, (unsigned char)cls_of(n), n, align};
}

static void add_block(unsigned char *p, size_t n, int e, size_t align, uint64_t *rng)
{
    CHECK(((uintptr_t)p & 15) == 0, "%s(%zu) = %p not 16-aligned", ename[e], n, (void *)p);
    if (e == E_ALIGNED || e == E_POSIXMEM || e == E_MEMALIGN)
        CHECK(((uintptr_t)p & (align - 1)) == 0, "%s(%zu, %zu) = %p misaligned", ename[e], align, n, (void *)p);
    CHECK(malloc_usable_size(p) >= n, "%s(%zu): usable %zu", ename[e], n, malloc_usable_size(p));
    if (e == E_CALLOC)
        CHECK(zero_edges(p, n), "calloc(%zu) = %p not zeroed", n, (void *)p);
    uint64_t s = xorshift64(rng);
    fillblk(p, n, s);
    blk[nblk++] = (struct blk){p, n, s};
}

/* realloc / reallocarray growth of block i to n bytes */
static int grow(size_t i, size_t n, int e, uint64_t *rng)
{
    struct blk *b = &blk[i];
    size_t oldus = malloc_usable_size(b->p);
    void *q;
    errno = 0;
    if (e == E_REALLOCARRAY && n % 8 == 0)
        q = reallocarray(b->p, n / 8, 8);
    else
        q = e == E_REALLOCARRAY ? reallocarray(b->p, 1, n) : realloc(b->p, n);
    if (!q) {
        CHECK(errno == ENOMEM, "%s(%p, %zu) = NULL with errno %d", ename[e], (void *)b->p, n, errno);
        size_t bad = verifyblk(b->p, b->n, b->seed);
        CHECK(bad == (size_t)-1, "failed %s(%zu -> %zu) damaged the old block at %zu", ename[e], b->n, n, bad);
        CHECK(malloc_usable_size(b->p) == oldus, "failed %s changed usable size %zu -> %zu", ename[e], oldus,
              malloc_usable_size(b->p));
        nrefail_checked++;
        return 0;
    }
    unsigned char *p = q;
    size_t bad = verifyblk(p, b->n, b->seed); /* old contents, old length */
    CHECK(bad == (size_t)-1, "%s(%zu -> %zu) lost contents at %zu", ename[e], b->n, n, bad);
    CHECK(((uintptr_t)p & 15) == 0 && malloc_usable_size(p) >= n, "%s(%zu): bad block", ename[e], n);
    b->p = p;
    b->n = n;
    b->seed = xorshift64(rng);
    fillblk(p, n, b->seed);
    return 1;
}

static void free_all(const char *what)
{
    long bad = 0;
    for (size_t i = 0; i < nblk; i++) {
        if (verifyblk(blk[i].p, blk[i].n, blk[i].seed) != (size_t)-1)
            bad++;
        free(blk[i].p);
    }
    CHECK(bad == 0, "%s: %ld blocks corrupted before free", what, bad);
    nblk = 0;
}


/* Phase 1: allocate until full. Returns bytes live at the end. */
static size_t fill_heap(uint64_t seed, long maxops, size_t maxlive)
{
    uint64_t rng = seed;
    long consec_small_fail = 0;
    size_t live = 0;
    int full_large = 0, full_huge = 0;
    while (consec_small_fail < NFAIL_STOP && ops < maxops && nblk < MAXBLK - 1) {
        uint64_t r = xorshift64(&rng);
        int cls = r % 16 == 0 ? 2 : r % 16 < 5 ? 1 : 0;
        /* once the bigger classes keep failing, mostly try smaller ones */
        if (cls == 2 && full_huge > 20 && r % 64) cls = 0;
        if (cls == 1 && full_large > 200 && r % 8) cls = 0;
        int e = (int)((r >> 8) % E_N);
        size_t n = rand_size(&rng, cls), align = rand_align(&rng);
        ops++;
        if ((e == E_REALLOC || e == E_REALLOCARRAY) && nblk > 0) {
            size_t i = (size_t)(xorshift64(&rng) % nblk);
            if (n <= blk[i].n) n = blk[i].n + 1 + n;
            size_t old = blk[i].n;
            if (grow(i, n, e, &rng)) {
                live += n - old;
                nsucc[e]++;
                consec_small_fail = 0;
                /* record as a plain malloc of the final size for the replay */
            } else {
                nfails++;
                nfail_e[e]++;
                if (cls_of(n) == 0) consec_small_fail++;
            }
            continue;
        }
        if (e == E_REALLOC || e == E_REALLOCARRAY) e = E_MALLOC;
        if (live > maxlive && cls) continue;
        int chk;
        unsigned char *p = do_alloc(e, n, align, &chk);
        if (!p) {
            nfails++;
            nfail_e[e]++;
            if (cls == 0) consec_small_fail++;
            if (cls == 1) full_large++;
            if (cls == 2) full_huge++;
            continue;
        }
        nsucc[e]++;
        consec_small_fail = 0;
        add_block(p, n, e, align, &rng);
        live += n;
    }
    return live;
}

/* Replay the recorded allocations of the classes in mask, in order; failures
 * are counted and skipped. */
static long replay(unsigned mask, long *nfail_out, const char *what)
{
    uint64_t rng = 0x5EED;
    long ok = 0, nf = 0;
    size_t n0 = nblk;
    for (size_t i = 0; i < nrec; i++) {
        struct rec *r = &recs[i];
        if (!(mask & (1u << r->cls))) continue;
        int chk;
        unsigned char *p = do_alloc(r->ent, r->n, r->align, &chk);
        ops++;
        if (!p) {
            if (nf++ < 5) {
                size_t lb[3] = {0, 0, 0};
                for (size_t j = 0; j < nblk; j++) lb[cls_of(blk[j].n)] += blk[j].n;
                fprintf(stderr, "  %s: replay %s(%zu, align %zu) failed (errno %d) after %ld ok; live small %.1f large %.1f huge %.1f MiB, mapped %.1f MiB\n", what,
                        ename[r->ent], r->n, r->align, errno, ok, mib(lb[0]), mib(lb[1]), mib(lb[2]), mib(vm_bytes()));
            }
            continue;
        }
        ok++;
        add_block(p, r->n, r->ent, r->align, &rng);
    }
    (void)n0;
    *nfail_out = nf;
    return ok;
}

static size_t vm_bytes(void)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return (size_t)strtoull(buf, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

static void counts(const char *tag)
{
    fprintf(stderr, "oom: %s ops=%ld failures=%ld realloc_failures_checked=%ld live_blocks=%zu\n", tag, ops,
            nfails, nrefail_checked, nblk);
    fprintf(stderr, "oom:  ok/fail per entry:");
    for (int e = 0; e < E_N; e++)
        fprintf(stderr, " %s=%ld/%ld", ename[e], nsucc[e], nfail_e[e]);
    fputc('\n', stderr);
}

/* Rebuild recs from the live blocks (realloc'd blocks count as malloc). */
static int by_size_desc(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}
static void snapshot_recs(void)
{
    nrec = 0;
    for (size_t i = 0; i < nblk; i++)
        record(E_MALLOC, blk[i].n, 16);
    /* largest first: the set fitted at once during the fill; on an empty heap
     * the largest blocks (own mappings, most address space) go first */
    qsort(recs, nrec, sizeof *recs, by_size_desc);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "rlimit";
    int sa = slaballoc_loaded();
    /* stderr only: unbuffered, never allocates (stdout's buffer would need malloc) */
    blk = mmap(NULL, MAXBLK * sizeof *blk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    recs = mmap(NULL, MAXBLK * sizeof *recs, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (blk == MAP_FAILED || recs == MAP_FAILED) DIE("mmap");
    fprintf(stderr, "oom: mode=%s allocator=%s SLABALLOC_FAIL_MAP_AFTER=%s\n", mode, sa ? "slaballoc" : "glibc",
            getenv("SLABALLOC_FAIL_MAP_AFTER") ? getenv("SLABALLOC_FAIL_MAP_AFTER") : "unset");

    if (strcmp(mode, "rlimit") == 0) {
        size_t extra = (argc > 2 ? strtoull(argv[2], NULL, 0) : 256) << 20;
        /* warm up the allocator (first arena) before measuring */
        free(malloc(100));
        size_t vm = vm_bytes();
        struct rlimit rl = {vm + extra, vm + extra};
        if (setrlimit(RLIMIT_AS, &rl) != 0) DIE("setrlimit: %s", strerror(errno));
        fprintf(stderr, "oom: address space %.1f MiB, RLIMIT_AS %.1f MiB\n", mib(vm), mib(vm + extra));
        uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 0xA11CE;
        size_t live = fill_heap(seed, 3000000, (size_t)-1);
        counts("fill");
        fprintf(stderr, "oom: live at failure %.1f MiB in %zu blocks\n", mib(live), nblk);
        CHECK(nfails > 0, "no allocation failed under RLIMIT_AS");
        snapshot_recs();
        free_all("fill");
        size_t want = 0;
        for (size_t i = 0; i < nrec; i++) want += recs[i].n;
        for (int round = 0; round < 2; round++) {
            const char *what = round ? "replay after malloc_trim" : "replay";
            if (round) fprintf(stderr, "oom: malloc_trim(0) = %d\n", malloc_trim(0));
            long nf, ok = replay(7, &nf, what);
            size_t got = 0;
            for (size_t i = 0; i < nblk; i++) got += blk[i].n;
            fprintf(stderr, "oom: %s: %ld of %zu allocations ok, %ld failed, %.1f of %.1f MiB (%.1f%%)\n", what, ok,
                    nrec, nf, mib(got), mib(want), 100.0 * got / (want ? want : 1));
            /* the exact set rarely fits again in another order, even under
             * glibc (fragmentation at the limit): ask for 90 % of the bytes */
            CHECK(got * 10 >= want * 9, "%s: only %.1f of %.1f MiB could be allocated again after freeing everything",
                  what, mib(got), mib(want));
            free_all(what);
        }
        /* and the heap still works at small sizes */
        for (int i = 0; i < 10000; i++) {
            void *p = malloc((size_t)i % 2000);
            CHECK(p != NULL, "malloc after OOM cycle failed");
            free(p);
        }
    } else if (strcmp(mode, "inject") == 0) {
        if (!getenv("SLABALLOC_FAIL_MAP_AFTER")) DIE("inject mode needs SLABALLOC_FAIL_MAP_AFTER");
        /* bound live memory: with a large N the mappings could take GiBs */
        size_t live = fill_heap(0xFA17, 400000, (size_t)1 << 30);
        counts("fill");
        fprintf(stderr, "oom: live at stop %.1f MiB in %zu blocks\n", mib(live), nblk);
        if (sa) CHECK(nfails > 0, "no allocation failed with fault injection");
        snapshot_recs();
        long rec_cls[3] = {0, 0, 0};
        for (size_t i = 0; i < nrec; i++) rec_cls[recs[i].cls]++;
        free_all("fill");
        /* no new mapping can be made: served from the arenas mapped during
         * the fill. Small sizes first (required in full), freed again, then
         * the large ones (page runs; required >= 90 % of the bytes) */
        long nf, ok = replay(1u << 0, &nf, "replay small");
        fprintf(stderr, "oom: replay small: %ld of %ld ok, %ld failed\n", ok, rec_cls[0], nf);
        CHECK(nf == 0, "replay small: %ld small allocations failed after freeing the same sizes", nf);
        free_all("replay small");
        if (argc > 2 && strcmp(argv[2], "trim") == 0)
            fprintf(stderr, "oom: malloc_trim(0) = %d\n", malloc_trim(0));
        size_t want = 0, got = 0;
        for (size_t i = 0; i < nrec; i++) if (recs[i].cls == 1) want += recs[i].n;
        ok = replay(1u << 1, &nf, "replay large");
        for (size_t i = 0; i < nblk; i++) got += blk[i].n;
        fprintf(stderr, "oom: replay large: %ld of %ld ok, %ld failed, %.1f of %.1f MiB (%.1f%%)\n", ok, rec_cls[1], nf,
                mib(got), mib(want), 100.0 * got / (want ? want : 1));
        CHECK(got * 10 >= want * 9, "replay large: only %.1f of %.1f MiB could be allocated again", mib(got), mib(want));
        ok = replay(1u << 2, &nf, "replay huge");
        fprintf(stderr, "oom: replay huge (not required): %ld of %ld ok, %ld failed\n", ok, rec_cls[2], nf);
        free_all("replay");
    } else {
        DIE("unknown mode %s", mode);
    }
    counts("total");
    fprintf(stderr, "oom: %s %s\n", mode, g_fail ? "FAILED" : "ok");
    return g_fail ? 1 : 0;
}
