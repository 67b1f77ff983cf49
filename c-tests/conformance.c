/* conformance.c - glibc-compatible semantics of every exported malloc entry point.
 *
 * Runs under plain glibc (all checks that are not marked [slaballoc] must pass
 * there too), under LD_PRELOAD=libslaballoc.so, and linked against
 * libslaballoc.a / libslaballoc.so. Optional symbols (free_sized, sa_*, ...)
 * are looked up with dlsym(RTLD_DEFAULT) and skipped with a note when absent.
 */
#define _GNU_SOURCE
#include "common.h"

#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <sys/mman.h>
#include <time.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#pragma GCC diagnostic ignored "-Wuse-after-free" /* failed realloc keeps the block */

/* Keep the compiler from reasoning about malloc results / sizes. */
#define OPAQUE(p) ({ __typeof__(p) _q = (p); __asm__ volatile("" : "+r"(_q)); _q; })
static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_ptrdiff_max = PTRDIFF_MAX;

static size_t page;
static int is_sa;

static void section(const char *name) { printf("conformance: %s\n", name); fflush(stdout); }

static int aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i = 0;
    for (; i < n && ((uintptr_t)(b + i) & 7); i++)
        if (b[i]) return 0;
    for (; i + 8 <= n; i += 8)
        if (*(const uint64_t *)(b + i)) return 0;
    for (; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* optional symbols */
typedef void *(*fn_malloc)(size_t);
typedef void (*fn_free)(void *);
typedef void *(*fn_calloc)(size_t, size_t);
typedef void *(*fn_realloc)(void *, size_t);
typedef void *(*fn_memalign)(size_t, size_t);
typedef int (*fn_posix_memalign)(void **, size_t, size_t);
typedef size_t (*fn_usable)(void *);
typedef void (*fn_free_sized)(void *, size_t);
typedef void (*fn_free_aligned_sized)(void *, size_t, size_t);

static void *opt(const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    if (!f)
        printf("  note: %s not found (skipped)\n", name);
    return f;
}

/* ------------------------------------------------------------------------ */
static void t_exports(void)
{
    static const char *names[] = {
        "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
        "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
        "cfree", "free_sized", "free_aligned_sized", "__libc_malloc",
        "__libc_calloc", "__libc_realloc", "__libc_free", "__libc_memalign",
        "__libc_valloc", "__libc_pvalloc", "__posix_memalign", "mallopt",
        "mallinfo", "mallinfo2", "malloc_trim", "malloc_stats", "malloc_info",
        "sa_malloc", "sa_free", "sa_calloc", "sa_realloc", "sa_aligned_alloc",
        "sa_usable_size",
    };
    Dl_info self, di;
    section("exported symbols [slaballoc]");
    if (!is_sa) {
        printf("  skip: slaballoc not loaded\n");
        return;
    }
    if (!dladdr(dlsym(RTLD_DEFAULT, "sa_malloc"), &self))
        DIE("dladdr(sa_malloc) failed");
    printf("  slaballoc object: %s\n", self.dli_fname);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *f = dlsym(RTLD_DEFAULT, names[i]);
        CHECK(f != NULL, "symbol %s not found at all", names[i]);
        if (!f) continue;
        CHECK(dladdr(f, &di) && di.dli_fbase == self.dli_fbase,
              "%s resolves to %s, not to slaballoc", names[i],
              dladdr(f, &di) ? di.dli_fname : "?");
    }
}

/* ------------------------------------------------------------------------ */
static void t_malloc_basic(void)
{
    section("malloc(0), alignment, usable size, free(NULL), errno");
    enum { NZ = 256 };
    void *z[NZ];
    for (int i = 0; i < NZ; i++) {
        z[i] = OPAQUE(malloc(0));
        CHECK(z[i] != NULL, "malloc(0) returned NULL");
        CHECK(aligned(z[i], 16), "malloc(0) = %p not 16-aligned", z[i]);
        for (int j = 0; j < i; j++)
            CHECK(z[i] != z[j], "malloc(0) returned %p twice", z[i]);
    }
    for (int i = 0; i < NZ; i++) free(z[i]);

    for (size_t n = 0; n <= 20000; n += (n < 4200 ? 1 : 97)) {
        unsigned char *p = OPAQUE(malloc(n));
        CHECK(p != NULL, "malloc(%zu) NULL", n);
        if (!p) continue;
        CHECK(aligned(p, 16), "malloc(%zu) = %p not 16-aligned", n, (void *)p);
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        if (u) { p[0] = 1; p[u - 1] = 2; }
        free(p);
    }
    for (size_t n = 16384; n <= (64u << 20); n = n * 3 / 2 + 1) {
        unsigned char *p = OPAQUE(malloc(n));
        CHECK(p && aligned(p, 16), "malloc(%zu) = %p", n, (void *)p);
        if (!p) continue;
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        for (size_t i = 0; i < u; i += 4096) p[i] = (unsigned char)i;
        p[u - 1] = 7;
        free(p);
    }
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) != 0");

    errno = 0;
    free(NULL);
    CHECK(errno == 0, "free(NULL) changed errno to %d", errno);
    static const size_t es[] = {1, 64, 1000, 5000, 40000, 200000, 1u << 20, 5u << 20, 40u << 20};
    for (size_t i = 0; i < sizeof es / sizeof *es; i++) {
        void *p = OPAQUE(malloc(es[i]));
        memset(p, 0x5a, es[i]);
        errno = EBADF;
        free(p);
        CHECK(errno == EBADF, "free of %zu-byte block changed errno to %d", es[i], errno);
        errno = ENOSPC;
        free(NULL);
        CHECK(errno == ENOSPC, "free(NULL) changed errno");
    }
}

