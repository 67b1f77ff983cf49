/* invalid_free.c - [slaballoc only] invalid frees abort with a diagnostic.
 *
 * Each case runs in a forked child whose stderr goes to a pipe. The child must
 * die by SIGABRT, and its stderr must contain "slaballoc:" and the offending
 * pointer as printed by %p. Under glibc the test prints SKIP and exits 0
 * (glibc aborts too, but with its own messages).
 *
 * One case (a write into a freed chunk's link) may also end with the child
 * exiting 0: where the chunk went to the per-CPU cache (rseq on) no link is
 * ever followed, so there is nothing to forge; the child then checks that the
 * blocks malloc returns next are distinct and usable. With INVALID_FREE_STRICT
 * set (run.sh sets it for the rseq-off run, where every free goes to the slab
 * lists) the case must abort.
 *
 * A process's first small blocks come from the starter heap (src/starter/),
 * and so do those of these cases unless SLABALLOC_STARTER=0: run.sh runs the
 * test both ways. The two cases that forge slab internals (a free chunk's
 * link, a batch node) need slab blocks and are skipped with the starter on;
 * every other case must abort either way.
 */
#define _GNU_SOURCE
#include "common.h"

#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/auxv.h>
#include <sys/rseq.h>
#include <sys/mman.h>
#include <sys/wait.h>

#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wuse-after-free"

#define OPAQUE(p) ({ __typeof__(p) _q = (p); __asm__ volatile("" : "+r"(_q)); _q; })

/* The case functions run in the child, print the pointer they pass to free on
 * fd 3 (a second pipe) and then do the invalid free. */
static int report_fd = -1;

static void report(void *bad)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%p", bad);
    if (write(report_fd, buf, n) != n) _exit(99);
    close(report_fd);
}

static void case_interior_small(void)
{
    char *p = OPAQUE(malloc(64));
    memset(p, 1, 64);
    report(p + 16);
    free(p + 16);
}

static void case_interior_large(void)
{
    char *p = OPAQUE(malloc(1u << 20));
    memset(p, 1, 1u << 20);
    report(p + 4096);
    free(p + 4096);
}

static void case_double_small(void)
{
    char *p = OPAQUE(malloc(64));
    memset(p, 1, 64);
    report(p);
    free(p);
    free(OPAQUE(p));
}

static void case_double_between(void)
{
    enum { M = 200 };
    void *other[M];
    for (int i = 0; i < M; i++) other[i] = OPAQUE(malloc(64));
    char *p = OPAQUE(malloc(64));
    void *more[M];
    for (int i = 0; i < M; i++) more[i] = OPAQUE(malloc(64));
    report(p);
    free(p);
    for (int i = 0; i < M; i++) {
        free(other[i]);
        free(more[M - 1 - i]);
    }
    free(OPAQUE(p));
}

/* extra (not in the written contract, but the page map makes it cheap) */
static void case_double_large(void)
{
    char *p = OPAQUE(malloc(1u << 20));
    memset(p, 1, 1u << 20);
    report(p);
    free(p);
    free(OPAQUE(p));
}

/* A 32 KiB block: its zone keeps it after the first free (src/zone/bigs.rs),
 * marked cached, so the second free must still be caught. (Aligned, so that
 * the starter heap, whose big blocks reach 128 KiB, does not serve it.) */
static void case_double_large_kept(void)
{
    char *p = OPAQUE(aligned_alloc(4096, 32768));
    memset(p, 1, 32768);
    report(p);
    free(p);
    free(OPAQUE(p));
}

/* A pointer into the second page of a kept (freed) 32 KiB block. */
static void case_interior_large_kept(void)
{
    char *p = OPAQUE(aligned_alloc(4096, 32768));
    memset(p, 1, 32768);
    free(p);
    report(p + 4096);
    free(OPAQUE(p + 4096));
}

/* Two adjacent large blocks; the right one's run merges into the left one's
 * free run, then the right one is freed again. */
static void case_double_large_merged(void)
{
    char *a = OPAQUE(malloc(100000)), *b = OPAQUE(malloc(100000));
    char *lo = a < b ? a : b, *hi = a < b ? b : a;
    free(lo);
    free(hi);
    report(hi);
    free(OPAQUE(hi));
}

