/* no_rseq CMD [ARG...]: runs CMD where rseq(2) fails with ENOSYS, as on
 * Linux < 4.18 (a seccomp filter, kept across exec with no_new_privs).
 * Neither glibc nor slaballoc can register an rseq area there, so the
 * per-CPU cache stays off: run.sh uses it for the tests of that path now
 * that slaballoc registers its own area where glibc's rseq is off. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "seccomp_rseq.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: no_rseq CMD [ARG...]\n");
        return 2;
    }
    if (refuse_rseq(SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)) != 0) {
        fprintf(stderr, "no_rseq: seccomp: %s\n", strerror(errno));
        return 125;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "no_rseq: exec %s: %s\n", argv[1], strerror(errno));
    return 127;
}
