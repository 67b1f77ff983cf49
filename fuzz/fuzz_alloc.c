/* fuzz_alloc.c - operation-sequence fuzzer for slaballoc.
 *
 * The input is a sequence of 4-byte operations (op, slot, size lo, size hi)
 * on 64 slots, executed against the allocator linked into the program
 * (target/release/libslaballoc.a, which replaces malloc for the whole
 * process). A model keeps (pointer, size, fill byte) per slot. Operations:
 * malloc, calloc, realloc (grow/shrink/0), reallocarray, aligned_alloc,
 * posix_memalign (also invalid alignments: EINVAL), memalign, valloc, free,
 * malloc_usable_size, and "hand over": a second thread verifies and frees
 * the block (a remote free). Sizes: 0 .. 1 KiB, .. 64 KiB, .. 4 MiB;
 * alignments 16 B .. 1 MiB. After every operation the touched block is
 * checked: contents (fill byte; blocks above 128 KiB in their first and last
 * 64 KiB and one byte per page), usable size >= size, alignment, calloc
 * zeroing, realloc prefix. At the end of each input every block is verified
 * and freed. A failed check prints the op and aborts (libFuzzer saves the
 * input).
 *
 * Built two ways by fuzz/run.sh:
 *   clang -fsanitize=fuzzer (no AddressSanitizer: it would replace malloc)
 *   gcc -DSTANDALONE: deterministic driver, N random inputs from a seed
 *   (coverage-less fallback when libFuzzer is not available).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *sa_malloc(size_t);
extern size_t sa_usable_size(void *);

#define NSLOT 64
#define EDGE 65536

struct slot {
    unsigned char *p;
    size_t n;
    unsigned char c;
};
static struct slot S[NSLOT];
static unsigned long long total_ops, total_inputs;
static int cur_op, cur_slot;
static size_t cur_size;

/* through volatile pointers: compilers may fold malloc(absurd size) to NULL
 * without calling it (clang -O1 did), which would skip the errno check */
static void *(*volatile malloc_v)(size_t) = malloc;
static void *(*volatile calloc_v)(size_t, size_t) = calloc;
static void *(*volatile realloc_v)(void *, size_t) = realloc;

static void die(const char *what, const void *p, size_t a, size_t b)
{
    fprintf(stderr, "fuzz_alloc: CHECK FAILED: %s (ptr %p, %zu, %zu) at op %d slot %d size %zu\n", what, p, a, b,
            cur_op, cur_slot, cur_size);
    abort();
}

static const unsigned char *find_bad(const unsigned char *p, size_t a, size_t b, unsigned char c)
{
    for (size_t i = a; i < b; i++)
        if (p[i] != c) return p + i;
    return NULL;
}
/* contents check: all of it up to 128 KiB, else edges + one byte per page */
static void check_fill(const unsigned char *p, size_t n, unsigned char c, const char *what)
{
    if (n <= 2 * EDGE) {
        if (find_bad(p, 0, n, c)) die(what, p, n, (size_t)(find_bad(p, 0, n, c) - p));
        return;
    }
    if (find_bad(p, 0, EDGE, c) || find_bad(p, n - EDGE, n, c)) die(what, p, n, c);
    for (size_t i = EDGE; i < n - EDGE; i += 4096)
        if (p[i] != c) die(what, p, n, i);
}

static void check_block(struct slot *s, size_t align)
{
    if (!s->p) return;
    if ((uintptr_t)s->p % 16) die("not 16-byte aligned", s->p, s->n, 16);
    if (align && (uintptr_t)s->p % align) die("misaligned", s->p, s->n, align);
    size_t u = malloc_usable_size(s->p);
    if (u < s->n) die("usable size < size", s->p, s->n, u);
    check_fill(s->p, s->n, s->c, "contents");
}

/* ---- the second thread: verifies and frees blocks handed to it ---- */
static sem_t go, done;
static struct slot handed;
static pthread_t helper;
static void *helper_main(void *arg)
{
    (void)arg;
    for (;;) {
        sem_wait(&go);
        check_fill(handed.p, handed.n, handed.c, "contents seen by the other thread");
        free(handed.p);
        sem_post(&done);
    }
    return NULL;
}

static void setup(void)
{
    static int once;
    if (once) return;
    once = 1;
    /* the allocator under test must be slaballoc, not glibc */
    Dl_info a, b;
    void *p = malloc(24);
    if (!dladdr((void *)&malloc, &a) || !dladdr((void *)&sa_malloc, &b) || strcmp(a.dli_fname, b.dli_fname) != 0) {
        fprintf(stderr, "fuzz_alloc: malloc is not slaballoc's (%s vs %s)\n", a.dli_fname, b.dli_fname);
        abort();
    }
    if (!p || sa_usable_size(p) < 24 || sa_usable_size(p) != malloc_usable_size(p)) {
        fprintf(stderr, "fuzz_alloc: malloc result not known to sa_usable_size\n");
        abort();
    }
    free(p);
    fprintf(stderr, "fuzz_alloc: malloc resolves into %s (slaballoc)\n", a.dli_fname);
    sem_init(&go, 0, 0);
    sem_init(&done, 0, 0);
    if (pthread_create(&helper, NULL, helper_main, NULL)) abort();
}

static size_t pick_size(unsigned v, unsigned sel)
{
    switch (sel & 3) {
    case 0: case 1: return v % 1025;             /* small */
    case 2: return (size_t)v * 1;                /* .. 64 KiB */
    default: return (size_t)v * 64 + (v & 63);  /* .. 4 MiB */
    }
}

static void set(struct slot *s, void *p, size_t n, unsigned char c)
{
    s->p = p;
    s->n = n;
    s->c = c;
    memset(p, c, n);
}

