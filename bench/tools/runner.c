/* runner RESULTFILE TIMEOUT_S PROG [ARGS...]
 *
 * Runs PROG (stdio inherited) and writes its rusage from wait4() to
 * RESULTFILE as key=value tokens. Exists because ru_maxrss of a process
 * started straight from Python includes the Python interpreter's RSS (Linux
 * keeps the pre-exec mm's high-water mark, and posix_spawn/vfork shares the
 * parent's mm); this launcher is linked statically, so that floor is a few
 * hundred KiB. Kills PROG with SIGKILL after TIMEOUT_S seconds (timeout=1). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: runner RESULTFILE TIMEOUT_S PROG [ARGS...]\n"); return 127; }
    double limit = atof(argv[2]);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[3], NULL, NULL, &argv[3], environ);
    if (rc) { fprintf(stderr, "runner: cannot run %s: errno %d\n", argv[3], rc); return 127; }
    struct timespec t0, t1, nap = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int status = 0, timed_out = 0;
    struct rusage ru;
    for (;;) {
        pid_t w = wait4(pid, &status, WNOHANG, &ru);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) { perror("runner: wait4"); return 127; }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (limit > 0 && el > limit && !timed_out) { kill(pid, SIGKILL); timed_out = 1; }
        nanosleep(&nap, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    FILE *f = fopen(argv[1], "w");
    if (!f) { perror("runner: result file"); return 127; }
    fprintf(f, "exited=%d code=%d signal=%d timeout=%d wall_s=%.6f maxrss_kb=%ld minflt=%ld majflt=%ld "
            "utime_s=%.6f stime_s=%.6f nvcsw=%ld nivcsw=%ld\n",
            WIFEXITED(status), WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0, timed_out, wall,
            ru.ru_maxrss, ru.ru_minflt, ru.ru_majflt,
            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6,
            ru.ru_nvcsw, ru.ru_nivcsw);
    fclose(f);
    return 0;
}