static void case_double_aligned(void)
{
    char *p = OPAQUE(aligned_alloc(4096, 100));
    report(p);
    free(p);
    free(OPAQUE(p));
}

/* Runs fn(arg) on a thread pinned to CPU 1 while this thread (pinned to CPU
 * 0) keeps running: two threads running at once never share a zone, whether
 * zones follow the CPU or the kernel's concurrency id (mm_cid), so the
 * thread's frees of this thread's blocks are remote. (Blocked in
 * pthread_join, this thread would leave its id free for the other to take,
 * and the frees would be local.) */
static atomic_int remote_done;
static void *(*remote_fn)(void *);
static void *remote_tramp(void *arg)
{
    remote_fn(arg);
    atomic_store(&remote_done, 1);
    return NULL;
}

static void run_remote(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    remote_fn = fn;
    atomic_store(&remote_done, 0);
    if (pthread_create(&t, NULL, remote_tramp, arg)) DIE("pthread_create");
    while (!atomic_load(&remote_done)) {}
    pthread_join(t, NULL);
}

/* Double frees across threads: the first free on one CPU, the second on the
 * other, so at least one of them is a remote free (slab list CAS). */
static void *thread_free(void *p)
{
    pin_to(1);
    free(p);
    return NULL;
}

static void case_double_other_thread(void)
{
    pin_to(0);
    char *p = OPAQUE(malloc(48));
    memset(p, 1, 48);
    report(p);
    run_remote(thread_free, p);
    free(OPAQUE(p)); /* second free, on CPU 0, after a remote first free */
}

static void case_double_both_remote(void)
{
    pin_to(0);
    char *p = OPAQUE(malloc(200));
    memset(p, 1, 200);
    report(p);
    run_remote(thread_free, p);
    run_remote(thread_free, OPAQUE(p));
}

/* Two blocks of one slab freed by a thread on CPU 1: its outbox hands them
 * back as one node that carries the second (see src/slab/, batch nodes), and
 * malloc_trim makes sure that has happened (and collects the node into the
 * slab's free list). Freeing the carried block again must be caught though
 * nothing was linked through it (this case fails on a build whose
 * double-free scan skips carried chunks: verified). */
/* The id that picks this thread's zone: mm_cid where the kernel fills it
 * (AT_RSEQ_FEATURE_SIZE >= 28), else the CPU; -1 without an rseq area. */
static int zone_id(void)
{
    if (__rseq_size == 0) return -1;
    const char *area = (const char *)__builtin_thread_pointer() + __rseq_offset;
    return *(volatile const int *)(area + (getauxval(27) >= 28 ? 24 : 4));
}

static int freer_ids[2];
static void *thread_free_two(void *arg)
{
    void **v = arg;
    pin_to(1);
    freer_ids[0] = zone_id();
    free(v[0]);
    free(v[1]);
    freer_ids[1] = zone_id();
    malloc_trim(0);
    return NULL;
}

/* Allocates three 200-byte blocks on CPU 0 and has the thread on CPU 1 free
 * the first two. With zones picked by mm_cid, the new thread may take the id
 * this one allocated under (it starts on CPU 0, where this one is pinned,
 * before it pins itself): its frees are then local, with no batch node.
 * Check the ids and try again with new blocks (at most 50 times). */
static void alloc_free_two_remotely(char **a, char **b, char **keep)
{
    pin_to(0);
    for (int tries = 0; tries < 50; tries++) {
        *a = OPAQUE(malloc(200));
        *b = OPAQUE(malloc(200));
        *keep = OPAQUE(malloc(200)); /* keeps the slab alive through malloc_trim */
        memset(*a, 1, 200);
        memset(*b, 1, 200);
        memset(*keep, 1, 200);
        int mine = zone_id();
        void *v[2] = {*a, *b};
        run_remote(thread_free_two, v);
        if (mine < 0 || (freer_ids[0] != mine && freer_ids[1] != mine)) return;
    }
}

