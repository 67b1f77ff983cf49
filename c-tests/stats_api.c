/* The statistics API: sa_stats_get, sa_stats_print, sa_stats_print_cb,
 * mallinfo2 and malloc_trim report real numbers. Built against
 * include/slaballoc.h and linked with -lslaballoc. */
#include <errno.h>
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
    CHECK(s.allocs >= 20000);
    unsigned long long sum = 0, cpusum = 0, in_use_bytes = 0;
    for (unsigned i = 0; i < s.nclasses; i++) {
        sum += s.classes[i].allocs;
        in_use_bytes += s.classes[i].in_use * s.classes[i].size;
        CHECK(i == 0 || s.classes[i].size > s.classes[i - 1].size);
    }
    for (unsigned i = 0; i < s.ncpus; i++) cpusum += s.cpus[i].allocs;
    CHECK(sum == s.allocs && cpusum == s.allocs);
    CHECK(s.large_allocs >= 1);
    CHECK(s.bytes_in_use >= in_use_bytes && s.bytes_in_use <= s.bytes_mapped);
    CHECK(in_use_bytes >= 20000 * 16);

    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.arena >= s.bytes_in_use && mi.uordblks >= (size_t)in_use_bytes);

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
    CHECK(after.bytes_in_use < s.bytes_in_use);
    printf("stats_api: allocs=%llu in_use=%llu -> %llu bytes, trim=%d\n",
           (unsigned long long)s.allocs, (unsigned long long)s.bytes_in_use,
           (unsigned long long)after.bytes_in_use, t);
    return 0;
}
