/* live_loop.c: a program that allocates until it is killed, for the live
 * view tests (c-tests/live.sh). `live_loop fork` forks first: parent and
 * child both loop, and the child writes its pid to stdout. Each round
 * makes a large block (a malloc slow path, where a process answers
 * slabtop) and a few thousand small ones, then sleeps 5 ms. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
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
    for (unsigned long r = 0;; r++) {
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
