/* live_loop.c: a program that allocates until it is killed, or for
 * SECONDS then exits normally, for the live view tests (c-tests/live.sh):
 * `live_loop [fork] [SECONDS]`. With `fork` it forks first: parent and
 * child both loop, and the parent prints the child's pid. Each round
 * makes a large block (a malloc slow path, where a process answers
 * slabtop) and a few thousand small ones, then sleeps 5 ms. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int a = 1;
    if (argc > a && strcmp(argv[a], "fork") == 0) {
        a++;
        pid_t c = fork();
        if (c < 0)
            return 1;
        if (c > 0) {
            printf("child %d\n", (int)c);
            fflush(stdout);
        }
    }
    static void *keep[4096];
    /* Seen by the compiler as used elsewhere: the large malloc stays. */
    static void *volatile big;
    struct timespec ts = {0, 5 * 1000 * 1000};
    double secs = argc > a ? atof(argv[a]) : 1e9;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned long r = 0;; r++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs)
            return 0;
        big = malloc(100000);
        memset(big, 1, 100000);
        for (int i = 0; i < 4096; i++) {
            free(keep[i]);
            keep[i] = malloc(16 + (i * 7 + r) % 500);
        }
        free(big);
        nanosleep(&ts, NULL);
    }
}