/* Many live blocks of mixed sizes, whole usable sizes written: no overlap. */
static void t_heap_integrity(void)
{
    section("heap integrity (8000 live blocks, whole usable size written)");
    enum { N = 8000 };
    static unsigned char *p[N];
    static size_t u[N];
    uint64_t rng = 0x1234567;
    for (int i = 0; i < N; i++) {
        uint64_t r = xorshift64(&rng);
        size_t n = (r % 100 < 90) ? r % 512 : (r % 100 < 99) ? r % 32768 : r % 400000;
        p[i] = OPAQUE(malloc(n));
        CHECK(p[i] != NULL, "malloc(%zu)", n);
        if (!p[i]) DIE("out of memory");
        u[i] = malloc_usable_size(p[i]);
        CHECK(u[i] >= n, "usable %zu < %zu", u[i], n);
        fill(p[i], u[i], i);
        if (i % 3 == 2) { /* free some in the middle to create holes */
            int k = (int)(xorshift64(&rng) % (uint64_t)i);
            if (p[k]) {
                size_t off = verify(p[k], u[k], k);
                CHECK(off == (size_t)-1, "block %d (%zu B) corrupted at %zu", k, u[k], off);
                free(p[k]);
                p[k] = NULL;
            }
        }
    }
    for (int i = 0; i < N; i++) {
        int k = (int)((i * 7919u) % N);
        if (!p[k]) continue;
        size_t off = verify(p[k], u[k], k);
        CHECK(off == (size_t)-1, "block %d (%zu B) corrupted at %zu", k, u[k], off);
        free(p[k]);
        p[k] = NULL;
    }
}

/* ------------------------------------------------------------------------ */
static void t_enomem(void)
{
    section("ENOMEM / overflow");
    const size_t huge[] = {v_size_max, v_size_max - 4095, v_ptrdiff_max + 1, v_ptrdiff_max,
                           (size_t)1 << 62, v_size_max - 64};
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        size_t n = huge[i];
        errno = 0;
        void *p = OPAQUE(malloc(n));
        CHECK(p == NULL && errno == ENOMEM, "malloc(%#zx) = %p errno %d", n, p, errno);
        errno = 0;
        p = OPAQUE(calloc(1, n));
        CHECK(p == NULL && errno == ENOMEM, "calloc(1,%#zx) = %p errno %d", n, p, errno);
        errno = 0;
        p = OPAQUE(aligned_alloc(64, n));
        CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(64,%#zx) = %p errno %d", n, p, errno);
        errno = 0;
        p = OPAQUE(memalign(4096, n));
        CHECK(p == NULL && errno == ENOMEM, "memalign(4096,%#zx) = %p errno %d", n, p, errno);
        errno = 0;
        p = OPAQUE(valloc(n));
        CHECK(p == NULL && errno == ENOMEM, "valloc(%#zx) = %p errno %d", n, p, errno);
        errno = 0;
        p = OPAQUE(pvalloc(n));
        CHECK(p == NULL && errno == ENOMEM, "pvalloc(%#zx) = %p errno %d", n, p, errno);
        void *q = (void *)0x1234;
        int rc = posix_memalign(&q, 64, n);
        CHECK(rc == ENOMEM, "posix_memalign(64,%#zx) = %d", n, rc);
        CHECK(q == (void *)0x1234, "posix_memalign ENOMEM modified *memptr (%p)", q);
    }
    /* A request that fits the address space but not memory: in the default
     * overcommit mode (0, heuristic) the kernel refuses a mapping larger
     * than RAM + swap, and so must malloc, instead of succeeding on paper
     * and killing the program on first touch. Under strict overcommit (2)
     * it is refused too. Mode 1 (always) grants it: not checked there. */
    int mode = -1;
    FILE *oc = fopen("/proc/sys/vm/overcommit_memory", "r");
    if (oc) {
        if (fscanf(oc, "%d", &mode) != 1) mode = -1;
        fclose(oc);
    }
    if (mode == 0 || mode == 2) {
        const size_t tib = (size_t)1 << 40;
        errno = 0;
        void *p = OPAQUE(malloc(tib));
        CHECK(p == NULL && errno == ENOMEM, "malloc(1 TiB) = %p errno %d (overcommit mode %d)", p, errno, mode);
        free(p);
        errno = 0;
        p = OPAQUE(calloc(1, tib));
        CHECK(p == NULL && errno == ENOMEM, "calloc(1, 1 TiB) = %p errno %d", p, errno);
        free(p);
        void *q = (void *)0x1234;
        int rc = posix_memalign(&q, tib, tib);
        CHECK(rc == ENOMEM && q == (void *)0x1234, "posix_memalign(1 TiB, 1 TiB) = %d, %p", rc, q);
        void *b = OPAQUE(malloc(100));
        errno = 0;
        p = OPAQUE(realloc(b, tib));
        CHECK(p == NULL && errno == ENOMEM, "realloc(p, 1 TiB) = %p errno %d", p, errno);
        free(b);
    } else {
        printf("conformance: malloc(1 TiB) not checked: vm.overcommit_memory=%d\n", mode);
    }
    /* calloc / reallocarray multiplication overflow */
    const size_t ov[][2] = {{v_size_max / 2 + 1, 2}, {v_size_max, v_size_max}, {(size_t)1 << 32, (size_t)1 << 32},
                            {2, v_size_max / 2 + 1}, {v_size_max / 3 + 1, 3}, {65537, v_size_max / 65536}};
    for (size_t i = 0; i < sizeof ov / sizeof *ov; i++) {
        errno = 0;
        void *p = OPAQUE(calloc(ov[i][0], ov[i][1]));
        CHECK(p == NULL && errno == ENOMEM, "calloc(%#zx,%#zx) = %p errno %d", ov[i][0], ov[i][1], p, errno);
        errno = 0;
        p = OPAQUE(reallocarray(NULL, ov[i][0], ov[i][1]));
        CHECK(p == NULL && errno == ENOMEM, "reallocarray(NULL,%#zx,%#zx) = %p errno %d", ov[i][0], ov[i][1], p, errno);
        unsigned char *b = OPAQUE(malloc(100));
        fill(b, 100, 77);
        errno = 0;
        p = OPAQUE(reallocarray(b, ov[i][0], ov[i][1]));
        CHECK(p == NULL && errno == ENOMEM, "reallocarray(p,%#zx,%#zx) = %p errno %d", ov[i][0], ov[i][1], p, errno);
        CHECK(verify(b, 100, 77) == (size_t)-1, "reallocarray failure clobbered old block");
        free(b);
    }
    int *a = reallocarray(NULL, 10, sizeof(int));
    CHECK(a != NULL, "reallocarray(NULL,10,4)");
    for (int i = 0; i < 10; i++) a[i] = i * 3;
    a = reallocarray(a, 1000, sizeof(int));
    CHECK(a != NULL, "reallocarray grow");
    if (a) {
        for (int i = 0; i < 10; i++) CHECK(a[i] == i * 3, "reallocarray lost data at %d", i);
        free(a);
    }
    void *z = OPAQUE(calloc(0, 0));
    CHECK(z != NULL, "calloc(0,0) NULL");
    free(z);
    z = OPAQUE(calloc(0, 7));
    CHECK(z != NULL, "calloc(0,7) NULL");
    free(z);
    z = OPAQUE(calloc(7, 0));
    CHECK(z != NULL, "calloc(7,0) NULL");
    free(z);
}

