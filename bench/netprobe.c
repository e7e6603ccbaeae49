#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static int serve(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 128)) { perror("listen"); return 1; }
    for (;;) {
        char c;
        int c_fd = accept(s, NULL, NULL);
        if (c_fd < 0) continue;
        if (read(c_fd, &c, 1) == 1) (void)!write(c_fd, &c, 1);
        close(c_fd);
    }
}

static int rr(const char *host, int port, int n, double bound) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    long long end = now_ns() + (long long)(bound * 1e9), *v = calloc(n, sizeof *v);
    int got = 0, fails = 0;
    while (getaddrinfo(host, p, &hints, &ai) != 0)
        if (now_ns() > end) { fprintf(stderr, "cannot resolve %s\n", host); return 1; }
    while (got < n && now_ns() < end) {
        char c = 'x';
        long long t0 = now_ns();
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0 && write(s, &c, 1) == 1 && read(s, &c, 1) == 1)
            v[got++] = now_ns() - t0;
        else if (++fails > n) { close(s); break; }
        close(s);
    }
    if (got == 0) { fprintf(stderr, "no connection succeeded\n"); return 1; }
    qsort(v, got, sizeof *v, cmp);
    printf("{\"median_us\": %.1f, \"p95_us\": %.1f, \"n\": %d, \"failed\": %d}\n", v[got / 2] / 1e3,
           v[(got * 95 + 99) / 100 - 1] / 1e3, got, fails);
    return 0;
}

static int resolve(double bound, int n, char **names) {
    long long end = now_ns() + (long long)(bound * 1e9);
    int left = n;
    char *done = calloc(n, 1);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    while (left > 0) {
        for (int i = 0; i < n; i++) {
            if (!done[i] && getaddrinfo(names[i], NULL, &hints, &ai) == 0) {
                done[i] = 1;
                left--;
                freeaddrinfo(ai);
            }
        }
        if (left == 0) break;
        if (now_ns() > end) { fprintf(stderr, "unresolved after %.0f s\n", bound); return 1; }
        usleep(2000);
    }
    printf("%lld\n", now_ns());
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]));
    if (argc >= 6 && !strcmp(argv[1], "rr")) return rr(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    if (argc >= 4 && !strcmp(argv[1], "resolve")) return resolve(atof(argv[2]), argc - 3, argv + 3);
    fprintf(stderr, "usage: netprobe serve PORT | rr HOST PORT N SECONDS | resolve SECONDS NAME...\n");
    return 2;
}
