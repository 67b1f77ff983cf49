/* hotloop N SIZE: N malloc(SIZE)+free pairs in a hot loop (used by
 * bench/callgrind.sh; run with N and 2N and subtract to cancel startup). */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    size_t sz = argc > 2 ? (size_t)atol(argv[2]) : 64;
    for (long i = 0; i < n; i++) {
        void *p = malloc(sz);
        if (!p) return 3;
        __asm__ volatile("" : : "r"(p) : "memory");   /* keep the pair */
        *(volatile char *)p = (char)i;
        free(p);
    }
    return 0;
}