/* ------------------------------------------------------------------------ */
static size_t g_sizes[512];
static int g_nsizes;

static void build_sizes(void)
{
    for (size_t n = 1; n <= 32; n++) g_sizes[g_nsizes++] = n;
    for (int k = 5; k <= 26; k++) {
        size_t b = (size_t)1 << k;
        size_t c[] = {b - 1, b, b + 1, b + b / 4, b + b / 2 + 8, b + 3 * b / 4};
        for (int j = 0; j < 6; j++)
            if (c[j] <= (64u << 20)) g_sizes[g_nsizes++] = c[j];
    }
}

static void realloc_one(size_t s, size_t t, uint64_t seed)
{
    unsigned char *p = OPAQUE(malloc(s));
    CHECK(p != NULL, "malloc(%zu)", s);
    if (!p) return;
    size_t u = malloc_usable_size(p);
    fill(p, u, seed);
    unsigned char *q = OPAQUE(realloc(p, t));
    CHECK(q != NULL, "realloc(%zu -> %zu) NULL", s, t);
    if (!q) { free(p); return; }
    CHECK(aligned(q, 16), "realloc(%zu -> %zu) = %p not 16-aligned", s, t, (void *)q);
    size_t nu = malloc_usable_size(q);
    CHECK(nu >= t, "realloc(%zu -> %zu): usable %zu", s, t, nu);
    size_t keep = u < t ? u : t;
    size_t off = verify(q, keep, seed);
    CHECK(off == (size_t)-1, "realloc(%zu [usable %zu] -> %zu) lost byte %zu of %zu", s, u, t, off, keep);
    q[nu - 1] = 1;
    free(q);
}

