/* own_rseq.c - the per-CPU cache on slaballoc's own rseq area.
 *
 * Where glibc registered no rseq area (glibc < 2.35, or
 * GLIBC_TUNABLES=glibc.pthread.rseq=0) slaballoc registers one of its own in
 * static TLS: the first thread at start-up, every other thread on its first
 * slow path (src/cpu.rs). This test checks, under LD_PRELOAD, with glibc's
 * rseq on or off:
 *   - the cache serves the main thread, threads run one after another
 *     (glibc reuses their stacks and static TLS), and threads run at once
 *     (contents verified): cache_allocs of sa_stats_get grows by at least
 *     90 % of each thread's mallocs;
 *   - each thread is registered afterwards: rseq(2) with another area is
 *     refused with EINVAL ("a different area is registered");
 *   - fork: the child of the main thread and the child of a second thread
 *     inherit the registration (EINVAL at once, before any malloc) and the
 *     cache serves them;
 *   - a thread whose rseq(2) a seccomp filter refuses (SIGSYS, the handler
 *     makes it return ENOSYS) tries exactly once when slaballoc's own area is
 *     in use, then runs correctly on the zone path (the cache serves it
 *     nothing);
 * and with "dlopen PATH" (no LD_PRELOAD): the library dlopen'ed (its static
 * TLS from glibc's surplus) serves sa_malloc from the cache on the main
 * thread, on a thread that existed before the dlopen, on a new one, and in a
 * forked child.
 *
 * Usage: own_rseq [N]            (under LD_PRELOAD=libslaballoc.so)
 *        own_rseq dlopen PATH [N]
 */
#include "common.h"
#include "../include/slaballoc.h"

#include <signal.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>

#include "seccomp_rseq.h"
#define RSEQ_SIG 0x53053053

extern const unsigned int __rseq_size __attribute__((weak));

static void *(*p_malloc)(size_t);
static void (*p_free)(void *);
static int (*p_stats_get)(struct sa_stats *, size_t);
static long n_iter = 200000;

static uint64_t cache_allocs(void)
{
    struct sa_stats s;
    if (p_stats_get(&s, sizeof s) != 0)
        DIE("sa_stats_get failed");
    return s.totals.cache_allocs;
}

/* malloc/free pairs of mixed small sizes, every block filled and checked. */
static void churn(long n, uint64_t seed)
{
    void *keep[64] = {0};
    size_t ksz[64] = {0};
    for (long i = 0; i < n; i++) {
        size_t sz = 16 + (size_t)((i * 37) % 400);
        int k = (int)(i & 63);
        if (keep[k]) {
            if (verify(keep[k], ksz[k], seed + (uint64_t)k) != (size_t)-1)
                DIE("block %p of %zu bytes corrupted", keep[k], ksz[k]);
            p_free(keep[k]);
        }
        keep[k] = p_malloc(sz);
        if (!keep[k])
            DIE("malloc(%zu) failed", sz);
        ksz[k] = sz;
        fill(keep[k], sz, seed + (uint64_t)k);
    }
    for (int k = 0; k < 64; k++)
        p_free(keep[k]);
}

/* rseq(2) with an area of our own: EINVAL when the thread has another area
 * registered already. Returns 1 if registered, 0 if not (the probe area is
 * then unregistered again), -1 if the call failed otherwise. */
static int registered(void)
{
    static __thread char area[32] __attribute__((aligned(32)));
    memset(area, 0, sizeof area);
    ((int32_t *)area)[1] = -1;
    long r = syscall(SYS_rseq, area, 32, 0, RSEQ_SIG);
    if (r == 0) {
        syscall(SYS_rseq, area, 32, 1 /* RSEQ_FLAG_UNREGISTER */, RSEQ_SIG);
        return 0;
    }
    return errno == EINVAL ? 1 : -1;
}

/* The cache served at least 90 % of `n` mallocs since `before`. */
static void check_cached(const char *who, uint64_t before, long n)
{
    uint64_t d = cache_allocs() - before;
    printf("own_rseq: %s: cache_allocs +%llu for %ld mallocs\n", who,
           (unsigned long long)d, n);
    CHECK(d >= (uint64_t)n * 9 / 10, "%s: the cache served only %llu of %ld mallocs", who,
          (unsigned long long)d, n);
}

static void served_here(const char *who)
{
    uint64_t b = cache_allocs();
    churn(n_iter, 7);
    check_cached(who, b, n_iter);
    int r = registered();
    CHECK(r == 1, "%s: thread not registered afterwards (probe %d, errno %d)", who, r, errno);
}

static void *thread_seq(void *arg)
{
    served_here((const char *)arg);
    return NULL;
}

static void *thread_par(void *arg)
{
    churn(n_iter, (uint64_t)(uintptr_t)arg);
    return NULL;
}

/* Forks; the child checks it is registered before any malloc, then that the
 * cache serves it. */
static void fork_check(const char *who)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        DIE("fork: %s", strerror(errno));
    if (pid == 0) {
        int r = registered();
        int bad = r != 1;
        uint64_t b = cache_allocs();
        churn(n_iter, 11);
        uint64_t d = cache_allocs() - b;
        bad |= d < (uint64_t)n_iter * 9 / 10;
        printf("own_rseq: child of %s: inherited registration %s, cache_allocs +%llu\n", who,
               r == 1 ? "yes" : "NO", (unsigned long long)d);
        fflush(stdout);
        _exit(bad);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        DIE("waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child of %s failed (status %#x)", who, st);
}

static void *thread_fork(void *arg)
{
    served_here("forking thread");
    fork_check((const char *)arg);
    return NULL;
}

