/* migrate: runs a command and moves its main thread between CPU 0 and CPU 1
 * every INTERVAL_US microseconds (sched_setaffinity from outside), to
 * measure what migrations cost an allocator whose zones follow the CPU.
 *
 *   gcc -O2 bench/tools/migrate.c -o bench/build/migrate
 *   bench/build/migrate 2000 env LD_PRELOAD=$PWD/target/release/libslaballoc.so \
 *       SLABALLOC_STATS=1 bench/build/mixed
 *
 * Exits with the command's status. Only the thread whose id is the child's
 * pid moves: for single-threaded workloads. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s INTERVAL_US command [args...]\n", argv[0]);
        return 2;
    }
    int us = atoi(argv[1]);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int st = 0;
    for (unsigned i = 0; waitpid(pid, &st, WNOHANG) == 0; i++) {
        cpu_set_t s;
        CPU_ZERO(&s);
        CPU_SET(i & 1, &s);
        sched_setaffinity(pid, sizeof s, &s); /* fails once it exited */
        usleep(us > 0 ? (useconds_t)us : 1000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