static void t_realloc(void)
{
    section("realloc: growth / shrink across size classes, whole usable size kept");
    build_sizes();
    int pairs = 0;
    for (int i = 0; i < g_nsizes; i++) {
        size_t s = g_sizes[i];
        if (s >= (1u << 20)) {
            size_t ts[] = {s / 2, s - 1, s + 1, s * 2 > (64u << 20) ? (64u << 20) : s * 2, 100, 5000};
            for (int j = 0; j < 6; j++, pairs++) realloc_one(s, ts[j], (uint64_t)i * 1000 + j);
        } else {
            for (int j = 0; j < g_nsizes; j++) {
                size_t t = g_sizes[j];
                if (t > 4 * s + 64 || 4 * t + 64 < s) continue;
                realloc_one(s, t, (uint64_t)i * 1000 + j);
                pairs++;
            }
        }
    }
    printf("  %d (old,new) pairs\n", pairs);

    /* one block walked up 1 B .. 64 MiB and back down, whole usable written */
    unsigned char *p = NULL;
    size_t u = 0;
    uint64_t seed = 0;
    for (int dir = 0; dir < 2; dir++) {
        for (int k = 0; k < g_nsizes; k++) {
            size_t t = g_sizes[dir == 0 ? k : g_nsizes - 1 - k];
            unsigned char *q = OPAQUE(realloc(p, t));
            CHECK(q != NULL, "realloc chain -> %zu NULL", t);
            if (!q) break;
            if (p) {
                size_t keep = u < t ? u : t;
                size_t off = verify(q, keep, seed);
                CHECK(off == (size_t)-1, "realloc chain %zu -> %zu lost byte %zu", u, t, off);
            }
            p = q;
            u = malloc_usable_size(p);
            CHECK(u >= t, "usable");
            fill(p, u, ++seed);
        }
    }
    free(p);

    section("realloc(NULL,n), realloc(p,0), failed realloc keeps block");
    p = OPAQUE(realloc(NULL, 100));
    CHECK(p != NULL && aligned(p, 16) && malloc_usable_size(p) >= 100, "realloc(NULL,100)");
    free(p);
    p = OPAQUE(realloc(NULL, 0));
    CHECK(p != NULL, "realloc(NULL,0) = NULL (glibc: unique pointer like malloc(0))");
    free(p);
    static const size_t zs[] = {1, 100, 3000, 70000, 1u << 20, 9u << 20};
    for (size_t i = 0; i < sizeof zs / sizeof *zs; i++) {
        void *b = OPAQUE(malloc(zs[i]));
        memset(b, 1, zs[i]);
        void *r = OPAQUE(realloc(b, 0));
        CHECK(r == NULL, "realloc(p[%zu],0) = %p, want NULL", zs[i], r);
        free(r);
    }
    /* realloc(p,0) must free: 3000 x 4 MiB would be 12 GiB if leaked (RSS check) */
    size_t rss0 = rss_bytes();
    for (int i = 0; i < 3000; i++) {
        unsigned char *b = OPAQUE(malloc(4u << 20));
        for (size_t o = 0; o < (4u << 20); o += 4096) b[o] = 1;
        OPAQUE(realloc(b, 0));
    }
    size_t rss1 = rss_bytes();
    CHECK(rss1 < rss0 + (200u << 20), "realloc(p,0) leaks? RSS %zu -> %zu", rss0, rss1);

    static const size_t fs[] = {1, 100, 5000, 200000, 4u << 20};
    const size_t hs[] = {v_size_max, v_ptrdiff_max + 1, v_ptrdiff_max, v_size_max - 16, (size_t)1 << 62};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) {
        unsigned char *b = OPAQUE(malloc(fs[i]));
        size_t bu = malloc_usable_size(b);
        fill(b, bu, 4242 + i);
        for (size_t j = 0; j < sizeof hs / sizeof *hs; j++) {
            errno = 0;
            void *r = OPAQUE(realloc(b, hs[j]));
            CHECK(r == NULL && errno == ENOMEM, "realloc(%zu-byte block, %#zx) = %p errno %d", fs[i], hs[j], r, errno);
            CHECK(verify(b, bu, 4242 + i) == (size_t)-1, "failed realloc clobbered the %zu-byte block", fs[i]);
        }
        /* Only the first min(old, new) bytes carry over: under the heap
         * profiler a sampled 100-byte block is a page (usable 4096), which
         * realloc to 300 bytes may move to a 320-byte chunk. */
        size_t keep = bu < fs[i] * 3 ? bu : fs[i] * 3;
        unsigned char *r = OPAQUE(realloc(b, fs[i] * 3));
        CHECK(r && verify(r, keep, 4242 + i) == (size_t)-1, "realloc after failed realloc");
        free(r);
    }
}

/* ------------------------------------------------------------------------ */
static const size_t grid_sizes[] = {
    0, 1, 8, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257,
    511, 512, 513, 1000, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192,
    8193, 12288, 16383, 16384, 16385, 32768, 65535, 65536, 65537, 131071, 131072, 131073,
    262144, 262145, 524288, 1048575, 1048576, 1048577, 2097152, 2097153, 3145728, 3145729};
#define NGRID (sizeof grid_sizes / sizeof *grid_sizes)

static void grid(const char *what, void *(*alloc)(size_t a, size_t n), void (*release)(void *),
                 size_t min_align)
{
    static unsigned char *p[NGRID];
    static size_t u[NGRID];
    long count = 0;
    for (size_t a = min_align; a <= (1u << 20); a *= 2) {
        for (size_t i = 0; i < NGRID; i++) {
            size_t n = grid_sizes[i];
            p[i] = alloc(a, n);
            count++;
            CHECK(p[i] != NULL, "%s(%zu, %zu) = NULL (errno %d)", what, a, n, errno);
            if (!p[i]) continue;
            CHECK(aligned(p[i], a), "%s(%zu, %zu) = %p misaligned", what, a, n, (void *)p[i]);
            u[i] = malloc_usable_size(p[i]);
            CHECK(u[i] >= n, "%s(%zu, %zu): usable %zu", what, a, n, u[i]);
            fill(p[i], u[i], a * 131 + i);
        }
        for (size_t i = 0; i < NGRID; i++) {
            if (!p[i]) continue;
            size_t off = verify(p[i], u[i], a * 131 + i);
            CHECK(off == (size_t)-1, "%s(%zu, %zu) block corrupted at %zu", what, a, grid_sizes[i], off);
            release(p[i]);
        }
    }
    printf("  %s: %ld (alignment, size) combinations\n", what, count);
}

