/* A UDP client for tests: udpask HOST PORT MESSAGE sends MESSAGE and prints the first reply,
 * waiting at most 5 s (exit 1 without one). HOST is an IPv4 address or a name looked up in
 * /etc/hosts (read here: a static binary has no NSS). Built static, because the Debian busybox
 * has no UDP client. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

static int lookup(const char *name, struct in_addr *out) {
    if (inet_pton(AF_INET, name, out) == 1)
        return 0;
    FILE *f = fopen("/etc/hosts", "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        char *save, *addr = strtok_r(line, " \t\n", &save);
        if (!addr || addr[0] == '#' || inet_pton(AF_INET, addr, out) != 1)
            continue;
        for (char *tok; (tok = strtok_r(NULL, " \t\n", &save));)
            if (strcmp(tok, name) == 0) {
                fclose(f);
                return 0;
            }
    }
    if (f)
        fclose(f);
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 4)
        return 2;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (lookup(argv[1], &addr.sin_addr) != 0) {
        fprintf(stderr, "udpask: cannot resolve %s\n", argv[1]);
        return 3;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || sendto(fd, argv[3], strlen(argv[3]), 0, (struct sockaddr *)&addr, sizeof addr) < 0)
        return 1;
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n < 0)
        return 1;
    fwrite(buf, 1, (size_t)n, stdout);
    putchar('\n');
    return 0;
}
