/* glibc_simple: a tight single-thread malloc/free loop of small sizes, in the
 * spirit of glibc's benchtests/bench-malloc-simple (written from scratch):
 * for each size of 16, 24, 32, 48, 64, ..., 1024 B (two steps per power of
 * two) and each batch length of 25, 100, 400 and 1600 blocks, repeatedly
 * allocate the batch and free it again in allocation order. Each block gets
 * a tag in its first word and a byte at its end, both checked before the
 * free (heavier pattern work would hide the allocator).
 * ops = malloc+free pairs. threads = 1. */
#include "common.h"
#define WL "glibc_simple"

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    static const int counts[] = {25, 100, 400, 1600};
    size_t sizes[32]; int ns = 0;
    for (size_t p = 16; p <= 1024; p *= 2) {
        sizes[ns++] = p;
        if (p < 1024) sizes[ns++] = p + p / 2;
    }
    /* the same number of pairs for every (size, count) cell */
    uint64_t per_cell = (uint64_t)(600000 * scale); if (per_cell < 1600) per_cell = 1600;
    void **blk = xmalloc(WL, 1600 * sizeof(void *));
    uint64_t ops = 0, tag = 0x1234;
    double t0 = now_sec();
    for (int si = 0; si < ns; si++) {
        size_t n = sizes[si];
        for (int ci = 0; ci < 4; ci++) {
            int c = counts[ci];
            for (uint64_t rep = per_cell / (uint64_t)c; rep > 0; rep--) {
                for (int i = 0; i < c; i++) {
                    uint64_t *p = malloc(n);
                    if (!p) die(WL, "malloc returned NULL", p, n);
                    p[0] = tag + (uint64_t)i;
                    ((uint8_t *)p)[n - 1] = (uint8_t)i;
                    blk[i] = p;
                }
                for (int i = 0; i < c; i++) {
                    uint64_t *p = blk[i];
                    if (p[0] != tag + (uint64_t)i || ((uint8_t *)p)[n - 1] != (uint8_t)i)
                        die(WL, "content mismatch", p, n);
                    free(p);
                }
                tag += 0x10000;
                ops += (uint64_t)c;
            }
        }
    }
    double t1 = now_sec();
    free(blk);
    report(WL, 1, ops, t1 - t0);
    return 0;
}
