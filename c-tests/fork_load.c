/* fork_load.c - fork while other threads are inside malloc/free.
 *
 * Two worker threads allocate and free continuously (random sizes up to
 * 64 KiB, contents checked). The main thread forks NFORK times (default 200,
 * argv[1] overrides). Each child verifies and frees blocks the workers handed
 * over before the fork loop, mallocs/frees a few thousand checked blocks of
 * various sizes, uses stdio / snprintf / asprintf / strdup / open_memstream
 * (which allocate internally), and _exit(0)s. A child that hangs is killed by
 * its own alarm(); the whole test is bounded by alarm() as well.
 */
#define _GNU_SOURCE
#include "common.h"

#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define SLOTS 512
#define HANDOFF 400

static _Atomic int stop;
static _Atomic int ready;
static _Atomic long worker_errors;
static _Atomic long worker_ops;
static void *handoff[2][HANDOFF];
static size_t handoff_n[2][HANDOFF];

static size_t rand_size(uint64_t *rng)
{
    uint64_t r = xorshift64(rng);
    switch (r % 8) {
    case 0: return (size_t)(r >> 8) % 65537;   /* up to 64 KiB */
    case 1: return (size_t)(r >> 8) % 4097;
    default: return (size_t)(r >> 8) % 513;
    }
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    pin_to(id);
    uint64_t rng = 0xABCDEF12345ull + (uint64_t)id * 7777;
    for (int i = 0; i < HANDOFF; i++) {
        size_t n = rand_size(&rng);
        handoff[id][i] = malloc(n);
        handoff_n[id][i] = n;
        fill(handoff[id][i], n, 1000000u * (id + 1) + i);
    }
    atomic_fetch_add(&ready, 1);
    void *slot[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    uint64_t seed[SLOTS] = {0};
    uint64_t k = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int s = (int)(xorshift64(&rng) % SLOTS);
        if (slot[s]) {
            if (verify(slot[s], sz[s], seed[s]) != (size_t)-1)
                atomic_fetch_add(&worker_errors, 1);
            free(slot[s]);
            slot[s] = NULL;
        } else {
            size_t n = rand_size(&rng);
            if (k % 5 == 0 && n > 0) {
                /* realloc path too */
                void *p = malloc(n / 2 + 1);
                fill(p, n / 2 + 1, k);
                p = realloc(p, n);
                if (verify(p, n < n / 2 + 1 ? n : n / 2 + 1, k) != (size_t)-1)
                    atomic_fetch_add(&worker_errors, 1);
                slot[s] = p;
            } else {
                slot[s] = (k % 7 == 0) ? calloc(1, n) : malloc(n);
            }
            if (!slot[s] && n) atomic_fetch_add(&worker_errors, 1);
            sz[s] = n;
            seed[s] = ++k;
            fill(slot[s], n, k);
        }
        atomic_fetch_add_explicit(&worker_ops, 1, memory_order_relaxed);
    }
    for (int s = 0; s < SLOTS; s++) free(slot[s]);
    return NULL;
}

static int child_main(int iter)
{
    alarm(30);
    int bad = 0;
    /* blocks allocated by the workers (threads that do not exist here) */
    for (int id = 0; id < 2; id++)
        for (int i = iter % 2; i < HANDOFF; i += 2) {
            if (verify(handoff[id][i], handoff_n[id][i], 1000000u * (id + 1) + i) != (size_t)-1) bad++;
            free(handoff[id][i]);
        }
    uint64_t rng = 0x5555 + (uint64_t)iter;
    enum { M = 3000 };
    static void *p[M];
    static size_t n[M];
    for (int i = 0; i < M; i++) {
        n[i] = rand_size(&rng);
        if (i % 100 == 0) n[i] = (size_t)1 << (17 + i / 1000); /* a few 128 KiB..512 KiB */
        p[i] = malloc(n[i]);
        if (!p[i]) return 3;
        fill(p[i], n[i], (uint64_t)i * 31 + iter);
        if (i % 3 == 1) {
            if (verify(p[i - 1], n[i - 1], (uint64_t)(i - 1) * 31 + iter) != (size_t)-1) bad++;
            free(p[i - 1]);
            p[i - 1] = NULL;
        }
    }
    for (int i = 0; i < M; i++)
        if (p[i]) {
            if (verify(p[i], n[i], (uint64_t)i * 31 + iter) != (size_t)-1) bad++;
            free(p[i]);
        }
    /* allocating libc functions */
    char *big = malloc(100000);
    int len = snprintf(big, 100000, "%s-%d-%f-%0*d", "child", iter, 3.25 * iter, 20000, iter);
    if (len < 20000) bad++;
    char *s = NULL;
    if (asprintf(&s, "%.*s|%d", 50000, big, iter) < 0) bad++;
    char *d = strdup(s);
    if (strcmp(d, s)) bad++;
    free(d);
    free(s);
    free(big);
    char *ms;
    size_t msz;
    FILE *mf = open_memstream(&ms, &msz);
    for (int i = 0; i < 5000; i++) fprintf(mf, "line %d %x\n", i, i * iter);
    fclose(mf);
    if (msz < 5000 * 8) bad++;
    free(ms);
    FILE *tf = tmpfile();
    if (tf) {
        fprintf(tf, "%0*d", 70000, iter);
        fclose(tf);
    }
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int nfork = argc > 1 ? atoi(argv[1]) : 200;
    alarm(240);
    pthread_t w[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&w[i], NULL, worker, (void *)(intptr_t)i)) DIE("pthread_create");
    while (atomic_load(&ready) < 2) usleep(1000);
    int failed = 0;
    for (int i = 0; i < nfork; i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) DIE("fork: %s", strerror(errno));
        if (pid == 0) _exit(child_main(i));
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR) DIE("waitpid");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            failed++;
            if (WIFSIGNALED(st))
                printf("fork_load: child %d killed by signal %d (%s)%s\n", i, WTERMSIG(st), strsignal(WTERMSIG(st)),
                       WTERMSIG(st) == SIGALRM ? " - hung" : "");
            else
                printf("fork_load: child %d exited %d\n", i, WEXITSTATUS(st));
        }
        /* parent also keeps allocating between forks */
        void *q = malloc((size_t)i * 100 + 1);
        free(q);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(w[i], NULL);
    for (int id = 0; id < 2; id++)
        for (int i = 0; i < HANDOFF; i++) {
            if (verify(handoff[id][i], handoff_n[id][i], 1000000u * (id + 1) + i) != (size_t)-1) failed++;
            free(handoff[id][i]);
        }
    printf("fork_load: forks=%d failed_children=%d worker_ops=%ld worker_errors=%ld\n", nfork, failed,
           (long)worker_ops, (long)worker_errors);
    if (failed || worker_errors) {
        printf("fork_load: FAILED\n");
        return 1;
    }
    printf("fork_load: ok\n");
    return 0;
}
