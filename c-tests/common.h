/* Shared helpers for the slaballoc C tests. Header-only, no allocation. */
#ifndef SLABALLOC_CTEST_COMMON_H
#define SLABALLOC_CTEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_fail __attribute__((unused));        /* number of failed checks */
static int g_fail_printed __attribute__((unused));  /* cap on printed failures */

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            g_fail++;                                                         \
            if (g_fail_printed++ < 60) {                                      \
                fprintf(stderr, "  FAIL %s:%d: (%s) ", __FILE__, __LINE__,    \
                        #cond);                                               \
                fprintf(stderr, __VA_ARGS__);                                 \
                fputc('\n', stderr);                                          \
            }                                                                 \
        }                                                                     \
    } while (0)

/* Hard failure: print and exit at once. */
#define DIE(...)                                                              \
    do {                                                                      \
        fprintf(stderr, "  FATAL %s:%d: ", __FILE__, __LINE__);               \
        fprintf(stderr, __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                  \
        exit(2);                                                              \
    } while (0)

/* slaballoc is the active allocator when its prefixed API is visible. */
static inline int slaballoc_loaded(void)
{
    return dlsym(RTLD_DEFAULT, "sa_malloc") != NULL;
}

/* Fill / verify fast: pattern in 8-byte words (offset-dependent), tail bytes. */
static inline uint64_t patw(size_t wi, uint64_t s)
{
    uint64_t x = (uint64_t)wi * 0x9E3779B97F4A7C15ull ^ (s + 0x632BE59BD9B4E019ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    return x;
}

/* Byte i of the pattern is byte (i % 8) of patw(i / 8, s): independent of the
 * length that was filled, so a prefix of a filled block verifies. */
static inline unsigned char pat(size_t i, uint64_t s)
{
    return (unsigned char)(patw(i / 8, s) >> (8 * (i % 8)));
}

static inline void fill(void *p, size_t n, uint64_t s)
{
    unsigned char *b = p;
    size_t w = n / 8, i;
    for (i = 0; i < w; i++) {
        uint64_t v = patw(i, s);
        memcpy(b + i * 8, &v, 8);
    }
    for (i = w * 8; i < n; i++)
        b[i] = pat(i, s);
}

/* Returns offset of first mismatch, or (size_t)-1 when all n bytes match. */
static inline size_t verify(const void *p, size_t n, uint64_t s)
{
    const unsigned char *b = p;
    size_t w = n / 8, i;
    for (i = 0; i < w; i++) {
        uint64_t v = patw(i, s), got;
        memcpy(&got, b + i * 8, 8);
        if (got != v) {
            size_t k;
            for (k = 0; k < 8; k++)
                if (b[i * 8 + k] != ((unsigned char *)&v)[k])
                    return i * 8 + k;
        }
    }
    for (i = w * 8; i < n; i++)
        if (b[i] != pat(i, s))
            return i;
    return (size_t)-1;
}

static inline uint64_t xorshift64(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *st = x;
}

/* CPUs the process may run on, captured at startup (before any thread pins
 * itself: threads inherit their creator's affinity). */
static cpu_set_t g_allowed_cpus;
__attribute__((constructor)) static void capture_allowed_cpus(void)
{
    if (sched_getaffinity(0, sizeof g_allowed_cpus, &g_allowed_cpus) != 0)
        CPU_ZERO(&g_allowed_cpus);
}

/* Pin the calling thread to the idx-th CPU of the process's allowed set
 * (modulo the set size). Returns the CPU number, or -1. */
static inline int pin_to(int idx)
{
    cpu_set_t one;
    int cpus[CPU_SETSIZE], n = 0, c;
    for (c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &g_allowed_cpus))
            cpus[n++] = c;
    if (n == 0)
        return -1;
    c = cpus[idx % n];
    CPU_ZERO(&one);
    CPU_SET(c, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0)
        return -1;
    return c;
}

/* Unpin: allow the calling thread on all CPUs of the process's set. */
static inline void unpin(void)
{
    pthread_setaffinity_np(pthread_self(), sizeof g_allowed_cpus, &g_allowed_cpus);
}

/* Seconds on the monotonic clock. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* n malloc/free pairs back to back, of 24 + i % span bytes: under
 * slaballoc, 4096 of them within 50 ms retire the starter heap (the zones
 * serve from then on). Each block is written and its address published:
 * the compiler drops a bare free(malloc(n)). */
static void *volatile g_pair_sink;
static inline void fast_pairs(int n, size_t span)
{
    for (int i = 0; i < n; i++) {
        char *p = malloc(24 + (size_t)i % span);
        CHECK(p != NULL, "malloc(%zu)", 24 + (size_t)i % span);
        if (!p)
            return;
        p[0] = (char)i;
        g_pair_sink = p;
        free(p);
    }
}

/* Resident set size in bytes from /proc/self/statm (no stdio, no malloc). */
static inline size_t rss_bytes(void)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *sp = strchr(buf, ' ');
    if (!sp)
        return 0;
    return (size_t)strtoull(sp + 1, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

#endif