static void *g_aligned_alloc(size_t a, size_t n) { return aligned_alloc(a, n); }
static void *g_memalign(size_t a, size_t n) { return memalign(a, n); }
static void *g_posix_memalign(size_t a, size_t n)
{
    void *p = NULL;
    int rc = posix_memalign(&p, a, n);
    if (rc) { errno = rc; return NULL; }
    return p;
}
static fn_memalign libc_memalign_p;
static void *g_libc_memalign(size_t a, size_t n) { return libc_memalign_p(a, n); }
static fn_posix_memalign uu_posix_memalign_p;
static void *g___posix_memalign(size_t a, size_t n)
{
    void *p = NULL;
    int rc = uu_posix_memalign_p(&p, a, n);
    if (rc) { errno = rc; return NULL; }
    return p;
}
static fn_memalign sa_aligned_alloc_p;
static fn_free sa_free_p;
static void *g_sa_aligned_alloc(size_t a, size_t n) { return sa_aligned_alloc_p(a, n); }
static void g_free(void *p) { free(p); }
static void g_sa_free(void *p) { sa_free_p(p); }

static void t_aligned(void)
{
    section("aligned_alloc / memalign / posix_memalign grid (align 1 B..1 MiB, size 0..3 MiB)");
    grid("aligned_alloc", g_aligned_alloc, g_free, 1);
    grid("memalign", g_memalign, g_free, 1);
    grid("posix_memalign", g_posix_memalign, g_free, sizeof(void *));
    if ((libc_memalign_p = (fn_memalign)opt("__libc_memalign")))
        grid("__libc_memalign", g_libc_memalign, g_free, 1);
    if ((uu_posix_memalign_p = (fn_posix_memalign)opt("__posix_memalign")))
        grid("__posix_memalign", g___posix_memalign, g_free, sizeof(void *));
    sa_aligned_alloc_p = (fn_memalign)dlsym(RTLD_DEFAULT, "sa_aligned_alloc");
    sa_free_p = (fn_free)dlsym(RTLD_DEFAULT, "sa_free");
    if (sa_aligned_alloc_p && sa_free_p && dlsym(RTLD_DEFAULT, "sa_usable_size"))
        grid("sa_aligned_alloc", g_sa_aligned_alloc, g_sa_free, 1);
    else
        printf("  note: sa_aligned_alloc not found (skipped)\n");

    section("posix_memalign EINVAL, *memptr untouched");
    const size_t bad[] = {0, 1, 2, 3, 4, 5, 12, 24, 40, 48, 96, 3 * sizeof(void *), 4097, 65536 + 8,
                          v_size_max, v_size_max / 2 + 2};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *q = (void *)0xdeadbeef;
        int rc = posix_memalign(&q, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(align %#zx) = %d, want EINVAL", bad[i], rc);
        CHECK(q == (void *)0xdeadbeef, "posix_memalign(align %#zx) modified *memptr", bad[i]);
        if (uu_posix_memalign_p) {
            q = (void *)0xdeadbeef;
            rc = uu_posix_memalign_p(&q, bad[i], 64);
            CHECK(rc == EINVAL && q == (void *)0xdeadbeef, "__posix_memalign(align %#zx) = %d", bad[i], rc);
        }
    }
    void *q = NULL;
    int rc = posix_memalign(&q, sizeof(void *), 0);
    CHECK(rc == 0 && q, "posix_memalign(8, 0) = %d", rc);
    free(q);

    section("non-power-of-two alignment (glibc rounds up)");
    const size_t npot[] = {3, 24, 48, 100, 3000, 5000, 12288};
    for (size_t i = 0; i < sizeof npot / sizeof *npot; i++) {
        size_t want = 1;
        while (want < npot[i]) want *= 2;
        void *m = OPAQUE(memalign(npot[i], 100));
        CHECK(m && aligned(m, want), "memalign(%zu,100) = %p, want %zu-aligned", npot[i], m, want);
        free(m);
        errno = 0;
        void *a = OPAQUE(aligned_alloc(npot[i], 100));
        CHECK((a && aligned(a, want)) || (!a && errno == EINVAL),
              "aligned_alloc(%zu,100) = %p errno %d (want %zu-aligned, or NULL+EINVAL)", npot[i], a, errno, want);
        if (i == 0) printf("  aligned_alloc(3,100) -> %s\n", a ? "rounded up" : "EINVAL");
        free(a);
    }

    section("valloc / pvalloc page aligned, pvalloc rounds to page");
    fn_malloc lv = (fn_malloc)opt("__libc_valloc"), lpv = (fn_malloc)opt("__libc_pvalloc");
    const size_t vs[] = {1, 100, 4095, 4096, 4097, 10000, 100000, (1u << 20) + 1, 3u << 20};
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) {
        size_t n = vs[i], rounded = (n + page - 1) & ~(page - 1);
        fn_malloc fs[4] = {valloc, pvalloc, lv, lpv};
        const char *nm[4] = {"valloc", "pvalloc", "__libc_valloc", "__libc_pvalloc"};
        for (int k = 0; k < 4; k++) {
            if (!fs[k]) continue;
            unsigned char *b = OPAQUE(fs[k](n));
            CHECK(b && aligned(b, page), "%s(%zu) = %p", nm[k], n, (void *)b);
            if (!b) continue;
            size_t u = malloc_usable_size(b);
            size_t want = (k & 1) ? rounded : n;
            CHECK(u >= want, "%s(%zu): usable %zu < %zu", nm[k], n, u, want);
            fill(b, u, n);
            CHECK(verify(b, u, n) == (size_t)-1, "%s data", nm[k]);
            free(b);
        }
    }
    void *v0 = OPAQUE(valloc(0)), *pv0 = OPAQUE(pvalloc(0));
    CHECK(v0 && aligned(v0, page), "valloc(0) = %p", v0);
    CHECK(pv0 && aligned(pv0, page), "pvalloc(0) = %p", pv0);
    free(v0);
    free(pv0);
}

