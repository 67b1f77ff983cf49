/* prof.c - a program whose allocation sites are known, for the heap
 * profiler (SLABALLOC_PROF=1; c-tests/run.sh checks the profile with
 * tools/slabprof).
 *
 * Live at exit:
 *   hold_most    64 MiB in 1000-byte blocks   (80 % of the live bytes)
 *   hold_rest    16 MiB in 256 KiB blocks     (20 %, large blocks)
 * Allocated and all freed before exit (must not appear in the live view):
 *   churn_freed      512 MiB in 512-byte blocks, 64 MiB live at a time
 *   realloc_freed    blocks grown by realloc from 100 B to 64 KiB, freed
 *   calloc_freed, memalign_freed, thread_freed (from a second thread)
 *
 * A child forked while the second thread allocates (so it may fork while
 * that thread holds the profiler's table lock) allocates in child_site and
 * writes its own profile: the fork handlers must leave it a usable table.
 *
 * Usage: prof [dump]   "dump": also call sa_prof_dump() midway (the
 * library exports it), in the parent and in the forked child. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

NOINLINE void *hold_most(void) { void *p = malloc(1000); memset(p, 1, 1000); return p; }
NOINLINE void *hold_rest(void) { void *p = malloc(256 << 10); memset(p, 2, 4096); return p; }
NOINLINE void *churn_freed(void) { void *p = malloc(512); memset(p, 3, 512); return p; }
NOINLINE void *calloc_freed(void) { return calloc(1, 3000); }
NOINLINE void *memalign_freed(void) {
    void *p = NULL;
    return posix_memalign(&p, 256, 700) == 0 ? p : NULL;
}
NOINLINE void *realloc_freed(void) {
    void *p = malloc(100);
    for (size_t n = 200; n <= (64 << 10); n *= 2) {
        p = realloc(p, n);
        memset(p, 4, n);
    }
    return p;
}
NOINLINE void *thread_freed(void) { void *p = malloc(2048); memset(p, 5, 64); return p; }
NOINLINE void *child_site(void) { void *p = malloc(4000); memset(p, 6, 64); return p; }

static int (*dump)(void);
static int want_dump;

/* Forks; the child allocates 16 MiB in child_site, dumps, and _exits. */
static int fork_child(void) {
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        for (int i = 0; i < 4096; i++) child_site();
        _exit(want_dump && dump() != 1 ? 1 : 0);
    }
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void *worker(void *arg) {
    (void)arg;
    static void *t[20000];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 20000; i++) t[i] = thread_freed();
        for (int i = 0; i < 20000; i++) free(t[i]);
    }
    return NULL;
}

int main(int argc, char **argv) {
    enum { MOST = (64 << 20) / 1000, REST = 64, CHURN = (64 << 20) / 512 };
    static void *most[MOST], *rest[REST], *churn[CHURN];
    pthread_t th;
    want_dump = argc > 1 && strcmp(argv[1], "dump") == 0;
    dump = (int (*)(void))dlsym(RTLD_DEFAULT, "sa_prof_dump");
    if (want_dump && !dump) {
        fprintf(stderr, "prof: sa_prof_dump not exported\n");
        return 1;
    }
    if (pthread_create(&th, NULL, worker, NULL) != 0) return 1;
    for (int i = 0; i < MOST; i++) most[i] = hold_most();
    for (int i = 0; i < REST; i++) rest[i] = hold_rest();
    for (int round = 0; round < 8; round++) {
        if (round == 1 && !fork_child()) {
            fprintf(stderr, "prof: the forked child failed\n");
            return 1;
        }
        for (int i = 0; i < CHURN; i++) churn[i] = churn_freed();
        for (int i = 0; i < CHURN; i++) free(churn[i]);
    }
    for (int i = 0; i < 2000; i++) free(realloc_freed());
    for (int i = 0; i < 20000; i++) free(calloc_freed());
    for (int i = 0; i < 20000; i++) free(memalign_freed());
    if (pthread_join(th, NULL) != 0) return 1;
    if (want_dump && dump() != 1) {
        fprintf(stderr, "prof: sa_prof_dump failed\n");
        return 1;
    }
    long sum = 0;
    for (int i = 0; i < MOST; i++) sum += ((unsigned char *)most[i])[999];
    for (int i = 0; i < REST; i++) sum += ((unsigned char *)rest[i])[0];
    printf("prof: %d + %d blocks live, check %ld\n", MOST, REST, sum);
    return sum != MOST + 2 * REST;
}
