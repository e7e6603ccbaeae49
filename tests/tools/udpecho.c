/* A UDP echo server for tests: udpecho PORT [ADDRESS]. Built static and put into a test image,
 * because the Debian busybox has no UDP listener. Without ADDRESS it binds the wildcard. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (argc > 2 && inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1)
        return 2;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        return 1;
    for (;;) {
        char buf[2048];
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n >= 0)
            sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
    }
}
