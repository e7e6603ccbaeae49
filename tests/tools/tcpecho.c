/* A TCP echo server for tests: tcpecho PORT [ADDRESS [reset]]. One child per connection echoes
 * until the client half-closes, then closes; with "reset" it reads once and resets the
 * connection instead. It listens with a full backlog so that many clients can connect at once
 * (busybox nc listens with a backlog of 2, and then the kernel drops and resets connections
 * under load). Without ADDRESS (or with 0.0.0.0) it binds the wildcard. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void echo(int fd, int reset) {
    char buf[65536];
    ssize_t n;
    if (reset) {
        struct linger now = {.l_onoff = 1, .l_linger = 0};
        read(fd, buf, sizeof buf);
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
        _exit(0); /* closing with a zero linger sends a reset */
    }
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w <= 0)
                _exit(1);
            off += w;
        }
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (argc > 2 && inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1)
        return 2;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, SOMAXCONN) < 0)
        return 1;
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    for (;;) {
        int conn = accept(fd, NULL, NULL);
        if (conn < 0)
            continue;
        if (fork() == 0) {
            close(fd);
            echo(conn, argc > 3);
        }
        close(conn);
    }
}