static void case_double_carried(void)
{
    char *a, *b, *keep;
    alloc_free_two_remotely(&a, &b, &keep);
    report(b);
    free(OPAQUE(b));
}

/* Use after free into a batch node: as above, b is carried by a's node;
 * the program then overwrites a's third word (the node's count and check,
 * then the 16-bit offsets it carries, b's first). Mallocs of the class
 * reach the node: its entries no longer match its check (a forged offset
 * alone would most often name another chunk of the slab), which must be
 * reported, not handed out. Without rseq
 * there is no outbox and no node (a plain link, whose words 2-3 are
 * ignored): the child exits 0, which is right only then. */
static void case_write_into_node(void)
{
    char *a, *b, *keep;
    alloc_free_two_remotely(&a, &b, &keep);
    report(a);
    ((volatile uintptr_t *)OPAQUE(a))[2] = 0x4141414141414140u;
    for (int i = 0; i < 2000; i++) {
        char *q = OPAQUE(malloc(200));
        if (!q) _exit(3);
        memset(q, 2, 200);
    }
}

/* Use after free: a freed chunk's first word (its free-list link) is
 * overwritten; the next malloc that pops it must notice, not follow it. The
 * value written decodes to an unaligned address under safe-linking. The
 * block is of the 16-byte class, whose chunks are too small to carry other
 * chunks' addresses: on a slab's free list such a chunk is always linked.
 * (A chunk of a larger class may instead be carried by the list's head
 * node, its address kept in the node; then its first word is no link and
 * the write cannot redirect malloc: see the carried-address case below.) */
static void case_write_after_free(void)
{
    char *p = OPAQUE(malloc(16));
    memset(p, 1, 16);
    free(p);
    uintptr_t v = 0x4141414141414141u;
    if (((v ^ ((uintptr_t)p >> 12)) & 15) == 0) v ^= 8;
    report(p);
    *(volatile uintptr_t *)OPAQUE(p) = v;
    char *q = OPAQUE(malloc(16)); /* pops p */
    char *r = OPAQUE(malloc(16)); /* would follow the forged link */
    /* Still alive: the link was never followed (cached chunk). Both blocks
     * must be real, distinct and usable. */
    if (!q || !r || q == r || malloc_usable_size(r) < 16) _exit(3);
    memset(q, 2, 16);
    memset(r, 3, 16);
    if (q[15] != 2 || r[0] != 3) _exit(3);
    free(r);
    free(q);
}

/* Foreign pointers (not in slaballoc's memory) that no allocator made: glibc's
 * malloc holds no memory here, so slaballoc reports them itself (glibc's own
 * free would crash on the stack address). */
static void case_foreign_stack(void)
{
    char buf[64];
    memset(buf, 1, sizeof buf);
    report(buf + 16);
    free(OPAQUE(buf + 16));
}

static void case_foreign_mapping(void)
{
    char *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) _exit(98);
    report(m + 4096);
    free(OPAQUE(m + 4096));
}

/* Chunks that were carved but never handed out: the neighbours of the
 * first block of a class nothing else here uses. They sit on their slab's
 * free list or in the per-CPU cache, marked free; one past the carved part of
 * the slab is past its carve pointer. Every case must abort. */
static void case_never_allocated(void)
{
    char *p = OPAQUE(malloc(1500));
    memset(p, 1, 1500);
    report(p + 1536);
    free(OPAQUE(p + 1536));
}

static void case_never_allocated_far(void)
{
    char *p = OPAQUE(malloc(1500));
    memset(p, 1, 1500);
    report(p + 20 * 1536);
    free(OPAQUE(p + 20 * 1536));
}

struct tcase {
    const char *name;
    void (*fn)(void);
    int cache_ok; /* exiting 0 is right when the per-CPU cache took the chunk */
    int rseq_only; /* exiting 0 is right without rseq (INVALID_FREE_STRICT) */
    int slab_only; /* forges slab internals: needs SLABALLOC_STARTER=0 */
};