/* ------------------------------------------------------------------------ */
static void t_calloc(void)
{
    section("calloc zeroes (fresh, after dirty free, large)");
    static const size_t cs[] = {1, 7, 16, 24, 48, 64, 100, 128, 250, 512, 1000, 1024, 2000, 4096,
                                5000, 8192, 16384, 20000, 32768, 65536, 100000, 131072, 250000};
    enum { K = 64 };
    void *blk[K];
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        size_t n = cs[i];
        for (int rep = 0; rep < 20; rep++) {
            /* one at a time: malloc, dirty, free, calloc */
            unsigned char *d = OPAQUE(malloc(n));
            memset(d, 0xAA, malloc_usable_size(d));
            free(d);
            unsigned char *c = OPAQUE(calloc(1, n));
            CHECK(c && all_zero(c, n), "calloc(1,%zu) after dirty free not zero", n);
            CHECK(aligned(c, 16), "calloc(1,%zu) = %p not 16-aligned", n, (void *)c);
            memset(c, 0xAA, malloc_usable_size(c));
            free(c);
            c = OPAQUE(calloc(n, 1));
            CHECK(c && all_zero(c, n), "calloc(%zu,1) after dirty free not zero", n);
            memset(c, 0xBB, malloc_usable_size(c));
            free(c);
        }
        /* a batch: many dirty blocks freed, then calloc the same count */
        for (int k = 0; k < K; k++) {
            blk[k] = OPAQUE(malloc(n));
            memset(blk[k], 0xAA, malloc_usable_size(blk[k]));
        }
        for (int k = 0; k < K; k++) free(blk[k]);
        for (int k = 0; k < K; k++) {
            blk[k] = OPAQUE(calloc(1, n));
            CHECK(blk[k] && all_zero(blk[k], n), "batch calloc(%zu) #%d not zero", n, k);
        }
        for (int k = 0; k < K; k++) free(blk[k]);
    }
    int *arr = OPAQUE(calloc(1000, sizeof(int)));
    CHECK(arr && all_zero(arr, 1000 * sizeof(int)), "calloc(1000,4)");
    free(arr);

    static const size_t ls[] = {1u << 20, (1u << 20) + 1, 2u << 20, 3u << 20, (4u << 20) - 1, 6u << 20,
                                8u << 20, 12u << 20, 16u << 20, 24u << 20, 32u << 20, 48u << 20, 64u << 20};
    for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) {
        size_t n = ls[i];
        unsigned char *c = OPAQUE(calloc(1, n));
        CHECK(c && aligned(c, 16) && all_zero(c, n), "large calloc(%zu) not zero", n);
        if (!c) continue;
        memset(c, 0xAA, n);
        free(c);
        c = OPAQUE(calloc(n / 16, 16));
        CHECK(c && all_zero(c, n / 16 * 16), "large calloc(%zu) after dirty free not zero", n);
        free(c);
    }
}

/* ------------------------------------------------------------------------ */
static void t_extras(void)
{
    section("mallopt, mallinfo, mallinfo2, malloc_trim, malloc_stats, malloc_info");
    void *keep = OPAQUE(malloc(1000));
    int r = mallopt(M_MXFAST, 64 * (int)sizeof(size_t) / 4); /* glibc's default value */
    printf("  mallopt(M_MXFAST, default) = %d\n", r);
    r = mallopt(-12345, 0);
    printf("  mallopt(unknown) = %d\n", r);
    struct mallinfo mi = mallinfo();
    struct mallinfo2 mi2 = mallinfo2();
    printf("  mallinfo.arena=%d uordblks=%d; mallinfo2.arena=%zu uordblks=%zu\n", mi.arena, mi.uordblks,
           mi2.arena, mi2.uordblks);
    r = malloc_trim(0);
    CHECK(r == 0 || r == 1, "malloc_trim(0) = %d", r);
    r = malloc_trim(1u << 20);
    CHECK(r == 0 || r == 1, "malloc_trim(1 MiB) = %d", r);
    fflush(stdout);
    malloc_stats(); /* prints to stderr */
    FILE *f = tmpfile();
    CHECK(f != NULL, "tmpfile");
    if (f) {
        r = malloc_info(0, f);
        CHECK(r == 0, "malloc_info(0, f) = %d", r);
        printf("  malloc_info wrote %ld bytes\n", ftell(f));
        fclose(f);
    }
    free(keep);
}

