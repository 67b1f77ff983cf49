/* seccomp_rseq.h: make rseq(2) fail for the calling thread (and, with
 * no_new_privs, for what it execs), as on a kernel without rseq. Shared by
 * no_rseq.c (ENOSYS, kept across exec) and own_rseq.c (a trap, one thread). */
#ifndef SECCOMP_RSEQ_H
#define SECCOMP_RSEQ_H
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#ifndef SYS_rseq
#define SYS_rseq 334
#endif

/* Installs a filter on this thread that answers rseq(2) with `action`
 * (a SECCOMP_RET_* value) and allows everything else. 0 on success, -1
 * with errno set otherwise. */
static inline int refuse_rseq(unsigned action)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rseq, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    /* This thread only (no SECCOMP_FILTER_FLAG_TSYNC). */
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}
#endif
