/* report.c: the report's own figures. The program's malloc and free counts
 * (`mallocs=`, `frees=` in the one-line report) must grow by the calls this
 * program makes, cache hits included, from one thread and with frees from
 * another thread (remote frees); the report names this process's pid.
 * Linked with -lslaballoc. Prints one line; exit status 0 when it holds. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <slaballoc.h>

static char buf[1 << 16];
static size_t len;

static void sink(void *arg, const char *text, size_t n) {
    (void)arg;
    if (len + n < sizeof buf) {
        memcpy(buf + len, text, n);
        len += n;
    }
}

/* The value of " key=" in the one-line report (no malloc on the way). */
static unsigned long long key(const char *k) {
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", k);
    const char *at = strstr(buf, pat);
    return at ? strtoull(at + strlen(pat), NULL, 10) : ~0ULL;
}

static void snap(unsigned long long *m, unsigned long long *f) {
    len = 0;
    sa_stats_print_cb(sink, NULL, 2);
    buf[len] = 0;
    *m = key("mallocs");
    *f = key("frees");
}

#define N 200000
#define HALF 100000
static void *blocks[2][HALF];

static size_t size_of(int i) {
    /* Small sizes of many classes, one in 64 above 16 KiB (large). */
    return i % 64 == 0 ? 20000 + i % 5000 : (size_t)((i * 37) % 3000 + 1);
}

static void *fill(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < HALF; i++)
        blocks[t][i] = malloc(size_of(i));
    return NULL;
}

static void *drain(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < HALF; i++)
        free(blocks[t][i]);
    return NULL;
}

int main(void) {
    unsigned long long m0, f0, m1, f1, m2, f2;
    snap(&m0, &f0);
    if (key("pid") != (unsigned long long)getpid()) {
        printf("report: pid=%llu, expected %d\n", key("pid"), (int)getpid());
        return 1;
    }
    /* One thread: N mallocs and N frees, a window of 1000 live blocks. */
    static void *w[1000];
    for (int i = 0; i < N; i++) {
        free(w[i % 1000]); /* free(NULL) at first: not a free of a block */
        w[i % 1000] = malloc(size_of(i));
    }
    for (int i = 0; i < 1000; i++)
        free(w[i]);
    snap(&m1, &f1);
    /* Two threads fill one array each, then each frees the other's: remote
       frees (while both run they hold different zones). pthread_create may
       malloc a few blocks of its own. */
    pthread_t t[2];
    for (long k = 0; k < 2; k++)
        pthread_create(&t[k], NULL, fill, (void *)k);
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    for (long k = 0; k < 2; k++)
        pthread_create(&t[k], NULL, drain, (void *)(1 - k));
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    snap(&m2, &f2);
    unsigned long long dm1 = m1 - m0, df1 = f1 - f0, dm2 = m2 - m1, df2 = f2 - f1;
    printf("report: one thread: mallocs +%llu frees +%llu (made %d each); "
           "two threads: mallocs +%llu frees +%llu (made %d each)\n",
           dm1, df1, N, dm2, df2, 2 * HALF);
    /* A section the kernel restarts after its count may count twice, and
       pthread_create allocates: a little more than made, never less. */
    int ok = dm1 >= N && dm1 <= N + N / 100 && df1 >= N && df1 <= N + N / 100 &&
             dm2 >= 2 * HALF && dm2 <= 2 * HALF + HALF / 50 && df2 >= 2 * HALF &&
             df2 <= 2 * HALF + HALF / 50;
    return !ok;
}