/* ------------------------------------------------------------------------ */
static void t_aliases(void)
{
    section("__libc_* aliases, cfree, free_sized, free_aligned_sized");
    fn_malloc lm = (fn_malloc)opt("__libc_malloc");
    fn_free lf = (fn_free)opt("__libc_free");
    fn_calloc lc = (fn_calloc)opt("__libc_calloc");
    fn_realloc lr = (fn_realloc)opt("__libc_realloc");
    fn_free cf = (fn_free)opt("cfree");
    fn_free_sized fsz = (fn_free_sized)opt("free_sized");
    fn_free_aligned_sized fas = (fn_free_aligned_sized)opt("free_aligned_sized");

    for (size_t n = 0; n < 300000; n = n * 2 + 7) {
        if (lm) {
            unsigned char *p = lm(n);
            CHECK(p && aligned(p, 16) && malloc_usable_size(p) >= n, "__libc_malloc(%zu)", n);
            fill(p, n, n);
            if (lr) {
                unsigned char *q = lr(p, n * 2 + 1);
                CHECK(q && verify(q, n, n) == (size_t)-1, "__libc_realloc(%zu -> %zu)", n, n * 2 + 1);
                p = q;
            }
            if (lf) lf(p); else free(p);
        }
        if (lc) {
            unsigned char *d = malloc(n + 1);
            memset(d, 0xAA, n + 1);
            free(d);
            unsigned char *p = lc(n + 1, 1);
            CHECK(p && all_zero(p, n + 1), "__libc_calloc(%zu,1) not zero", n + 1);
            free(p);
        }
        if (cf) {
            void *p = OPAQUE(malloc(n));
            errno = ERANGE;
            cf(p);
            CHECK(errno == ERANGE, "cfree changed errno");
        }
        if (fsz) {
            void *p = OPAQUE(malloc(n));
            memset(p, 1, n);
            errno = ERANGE;
            fsz(p, n);
            CHECK(errno == ERANGE, "free_sized changed errno");
            p = OPAQUE(calloc(n + 3, 1));
            fsz(p, n + 3);
            fsz(NULL, 0);
        }
        if (fas) {
            for (size_t a = 16; a <= 65536; a *= 16) {
                size_t sz = (n + a - 1) / a * a; /* aligned_alloc conventionally wants a multiple */
                void *p = OPAQUE(aligned_alloc(a, sz));
                CHECK(p && aligned(p, a), "aligned_alloc(%zu,%zu)", a, sz);
                fas(p, a, sz);
            }
            fas(NULL, 64, 0);
        }
    }
    /* cross-family: __libc_malloc with free and malloc with __libc_free */
    if (lm && lf) {
        for (int i = 0; i < 1000; i++) {
            void *a = lm(i * 13), *b = OPAQUE(malloc(i * 17));
            free(a);
            lf(b);
        }
    }

    section("sa_* prefixed API");
    fn_malloc sm = (fn_malloc)dlsym(RTLD_DEFAULT, "sa_malloc");
    fn_free sf = (fn_free)dlsym(RTLD_DEFAULT, "sa_free");
    fn_calloc sc = (fn_calloc)dlsym(RTLD_DEFAULT, "sa_calloc");
    fn_realloc sr = (fn_realloc)dlsym(RTLD_DEFAULT, "sa_realloc");
    fn_memalign sal = (fn_memalign)dlsym(RTLD_DEFAULT, "sa_aligned_alloc");
    fn_usable su = (fn_usable)dlsym(RTLD_DEFAULT, "sa_usable_size");
    if (!(sm && sf && sc && sr && sal && su)) {
        printf("  note: sa_* API not (fully) present: skipped%s\n", is_sa ? " [FAIL under slaballoc]" : "");
        CHECK(!is_sa, "sa_* API incomplete under slaballoc");
        return;
    }
    for (size_t n = 0; n < (8u << 20); n = n * 3 + 5) {
        unsigned char *p = sm(n);
        CHECK(p && aligned(p, 16), "sa_malloc(%zu) = %p", n, (void *)p);
        size_t u = su(p);
        CHECK(u >= n, "sa_usable_size %zu < %zu", u, n);
        CHECK(u == malloc_usable_size(p), "sa_usable_size %zu != malloc_usable_size %zu", u, malloc_usable_size(p));
        fill(p, u, n);
        unsigned char *q = sr(p, n * 2 + 3);
        CHECK(q && verify(q, u < n * 2 + 3 ? u : n * 2 + 3, n) == (size_t)-1, "sa_realloc lost data (%zu)", n);
        sf(q);
        unsigned char *d = sm(n + 1);
        memset(d, 0xAA, su(d));
        sf(d);
        unsigned char *c = sc(1, n + 1);
        CHECK(c && all_zero(c, n + 1), "sa_calloc(1,%zu) not zero", n + 1);
        sf(c);
        for (size_t a = 1; a <= (1u << 20); a *= 4) {
            void *al = sal(a, n);
            CHECK(al && aligned(al, a) && su(al) >= n, "sa_aligned_alloc(%zu,%zu) = %p", a, n, al);
            sf(al);
        }
    }
    errno = 0;
    CHECK(sm(v_size_max) == NULL && errno == ENOMEM, "sa_malloc(SIZE_MAX)");
    errno = 0;
    CHECK(sc(v_size_max, 2) == NULL && errno == ENOMEM, "sa_calloc overflow");
    sf(NULL);
    void *p = sm(10);
    CHECK(sr(p, 0) == NULL, "sa_realloc(p,0) != NULL");
}

