/* The statistics API: sa_stats_get, sa_stats_print, sa_stats_print_cb,
 * mallinfo2 and malloc_trim report real numbers. Built against
 * include/slaballoc.h and linked with -lslaballoc.
 *
 * Also: malloc_trim on one CPU empties the per-CPU cache of another CPU
 * (a thread on CPU 1 frees a 9000-byte block, which stays in CPU 1's cache
 * and keeps its slab; main, on CPU 0, trims; the class must then have
 * no slab left). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <slaballoc.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAILED: %s (line %d)\n", #c, __LINE__); return 1; } } while (0)

static size_t cb_bytes;
static int cb_json_ok;
static void sink(void *arg, const char *text, size_t len) {
    (void)arg;
    if (cb_bytes == 0 && len >= 10 && memcmp(text, "{\"totals\":", 10) == 0) cb_json_ok = 1;
    cb_bytes += len;
}

/* Whether zones (and their per-CPU caches) are picked by the kernel's
 * concurrency id: the JSON report says "zones_by":"mm_cid". */
static int by_cid;
static void find_cid(void *arg, const char *text, size_t len) {
    (void)arg;
    static const char key[] = "\"zones_by\":\"mm_cid\"";
    for (size_t i = 0; i + sizeof key - 1 <= len; i++)
        if (memcmp(text + i, key, sizeof key - 1) == 0) by_cid = 1;
}

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0;
}

static void *on_cpu1(void *arg) {
    (void)arg;
    if (!pin(1)) return NULL;
    /* One block: its free leaves it in CPU 1's cache (room for one chunk
     * of this class), where only CPU 1 can take it out. */
    char *volatile q = malloc(9000);
    q[0] = 1;
    free(q);
    return NULL;
}

/* Live slabs of the size class that holds `size`. */
static long long slabs_of(size_t size) {
    struct sa_stats s;
    if (sa_stats_get(&s, sizeof s) != 0) return -1;
    for (unsigned i = 0; i < s.nclasses; i++)
        if (s.classes[i].size >= size) return (long long)s.classes[i].slabs;
    return -1;
}

static int trim_drains_other_cpus(void) {
    if (!pin(0)) {
        printf("stats_api: cannot pin to CPU 0, cross-CPU trim not checked\n");
        return 0;
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, on_cpu1, NULL) == 0);
    pthread_join(t, NULL);
    long long before = slabs_of(9000);
    malloc_trim(0);
    long long after = slabs_of(9000);
    printf("stats_api: 9000-byte class slabs after frees on CPU 1: %lld, after malloc_trim on CPU 0: %lld\n",
           before, after);
    if (before <= 0) {
        printf("stats_api: nothing allocated on CPU 1 (one CPU?): not checked\n");
        return 0;
    }
    sa_stats_print_cb(find_cid, NULL, SA_STATS_JSON);
    if (by_cid && after != 0) {
        /* The thread that freed ran with its own concurrency id, which may
         * not be ours: only a thread running with that id can empty its
         * cache (a known limit; the CPU-number build, stats.api.cpu_ids,
         * checks the drain strictly). */
        printf("stats_api: zones by mm_cid and the freeing thread's id was not ours: the drain is checked by the cpu_ids build\n");
        return 0;
    }
    CHECK(after == 0);
    return 0;
}

int main(void) {
    static void *p[20000];
    for (int i = 0; i < 20000; i++) p[i] = malloc(16 + i % 3000);
    char *volatile big = malloc(1 << 20);
    big[0] = 1;
    struct sa_stats s;
    CHECK(sa_stats_get(&s, sizeof s) == 0);
    CHECK(sa_stats_get(&s, sizeof s - 8) == EINVAL);
    CHECK(sa_stats_get(NULL, sizeof s) == EINVAL);
    CHECK(sa_stats_get(&s, sizeof s) == 0);
    CHECK(s.nclasses == 36 && s.ncpus >= 1 && s.ncpus <= 256);
    CHECK(s.totals.allocs >= 20000);
    unsigned long long sum = 0, cpusum = 0, in_use_bytes = 0;
    for (unsigned i = 0; i < s.nclasses; i++) {
        sum += s.classes[i].allocs;
        in_use_bytes += s.classes[i].in_use * s.classes[i].size;
        CHECK(i == 0 || s.classes[i].size > s.classes[i - 1].size);
    }
    for (unsigned i = 0; i < s.ncpus; i++) cpusum += s.cpus[i].allocs;
    CHECK(sum == s.totals.allocs && cpusum == s.totals.allocs);
    CHECK(s.totals.large_allocs >= 1);
    CHECK(s.totals.bytes_in_use >= in_use_bytes && s.totals.bytes_in_use <= s.totals.bytes_mapped);
    CHECK(s.totals.bytes_reserved == s.totals.bytes_mapped && s.totals.bytes_committed <= s.totals.bytes_reserved);
    CHECK(s.totals.bytes_resident > 0 && s.totals.bytes_resident <= s.totals.bytes_committed);
    CHECK(in_use_bytes >= 20000 * 16);

    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.arena >= s.totals.bytes_in_use && mi.uordblks >= (size_t)in_use_bytes);

    FILE *f = tmpfile();
    CHECK(f && sa_stats_print(f, SA_STATS_TEXT) == 0 && ftell(f) > 200);
    CHECK(sa_stats_print(f, SA_STATS_JSON) == 0);
    errno = 0;
    CHECK(sa_stats_print(f, 7) == -1 && errno == EINVAL);
    fclose(f);
    CHECK(sa_stats_print_cb(sink, NULL, SA_STATS_JSON) == 0 && cb_bytes > 500 && cb_json_ok);
    CHECK(sa_stats_print_cb(NULL, NULL, SA_STATS_JSON) == -1);

    for (int i = 0; i < 20000; i++) free(p[i]);
    free(big);
    int t = malloc_trim(0);
    CHECK(t == 0 || t == 1);
    struct sa_stats after;
    CHECK(sa_stats_get(&after, sizeof after) == 0);
    CHECK(after.totals.bytes_in_use < s.totals.bytes_in_use);
    printf("stats_api: allocs=%llu in_use=%llu -> %llu bytes, trim=%d\n",
           (unsigned long long)s.totals.allocs, (unsigned long long)s.totals.bytes_in_use,
           (unsigned long long)after.totals.bytes_in_use, t);
    return trim_drains_other_cpus();
}
