/* prodcons.c - producer on CPU 0, consumer on CPU 1, every free is remote.
 *
 * The producer mallocs N blocks (16..1024 B, ~1/256 up to 64 KiB), stores a
 * sequence number and size in each and fills the rest with a pattern derived
 * from the sequence number, then passes the pointer through a bounded
 * lock-free SPSC ring. The consumer checks order, size and every byte, then
 * frees the block. Usage: prodcons [N]   (default 4,000,000)
 * Output: "prodcons: blocks=N ok maxrss_kb=K"
 */
#define _GNU_SOURCE
#include "common.h"

#include <immintrin.h>
#include <malloc.h>
#include <stdatomic.h>
#include <sys/resource.h>

#define RING 1024 /* power of two */

static void *ring[RING];
static _Alignas(64) _Atomic size_t head; /* written by producer */
static _Alignas(64) _Atomic size_t tail; /* written by consumer */
static _Alignas(64) unsigned long nblocks;
static _Atomic int errors;

struct hdr {
    uint64_t seq;
    uint64_t size;
};

static void backoff(unsigned *spins)
{
    if (++*spins < 64)
        _mm_pause();
    else {
        sched_yield();
        *spins = 0;
    }
}

static void *producer(void *arg)
{
    (void)arg;
    int cpu = pin_to(0);
    printf("prodcons: producer on cpu %d\n", cpu);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    size_t h = 0;
    for (unsigned long seq = 0; seq < nblocks; seq++) {
        uint64_t r = xorshift64(&rng);
        size_t n = 16 + (size_t)(r % 1009);             /* 16..1024 */
        if ((r >> 20) % 256 == 0) n = 16 + (size_t)((r >> 28) % 65521); /* up to 64 KiB */
        struct hdr *b = malloc(n);
        if (!b) {
            fprintf(stderr, "prodcons: malloc(%zu) failed\n", n);
            exit(2);
        }
        b->seq = seq;
        b->size = n;
        fill(b + 1, n - sizeof *b, seq);
        unsigned spins = 0;
        while (h - atomic_load_explicit(&tail, memory_order_acquire) == RING) backoff(&spins);
        ring[h % RING] = b;
        atomic_store_explicit(&head, ++h, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    int cpu = pin_to(1);
    printf("prodcons: consumer on cpu %d\n", cpu);
    size_t t = 0;
    for (unsigned long seq = 0; seq < nblocks; seq++) {
        unsigned spins = 0;
        while (atomic_load_explicit(&head, memory_order_acquire) == t) backoff(&spins);
        struct hdr *b = ring[t % RING];
        atomic_store_explicit(&tail, ++t, memory_order_release);
        if (b->seq != seq || b->size < 16 || b->size > 65536 + 16) {
            if (atomic_fetch_add(&errors, 1) < 10)
                fprintf(stderr, "prodcons: block %p: seq %llu size %llu, want seq %lu\n", (void *)b,
                        (unsigned long long)b->seq, (unsigned long long)b->size, seq);
        } else {
            size_t off = verify(b + 1, b->size - sizeof *b, seq);
            if (off != (size_t)-1 && atomic_fetch_add(&errors, 1) < 10)
                fprintf(stderr, "prodcons: block %p seq %lu size %llu corrupted at byte %zu\n", (void *)b, seq,
                        (unsigned long long)b->size, off + sizeof *b);
            if (malloc_usable_size(b) < b->size && atomic_fetch_add(&errors, 1) < 10)
                fprintf(stderr, "prodcons: usable size %zu < %llu\n", malloc_usable_size(b),
                        (unsigned long long)b->size);
        }
        free(b);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    nblocks = argc > 1 ? strtoul(argv[1], NULL, 0) : 4000000;
    pthread_t p, c;
    if (pthread_create(&c, NULL, consumer, NULL) || pthread_create(&p, NULL, producer, NULL))
        DIE("pthread_create");
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (errors) {
        printf("prodcons: blocks=%lu FAILED errors=%d maxrss_kb=%ld\n", nblocks, errors, ru.ru_maxrss);
        return 1;
    }
    printf("prodcons: blocks=%lu ok maxrss_kb=%ld\n", nblocks, ru.ru_maxrss);
    return 0;
}