static const struct tcase cases[] = {
    {"interior pointer p+16 of a 64-byte block", case_interior_small},
    {"interior pointer p+4096 of a 1 MiB block", case_interior_large},
    {"double free of a 64-byte block", case_double_small},
    {"double free: first on another CPU's thread, then locally", case_double_other_thread},
    {"double free: both from another CPU's thread (remote)", case_double_both_remote},
    {"double free of a block carried in another CPU's batch", case_double_carried},
    {"double free with 400 other frees in between", case_double_between},
    {"double free of a 1 MiB block", case_double_large},
    {"double free of a large block merged into its free neighbour", case_double_large_merged},
    {"double free of a 32 KiB block (kept for reuse by its CPU's zone)", case_double_large_kept},
    {"interior pointer into a freed 32 KiB block that its zone keeps", case_interior_large_kept},
    {"write after free into a free chunk's link, then malloc", case_write_after_free, 1, 0, 1},
    {"write after free into a batch node's carried address, then mallocs", case_write_into_node, 0, 1, 1},
    {"free of a stack address", case_foreign_stack},
    {"free of an address in a private mapping", case_foreign_mapping},
    {"double free of an aligned_alloc(4096, 100) block", case_double_aligned},
    {"free of a chunk carved but never handed out (next to the first)", case_never_allocated},
    {"free of a chunk never carved (20 chunks past the first)", case_never_allocated_far},
};

static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len >= cap - 1) break;
    }
    buf[len] = 0;
    return (ssize_t)len;
}

static int starter_on(void)
{
    const char *v = getenv("SLABALLOC_STARTER");
    return !(v && strcmp(v, "0") == 0);
}

static int run_case(const struct tcase *c)
{
    if (c->slab_only && starter_on()) {
        printf("invalid_free: %s\n  skip (the starter heap serves its blocks: see the SLABALLOC_STARTER=0 run)\n",
               c->name);
        return 1;
    }
    int errp[2], repp[2];
    if (pipe(errp) || pipe(repp)) DIE("pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) DIE("fork");
    if (pid == 0) {
        close(errp[0]);
        close(repp[0]);
        dup2(errp[1], 2);
        close(errp[1]);
        report_fd = repp[1];
        alarm(20);
        c->fn();
        _exit(0); /* survived: failure */
    }
    close(errp[1]);
    close(repp[1]);
    static char err[65536];
    char ptr[64];
    read_all(repp[0], ptr, sizeof ptr);
    read_all(errp[0], err, sizeof err);
    close(repp[0]);
    close(errp[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}

    int ok = 1;
    printf("invalid_free: %s (pointer %s)\n", c->name, ptr);
    if (c->rseq_only && getenv("INVALID_FREE_STRICT") && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        printf("  ok (no abort: without rseq there is no outbox, so no batch node to forge)\n");
        return 1;
    }
    if (c->cache_ok && !getenv("INVALID_FREE_STRICT") && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        printf("  ok (no abort: the chunk sat in the per-CPU cache, no link to forge; "
               "the next blocks were distinct and usable)\n");
        return 1;
    }
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT)) {
        ok = 0;
        if (WIFSIGNALED(st))
            printf("  FAIL: child died by signal %d (%s), want SIGABRT\n", WTERMSIG(st), strsignal(WTERMSIG(st)));
        else
            printf("  FAIL: child exited with status %d, want death by SIGABRT\n", WEXITSTATUS(st));
    }
    if (!strstr(err, "slaballoc:")) {
        ok = 0;
        printf("  FAIL: stderr lacks \"slaballoc:\"\n");
    }
    if (!ptr[0] || !strstr(err, ptr)) {
        ok = 0;
        printf("  FAIL: stderr lacks the pointer %s\n", ptr);
    }
    if (!ok || getenv("VERBOSE")) printf("  child stderr: %s%s", err[0] ? err : "(empty)\n",
                                          err[0] && err[strlen(err) - 1] != '\n' ? "\n" : "");
    if (ok) printf("  ok\n");
    return ok;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!slaballoc_loaded()) {
        printf("SKIP invalid_free: slaballoc not loaded (glibc's diagnostics differ)\n");
        return 0;
    }
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        failed += !run_case(&cases[i]);
    printf("invalid_free: %d of %zu cases failed\n", failed, sizeof cases / sizeof *cases);
    return failed ? 1 : 0;
}
