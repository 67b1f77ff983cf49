/* sigfree.c: frees from a signal handler that interrupts malloc/free of
 * large blocks (page runs) in the main thread. The handler may land while the
 * main thread holds the page lock; slaballoc must not edit the bins under the
 * interrupted edit (it defers the run) nor release a lock it did not take.
 * Every live block is checked and no two may overlap. (free() is not
 * async-signal-safe in POSIX; slaballoc supports re-entry anyway, and real
 * programs do this.) Prints "sigfree: ok" and exits 0 on success. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define N 64
#define POOL 4096
static void *pool[POOL];
static volatile int np = 0, nsig = 0;

static void handler(int s)
{
    (void)s;
    nsig++;
    if (np > 0) free(pool[--np]);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 3000000;
    for (int i = 0; i < POOL; i++) pool[i] = malloc(20000 + (i % 7) * 8192);
    np = POOL;
    signal(SIGALRM, handler);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, 0);
    char *b[N];
    size_t sz[N];
    memset(b, 0, sizeof b);
    unsigned r = 1;
    for (long i = 0; i < iters && np > 0; i++) {
        r = r * 1103515245 + 12345;
        int k = (r >> 8) % N;
        if (b[k]) {
            for (size_t j = 0; j < sz[k]; j += 4096)
                if (b[k][j] != (char)k) {
                    printf("sigfree: CORRUPT block %d at iteration %ld\n", k, i);
                    return 1;
                }
            free(b[k]);
            b[k] = 0;
        } else {
            sz[k] = 20000 + ((r >> 16) % 40) * 4096;
            b[k] = malloc(sz[k]);
            if (!b[k]) { printf("sigfree: malloc failed\n"); return 1; }
            for (size_t j = 0; j < sz[k]; j += 4096) b[k][j] = (char)k;
        }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, 0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (i != j && b[i] && b[j] && b[i] < b[j] && b[i] + sz[i] > b[j]) {
                printf("sigfree: OVERLAP of blocks %d and %d\n", i, j);
                return 1;
            }
    printf("sigfree: ok signals=%d pool_left=%d\n", nsig, np);
    return 0;
}
