/* A system call probe for the security tests: sysprobe NAME tries one call and prints "ok" or
 * the errno's name (EPERM, ENOSYS, ...), exiting 0 or 1. NAME is one of:
 *   kcmp     kcmp(2) on our own process (the default seccomp profile refuses it without
 *            CAP_SYS_PTRACE)
 *   userns   unshare(CLONE_NEWUSER)
 *   raw      socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) (needs CAP_NET_RAW)
 *   icmp     socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) (an unprivileged ping socket; needs our
 *            group in net.ipv4.ping_group_range)
 *   add_key  add_key(2) of a user key to the process keyring
 * Built static, since busybox calls none of these directly. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    default: return strerror(e);
    }
}

int main(int argc, char **argv) {
    long r = -1;
    if (argc != 2) {
        fprintf(stderr, "usage: sysprobe kcmp|userns|raw|icmp|add_key\n");
        return 2;
    }
    errno = 0;
    if (strcmp(argv[1], "kcmp") == 0) {
        pid_t self = getpid();
        r = syscall(SYS_kcmp, self, self, 0 /* KCMP_FILE */, 0, 0);
    } else if (strcmp(argv[1], "userns") == 0) {
        r = unshare(CLONE_NEWUSER);
    } else if (strcmp(argv[1], "raw") == 0) {
        r = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    } else if (strcmp(argv[1], "icmp") == 0) {
        r = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    } else if (strcmp(argv[1], "add_key") == 0) {
        r = syscall(SYS_add_key, "user", "carrier-probe", "x", 1, -2 /* process keyring */);
    } else {
        fprintf(stderr, "sysprobe: unknown probe %s\n", argv[1]);
        return 2;
    }
    if (r < 0) {
        printf("%s\n", errname(errno));
        return 1;
    }
    printf("ok\n");
    return 0;
}
