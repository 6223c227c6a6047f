/* A static syscall probe for the containment tests: each argument names a call to make;
 * one line per call, "name=0" when it succeeded or "name=<errno>" when it failed.
 * Built at test time with `gcc -static` (tests/support/probe.py), bound into containers. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UFFD_USER_MODE_ONLY 1
#define KEY_SPEC_PROCESS_KEYRING -2

static long call(const char *name) {
    if (!strcmp(name, "getpid"))
        return syscall(SYS_getpid);
    if (!strcmp(name, "userfaultfd"))
        /* user-mode-only needs no privilege: only a filter can refuse it. */
        return syscall(SYS_userfaultfd, UFFD_USER_MODE_ONLY);
    if (!strcmp(name, "perf_event_open")) {
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.type = PERF_TYPE_SOFTWARE;
        a.config = PERF_COUNT_SW_TASK_CLOCK;
        a.exclude_kernel = 1;
        a.exclude_hv = 1;
        return syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    }
    if (!strcmp(name, "io_uring_setup")) {
        char params[120];
        memset(params, 0, sizeof params);
        return syscall(SYS_io_uring_setup, 1, params);
    }
    if (!strcmp(name, "add_key"))
        return syscall(SYS_add_key, "user", "probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
    if (!strcmp(name, "personality"))
        return syscall(SYS_personality, READ_IMPLIES_EXEC);
    if (!strcmp(name, "personality-query"))
        return syscall(SYS_personality, 0xffffffff);
    if (!strcmp(name, "personality32")) {
        /* The same call through the i386 ABI (int 0x80, personality is 136 there): the
         * filter covers the companion architectures too. */
        long r;
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(136), "b"(READ_IMPLIES_EXEC) : "memory");
        if (r < 0 && r > -4096) {
            errno = (int)-r;
            return -1;
        }
        return r;
    }
    if (!strcmp(name, "unshare-user"))
        return syscall(SYS_unshare, 0x10000000 /* CLONE_NEWUSER */);
    errno = ENOSYS;
    return -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long r = call(argv[i]);
        printf("%s=%d\n", argv[i], r < 0 ? errno : 0);
    }
    return 0;
}