/* ---- a thread whose rseq(2) is refused ---- */

static volatile sig_atomic_t rseq_attempts;

static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    ucontext_t *uc = ctx;
    if (si->si_syscall == SYS_rseq)
        rseq_attempts++;
    uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
}

struct refused {
    int installed;
    uint64_t served;
};

static void *thread_refused(void *arg)
{
    struct refused *r = arg;
    /* No malloc in this thread before the filter. */
    r->installed = refuse_rseq(SECCOMP_RET_TRAP) == 0;
    if (!r->installed)
        return NULL;
    uint64_t b = cache_allocs();
    churn(n_iter, 13);
    churn(n_iter, 17);
    r->served = cache_allocs() - b;
    return NULL;
}

static int glibc_registered(void)
{
    return &__rseq_size != NULL && __rseq_size > 0;
}

static void run_threads(void)
{
    char names[4][32];
    for (int i = 0; i < 4; i++) {
        pthread_t t;
        snprintf(names[i], sizeof names[i], "thread %d (after %d exited)", i, i);
        if (pthread_create(&t, NULL, thread_seq, names[i]) != 0)
            DIE("pthread_create");
        pthread_join(t, NULL);
    }
    uint64_t b = cache_allocs();
    pthread_t ts[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&ts[i], NULL, thread_par, (void *)(uintptr_t)(100 + i)) != 0)
            DIE("pthread_create");
    for (int i = 0; i < 4; i++)
        pthread_join(ts[i], NULL);
    check_cached("4 threads at once", b, 4 * n_iter);
}

static int preload_mode(void)
{
    p_malloc = malloc;
    p_free = free;
    p_stats_get = (int (*)(struct sa_stats *, size_t))dlsym(RTLD_DEFAULT, "sa_stats_get");
    if (!p_stats_get)
        DIE("slaballoc is not loaded (run under LD_PRELOAD)");
    int own = !glibc_registered();
    printf("own_rseq: glibc's rseq area %s: %s\n", own ? "not registered" : "registered",
           own ? "slaballoc's own area in use" : "slaballoc uses glibc's");

    served_here("main thread");
    run_threads();
    fork_check("main thread");
    pthread_t t;
    if (pthread_create(&t, NULL, thread_fork, "a second thread") != 0)
        DIE("pthread_create");
    pthread_join(t, NULL);

    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    struct refused r = {0};
    if (pthread_create(&t, NULL, thread_refused, &r) != 0)
        DIE("pthread_create");
    pthread_join(t, NULL);
    if (!r.installed) {
        printf("own_rseq: seccomp unavailable: refused-registration case skipped\n");
    } else {
        printf("own_rseq: thread with rseq(2) refused: %d attempt(s), cache_allocs +%llu for %ld "
               "mallocs\n",
               (int)rseq_attempts, (unsigned long long)r.served, 2 * n_iter);
        if (own) {
            CHECK(rseq_attempts == 1, "want exactly one registration attempt, got %d",
                  (int)rseq_attempts);
            CHECK(r.served == 0, "the cache served %llu mallocs of an unregistered thread",
                  (unsigned long long)r.served);
        } else {
            /* glibc registered the thread before the filter went on. */
            CHECK(rseq_attempts == 0, "slaballoc tried rseq(2) beside glibc's area");
        }
    }
    return 0;
}

/* ---- dlopen ---- */

static pthread_barrier_t go, done;

static void *thread_before_dlopen(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&go); /* the library is loaded now */
    served_here("thread from before the dlopen");
    pthread_barrier_wait(&done);
    return NULL;
}

static int dlopen_mode(const char *path)
{
    pthread_t early;
    pthread_barrier_init(&go, NULL, 2);
    pthread_barrier_init(&done, NULL, 2);
    if (pthread_create(&early, NULL, thread_before_dlopen, NULL) != 0)
        DIE("pthread_create");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        DIE("dlopen(%s): %s", path, dlerror());
    p_malloc = (void *(*)(size_t))dlsym(h, "sa_malloc");
    p_free = (void (*)(void *))dlsym(h, "sa_free");
    p_stats_get = (int (*)(struct sa_stats *, size_t))dlsym(h, "sa_stats_get");
    if (!p_malloc || !p_free || !p_stats_get)
        DIE("dlsym: %s", dlerror());
    printf("own_rseq: dlopen ok; glibc's rseq area %s\n",
           glibc_registered() ? "registered" : "not registered: slaballoc's own area in use");
    served_here("main thread (dlopen)");
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&done);
    pthread_join(early, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_seq, "thread after the dlopen") != 0)
        DIE("pthread_create");
    pthread_join(t, NULL);
    fork_check("main thread (dlopen)");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int dl = argc > 2 && strcmp(argv[1], "dlopen") == 0;
    int narg = dl ? 3 : 1;
    if (argc > narg)
        n_iter = atol(argv[narg]);
    if (n_iter < 1000)
        n_iter = 1000;
    /* rseq(2) at NULL: EFAULT (or EINVAL when registered) where the kernel
     * has rseq; ENOSYS where it has none (or c-tests/no_rseq refuses it). */
    if (syscall(SYS_rseq, NULL, 32, 0, RSEQ_SIG) != 0 && errno == ENOSYS) {
        printf("own_rseq: the kernel refuses rseq(2): nothing to test\n");
        return 0;
    }
    if (dl)
        dlopen_mode(argv[2]);
    else
        preload_mode();
    if (g_fail) {
        printf("own_rseq: %d check(s) failed\n", g_fail);
        return 1;
    }
    printf("own_rseq: ok\n");
    return 0;
}