/* ------------------------------------------------------------------------ */
static void t_foreign(void)
{
    section("foreign pointers (glibc's own malloc) through free/realloc/malloc_usable_size");
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    CHECK(h != NULL, "dlopen(libc.so.6, NOLOAD)");
    if (!h) return;
    fn_malloc gm = (fn_malloc)dlsym(h, "malloc");
    CHECK(gm != NULL, "dlsym(libc, malloc)");
    if (!gm) return;
    Dl_info di;
    if (dladdr((void *)gm, &di)) printf("  glibc malloc from %s%s\n", di.dli_fname,
                                         (void *)gm == (void *)malloc ? " (same as malloc: glibc run)" : "");
    static const size_t fs[] = {1, 24, 100, 1000, 5000, 70000, 200000, 300000, 2u << 20};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) {
        size_t n = fs[i];
        /* usable size + free */
        unsigned char *a = gm(n);
        CHECK(a != NULL, "glibc malloc(%zu)", n);
        size_t u = malloc_usable_size(a);
        CHECK(u >= n, "malloc_usable_size(foreign %zu) = %zu", n, u);
        memset(a, 0x11, n);
        errno = EXDEV;
        free(a);
        CHECK(errno == EXDEV, "free(foreign) changed errno to %d", errno);
        /* realloc grow and shrink copy contents */
        size_t ts[] = {n * 2 + 10, n / 2 + 1, n + 1};
        for (int j = 0; j < 3; j++) {
            unsigned char *b = gm(n);
            fill(b, n, n + j);
            unsigned char *q = OPAQUE(realloc(b, ts[j]));
            CHECK(q != NULL, "realloc(foreign %zu -> %zu)", n, ts[j]);
            if (!q) continue;
            size_t keep = n < ts[j] ? n : ts[j];
            CHECK(verify(q, keep, n + j) == (size_t)-1, "realloc(foreign %zu -> %zu) lost data", n, ts[j]);
            CHECK(malloc_usable_size(q) >= ts[j], "usable after foreign realloc");
            free(q);
        }
        /* failed realloc of a foreign block keeps it */
        unsigned char *c = gm(n);
        fill(c, n, 99);
        errno = 0;
        void *r = OPAQUE(realloc(c, v_size_max));
        CHECK(r == NULL && errno == ENOMEM, "realloc(foreign, SIZE_MAX) = %p errno %d", r, errno);
        CHECK(verify(c, n, 99) == (size_t)-1, "failed realloc clobbered foreign block");
        free(c);
        /* realloc(foreign, 0) frees */
        c = gm(n);
        CHECK(OPAQUE(realloc(c, 0)) == NULL, "realloc(foreign,0) != NULL");
    }
    /* lots of them, interleaved with our own */
    enum { M = 4000 };
    static void *mix[M];
    for (int i = 0; i < M; i++) mix[i] = (i & 1) ? gm(i % 700) : OPAQUE(malloc(i % 700));
    for (int i = 0; i < M; i++) free(mix[(i * 2477) % M]);
}

/* errno across the slow paths that come 50 ms after start-up, where
 * slaballoc makes its live-view file (mkdir's EEXIST once leaked out of a
 * free there): large blocks, so that every free is a slow path. Run
 * first, so that these are the first slow paths after the 50 ms. */
static void t_errno_late(void)
{
    struct timespec ts = {0, 60 * 1000 * 1000};
    nanosleep(&ts, NULL);
    for (int i = 0; i < 64; i++) {
        errno = ERANGE;
        void *p = OPAQUE(malloc(200000 + (size_t)i * 4096));
        CHECK(p && errno == ERANGE, "malloc %d after 60 ms changed errno to %d", i, errno);
        errno = EBADF;
        free(p);
        CHECK(errno == EBADF, "free %d after 60 ms changed errno to %d", i, errno);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    page = (size_t)sysconf(_SC_PAGESIZE);
    is_sa = slaballoc_loaded();
    printf("conformance: allocator = %s\n", is_sa ? "slaballoc" : "glibc (slaballoc-only checks skipped)");
    t_errno_late(); /* first: its slow paths are the first after 50 ms */
    t_exports();
    t_malloc_basic();
    t_heap_integrity();
    t_enomem();
    t_realloc();
    t_aligned();
    t_calloc();
    t_extras();
    t_aliases();
    t_foreign();
    if (g_fail) {
        printf("conformance: FAILED %d checks\n", g_fail);
        return 1;
    }
    printf("conformance: ok\n");
    return 0;
}
