/* rss_probe: where a process's resident memory is, for the RSS notes in
 * docs/experiments.md. An LD_PRELOAD helper, loaded after the allocator:
 *
 *   gcc -O2 -shared -fPIC bench/tools/rss_probe.c -o bench/build/rss_probe.so -ldl -lpthread
 *   LD_PRELOAD="target/release/libslaballoc.so bench/build/rss_probe.so" bench/build/server
 *
 * At exit (or, with RSS_PROBE_US=N, once N microseconds after start, from a
 * thread of its own) it prints on stderr:
 *   - VmHWM and VmRSS from /proc/self/status;
 *   - resident KiB by kind of mapping (/proc/self/smaps): libc, ld.so, the
 *     library named in RSS_PROBE_LIB (default "slaballoc"), [heap],
 *     anonymous, other;
 *   - for each slaballoc arena (64 MiB from a mapping on a 64 MiB boundary), the
 *     resident KiB of its metadata pages (the first 648) and of its page runs
 *     (mincore), and with RSS_PROBE_SLABS=1 the resident pages of each
 *     32-page block of runs;
 *   - with RSS_PROBE_STATS=1, slaballoc's one-line statistics
 *     (sa_stats_print, looked up with dlsym, so any allocator can be probed).
 * It allocates nothing after start-up but its own thread's stack. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA_SIZE (64ul << 20)
#define META_PAGES 648 /* pagemap::META_PAGES (its `layout` unit test asserts 648) */
#define ARENA_PAGES (ARENA_SIZE / 4096)

static char buf[1 << 22];
static unsigned char vec[ARENA_PAGES];

static int slurp(const char *path) {
    int fd = open(path, O_RDONLY), n = 0, r;
    if (fd < 0) return 0;
    while (n < (int)sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0) n += r;
    close(fd);
    buf[n] = 0;
    return n;
}

static void status(void) {
    if (!slurp("/proc/self/status")) return;
    char *h = strstr(buf, "VmHWM:"), *r = strstr(buf, "VmRSS:");
    long hwm = h ? atol(h + 6) : -1, rss = r ? atol(r + 6) : -1;
    fprintf(stderr, "rss_probe: VmHWM %ld KiB VmRSS %ld KiB\n", hwm, rss);
}

static void by_mapping(void) {
    const char *lib = getenv("RSS_PROBE_LIB") ? getenv("RSS_PROBE_LIB") : "slaballoc";
    long libc = 0, ld = 0, ours = 0, heap = 0, anon = 0, other = 0;
    char name[512] = "";
    if (!slurp("/proc/self/smaps")) return;
    for (char *l = buf; *l;) {
        char *e = strchr(l, '\n');
        if (!e) break;
        *e = 0;
        unsigned long a, b;
        long kb;
        if (sscanf(l, "%lx-%lx", &a, &b) == 2 && l[strspn(l, "0123456789abcdef")] == '-') {
            /* the path is the sixth field; anonymous mappings have none */
            char *p = l;
            for (int f = 0; f < 5 && p; f++) p = strchr(p + 1, ' ');
            while (p && *p == ' ') p++;
            snprintf(name, sizeof name, "%s", p ? p : "");
        } else if (sscanf(l, "Rss: %ld kB", &kb) == 1) {
            if (strstr(name, "libc.so")) libc += kb;
            else if (strstr(name, "ld-linux")) ld += kb;
            else if (strstr(name, lib)) ours += kb;
            else if (!strcmp(name, "[heap]")) heap += kb;
            else if (!name[0]) anon += kb;
            else other += kb;
        }
        l = e + 1;
    }
    fprintf(stderr, "rss_probe: KiB libc %ld ld.so %ld %s %ld heap %ld anonymous %ld other %ld\n",
            libc, ld, lib, ours, heap, anon, other);
}

static void arenas(void) {
    int slabs = getenv("RSS_PROBE_SLABS") != NULL;
    if (!slurp("/proc/self/maps")) return;
    for (char *l = buf; *l;) {
        unsigned long a, b;
        /* An arena starts on a 64 MiB boundary; its reserve and commit
         * split it into several mappings, all of which mincore covers. */
        if (sscanf(l, "%lx-%lx", &a, &b) == 2 && (a & (ARENA_SIZE - 1)) == 0 &&
            mincore((void *)a, ARENA_SIZE, vec) == 0) {
            long meta = 0, runs = 0;
            for (unsigned long i = 0; i < ARENA_PAGES; i++)
                if (vec[i] & 1) *(i < META_PAGES ? &meta : &runs) += 4;
            fprintf(stderr, "rss_probe: arena %#lx: metadata %ld KiB, runs %ld KiB\n", a, meta, runs);
            if (slabs) {
                fprintf(stderr, "rss_probe: resident pages per 32-page block of runs:");
                for (unsigned long blk = 0; META_PAGES + blk * 32 < ARENA_PAGES; blk++) {
                    int n = 0;
                    for (unsigned long i = META_PAGES + blk * 32; i < META_PAGES + (blk + 1) * 32 && i < ARENA_PAGES; i++)
                        n += vec[i] & 1;
                    if (n) fprintf(stderr, " %lu:%d", blk, n);
                }
                fprintf(stderr, "\n");
            }
        }
        char *e = strchr(l, '\n');
        if (!e) break;
        l = e + 1;
    }
}

static void report(void) {
    status();
    by_mapping();
    arenas();
    if (getenv("RSS_PROBE_STATS")) {
        int (*print)(FILE *, int) = (int (*)(FILE *, int))dlsym(RTLD_DEFAULT, "sa_stats_print");
        if (print) print(stderr, 2 /* SA_STATS_LINE */);
    }
}

static void *timer(void *arg) {
    (void)arg;
    usleep((useconds_t)atol(getenv("RSS_PROBE_US")));
    report();
    return NULL;
}

__attribute__((constructor)) static void start(void) {
    if (getenv("RSS_PROBE_US")) {
        pthread_t t;
        if (pthread_create(&t, NULL, timer, NULL) == 0) pthread_detach(t);
    }
}

__attribute__((destructor)) static void at_exit(void) {
    if (!getenv("RSS_PROBE_US")) report();
}