static void release(struct slot *s)
{
    if (!s->p) return;
    check_block(s, 0);
    free(s->p);
    s->p = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    setup();
    total_inputs++;
    for (size_t k = 0; k + 4 <= len; k += 4) {
        unsigned op = data[k] % 13, si = data[k + 1] % NSLOT;
        unsigned v = data[k + 2] | (unsigned)data[k + 3] << 8;
        size_t n = pick_size(v, data[k + 1] >> 6);
        size_t align = (size_t)16 << (data[k + 2] % 17); /* 16 B .. 1 MiB */
        unsigned char c = (unsigned char)(data[k] ^ data[k + 3] ^ 0x5A) | 1;
        struct slot *s = &S[si];
        cur_op = (int)op; cur_slot = (int)si; cur_size = n;
        total_ops++;
        void *p;
        errno = 0;
        switch (op) {
        case 0: /* malloc */
            release(s);
            p = malloc(n);
            if (!p) die("malloc failed", NULL, n, errno);
            set(s, p, n, c);
            check_block(s, 0);
            break;
        case 1: { /* calloc, zeroed */
            release(s);
            size_t m = (v & 7) + 1;
            p = calloc(m, n / m);
            if (!p) die("calloc failed", NULL, n, errno);
            s->p = p; s->n = (n / m) * m; s->c = 0;
            check_block(s, 0);
            memset(p, c, s->n); s->c = c;
            break;
        }
        case 2: case 3: { /* realloc (3: reallocarray); size 0 frees */
            if (!s->p) { p = realloc(NULL, n); if (!p) die("realloc(NULL) failed", NULL, n, errno); set(s, p, n, c); break; }
            check_block(s, 0);
            size_t keep = s->n < n ? s->n : n;
            if (op == 2 && n == 0) {
                p = realloc(s->p, 0);
                if (p) die("realloc(p, 0) returned non-NULL", p, 0, 0);
                s->p = NULL;
                break;
            }
            p = op == 3 ? reallocarray(s->p, n ? n : 1, 1) : realloc(s->p, n);
            if (!p) die("realloc failed", s->p, n, errno);
            check_fill(p, keep, s->c, "realloc lost contents");
            if (n > keep) memset((unsigned char *)p + keep, s->c, n - keep);
            s->p = p; s->n = op == 3 && !n ? 1 : n;
            if (op == 3 && !n) ((unsigned char *)p)[0] = s->c;
            check_block(s, 0);
            break;
        }
        case 4: /* aligned_alloc (size a multiple of align) */
            release(s);
            if (n > 4u << 20) n = 4u << 20;
            p = aligned_alloc(align, (n + align - 1) / align * align);
            if (!p) die("aligned_alloc failed", NULL, align, errno);
            set(s, p, (n + align - 1) / align * align, c);
            check_block(s, align);
            break;
        case 5: { /* posix_memalign, sometimes an invalid alignment */
            release(s);
            void *q = (void *)0x1;
            if (v % 11 == 0) {
                int rc = posix_memalign(&q, align + 8, n);
                if (rc != EINVAL || q != (void *)0x1) die("posix_memalign bad align", q, align + 8, rc);
                break;
            }
            int rc = posix_memalign(&q, align, n);
            if (rc) die("posix_memalign failed", NULL, align, rc);
            set(s, q, n, c);
            check_block(s, align);
            break;
        }
        case 6: /* memalign */
            release(s);
            p = memalign(align, n);
            if (!p) die("memalign failed", NULL, align, errno);
            set(s, p, n, c);
            check_block(s, align);
            break;
        case 7: /* valloc */
            release(s);
            p = valloc(n % 70000);
            if (!p) die("valloc failed", NULL, n, errno);
            set(s, p, n % 70000, c);
            check_block(s, 4096);
            break;
        case 8: case 9: /* free */
            release(s);
            break;
        case 10: /* usable size: the whole usable size may be written */
            if (s->p) {
                check_block(s, 0);
                size_t u = malloc_usable_size(s->p);
                memset(s->p, c, u);
                s->n = u; s->c = c;
            }
            break;
        case 11: /* hand over to the other thread, which frees it */
            if (s->p) {
                check_block(s, 0);
                handed = *s;
                s->p = NULL;
                sem_post(&go);
                sem_wait(&done);
            }
            break;
        default: { /* errno / failure paths: absurd sizes must fail cleanly */
            errno = 0;
            p = malloc_v(SIZE_MAX - (v & 0xffff));
            if (p || errno != ENOMEM) die("malloc(huge) did not fail with ENOMEM", p, v, errno);
            errno = 0;
            p = calloc_v(SIZE_MAX / 2 + 1 + v, 2);
            if (p || errno != ENOMEM) die("calloc overflow did not fail with ENOMEM", p, v, errno);
            if (s->p) {
                errno = 0;
                p = realloc_v(s->p, SIZE_MAX - v);
                if (p || errno != ENOMEM) die("realloc(huge) did not fail with ENOMEM", p, v, errno);
                check_block(s, 0); /* failed realloc keeps the block */
            }
            break;
        }
        }
    }
    for (int i = 0; i < NSLOT; i++) release(&S[i]);
    return 0;
}

#ifdef STANDALONE
/* Deterministic fallback: N random inputs of random length from a seed. */
#include <time.h>
int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 10;
    uint64_t x = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x5EED5EEDull;
    static uint8_t buf[4096];
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 >= secs) break;
        size_t len = 4 + (size_t)(x % (sizeof buf - 4));
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            buf[i] = (uint8_t)(x >> 24);
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_alloc: standalone: %llu inputs, %llu ops, 0 findings\n", total_inputs, total_ops);
    return 0;
}
#endif
