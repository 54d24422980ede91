/* evlog-sse-latency: commit-to-delivery latency of evlogd's feeds.
 *
 * Opens N subscribers (GET /subscribe?from=now&type=Lat), waits until every
 * one has its stream open, then appends M events one by one at R events/s
 * on a keep-alive connection.  For each event each subscriber receives, the
 * latency is the receive time minus the event's `time` (its commit time,
 * stamped by the log's writer when the group commit is built; with --sync
 * full it includes the fsync).  Client and server share the machine's clock.
 * It also reports delivery relative to the appender receiving its 201 (the
 * durable commit as the client learns it; negative when the feed was faster
 * than the answer).
 *
 * usage: evlog-sse-latency HOST:PORT SUBSCRIBERS [EVENTS] [RATE]
 * prints: subscribers, events, frames received, p50/p90/p99/max in ms.
 *
 * Plain sockets and epoll, one thread for the subscribers and one for the
 * appender, so that the client itself adds as little as it can.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct sub {
    int fd;
    int headers_done, open;
    /* chunked decoding: size line, then `left` bytes of data, then CRLF */
    int in_size;
    size_t left, skip_crlf;
    char sizeline[32];
    size_t sl;
    char line[65536];              /* the SSE line being assembled */
    size_t ll;
    char head[4096];
    size_t hl;
    long got;
} sub;

static struct sockaddr_in addr;
static int n_events = 300, rate = 100;
typedef struct frame {
    int64_t recv, time;          /* received; the event's commit time */
    uint64_t pos;
} frame;
static frame *fr;
static size_t n_fr, cap_fr;
static int64_t *ack;             /* per event: when its 201 arrived */
static uint64_t first_pos;       /* position of the first appended event */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int connect_to(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* "2026-11-23T10:30:00.123456789Z" -> ns since the epoch (UTC). */
static int64_t parse_time(const char *s) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int64_t ns = (int64_t)timegm(&tm) * 1000000000;
    const char *f = s + 19;
    if (*f == '.') {
        int64_t mul = 100000000;
        for (f++; *f >= '0' && *f <= '9'; f++, mul /= 10) ns += (*f - '0') * mul;
    }
    return ns;
}

static void on_line(sub *s, int64_t t) {
    s->line[s->ll] = '\0';
    if (!strncmp(s->line, ": evlog feed", 12)) s->open = 1;
    if (strncmp(s->line, "data: ", 6)) return;
    const char *p = strstr(s->line, "\"time\":\""), *q = strstr(s->line, "\"position\":");
    if (!p || !q) return;
    if (n_fr == cap_fr) {
        cap_fr = cap_fr ? cap_fr * 2 : 65536;
        fr = realloc(fr, cap_fr * sizeof *fr);
    }
    fr[n_fr++] = (frame){t, parse_time(p + 8), strtoull(q + 11, NULL, 10)};
    s->got++;
}

static void on_data(sub *s, const char *p, size_t n, int64_t t) {
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (s->ll < sizeof s->line - 1 && c != '\n') s->line[s->ll++] = c;
        if (c == '\n') {
            on_line(s, t);
            s->ll = 0;
        }
    }
}

/* Feed received bytes through HTTP headers, then chunked decoding. */
static void on_bytes(sub *s, const char *p, size_t n, int64_t t) {
    size_t i = 0;
    while (!s->headers_done && i < n) {
        if (s->hl < sizeof s->head) s->head[s->hl++] = p[i];
        i++;
        if (s->hl >= 4 && !memcmp(s->head + s->hl - 4, "\r\n\r\n", 4)) {
            s->headers_done = 1;
            s->in_size = 1;
            if (strncmp(s->head, "HTTP/1.1 200", 12)) {
                fprintf(stderr, "subscribe failed: %.*s\n", (int)s->hl, s->head);
                exit(1);
            }
        }
    }
    while (i < n) {
        if (s->skip_crlf) {
            s->skip_crlf--;
            i++;
        } else if (s->in_size) {
            char c = p[i++];
            if (c == '\n') {
                s->sizeline[s->sl] = '\0';
                s->left = strtoul(s->sizeline, NULL, 16);
                s->sl = 0;
                s->in_size = 0;
                if (!s->left) return; /* the end */
            } else if (c != '\r' && s->sl < sizeof s->sizeline - 1) {
                s->sizeline[s->sl++] = c;
            }
        } else {
            size_t k = n - i < s->left ? n - i : s->left;
            on_data(s, p + i, k, t);
            i += k;
            s->left -= k;
            if (!s->left) {
                s->in_size = 1;
                s->skip_crlf = 2;
            }
        }
    }
}

static void *appender(void *arg) {
    (void)arg;
    int fd = connect_to();
    char req[512], resp[4096];
    int64_t period = 1000000000LL / rate, next = now_ns();
    for (int i = 0; i < n_events; i++) {
        const char *body = "{\"type\":\"Lat\",\"data\":{\"x\":1}}";
        int n = snprintf(req, sizeof req,
                         "POST /streams/lat-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
        while (now_ns() < next) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
        next += period;
        if (write(fd, req, (size_t)n) != n) {
            perror("write");
            exit(1);
        }
        /* read one whole answer (small, with Content-Length) */
        size_t got = 0;
        for (;;) {
            ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
            if (r <= 0) {
                perror("read");
                exit(1);
            }
            got += (size_t)r;
            resp[got] = '\0';
            char *h = strstr(resp, "\r\n\r\n"), *cl = strcasestr(resp, "Content-Length:");
            if (h && cl && got >= (size_t)(h + 4 - resp) + strtoul(cl + 15, NULL, 10)) break;
        }
        ack[i] = now_ns();
        if (strncmp(resp, "HTTP/1.1 201", 12)) {
            fprintf(stderr, "append failed: %s\n", resp);
            exit(1);
        }
        const char *pp = strstr(resp, "\"position\":");
        if (i == 0 && pp) first_pos = strtoull(pp + 11, NULL, 10);
    }
    close(fd);
    return NULL;
}

static int cmp(const void *a, const void *b);
static void report(const char *what, int64_t *v, size_t n) {
    qsort(v, n, sizeof *v, cmp);
#define PCT(p) (n ? (double)v[(size_t)((double)(n - 1) * (p))] / 1e6 : 0.0)
    printf("  %-14s p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  max %7.2f ms\n", what, PCT(0.50), PCT(0.90),
           PCT(0.99), PCT(1.0));
}

static int cmp(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: evlog-sse-latency HOST:PORT SUBSCRIBERS [EVENTS] [RATE]\n");
        return 2;
    }
    char host[64];
    int port = 0;
    if (sscanf(argv[1], "%63[^:]:%d", host, &port) != 2) return 2;
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &addr.sin_addr);
    int n = atoi(argv[2]);
    if (argc > 3) n_events = atoi(argv[3]);
    if (argc > 4) rate = atoi(argv[4]);
    sub *subs = calloc((size_t)n, sizeof *subs);
    ack = calloc((size_t)n_events, sizeof *ack);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        subs[i].fd = connect_to();
        const char *req = "GET /subscribe?from=now&type=Lat HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
        if (write(subs[i].fd, req, strlen(req)) < 0) return 1;
        fcntl(subs[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &subs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
    }
    static char buf[1 << 20];
    struct epoll_event evs[256];
    int open = 0, started = 0;
    pthread_t th;
    int64_t deadline = now_ns() + 60000000000LL, expect = (int64_t)n * n_events;
    for (;;) {
        int k = epoll_wait(ep, evs, 256, 100);
        int64_t t = now_ns();
        for (int j = 0; j < k; j++) {
            sub *s = evs[j].data.ptr;
            for (;;) {
                ssize_t r = read(s->fd, buf, sizeof buf);
                if (r <= 0) break;
                int was = s->open;
                on_bytes(s, buf, (size_t)r, t);
                if (!was && s->open) open++;
            }
        }
        if (!started && open == n) {
            started = 1;
            pthread_create(&th, NULL, appender, NULL);
            deadline = now_ns() + (int64_t)n_events * 1000000000LL / rate + 10000000000LL;
        }
        if ((started && (int64_t)n_fr >= expect) || now_ns() > deadline) break;
    }
    if (!started) {
        fprintf(stderr, "only %d of %d subscribers opened\n", open, n);
        return 1;
    }
    pthread_join(th, NULL);
    int64_t *lc = malloc((n_fr + 1) * sizeof *lc), *la = malloc((n_fr + 1) * sizeof *la);
    size_t na = 0;
    for (size_t i = 0; i < n_fr; i++) {
        lc[i] = fr[i].recv - fr[i].time;
        uint64_t k = fr[i].pos - first_pos;
        if (first_pos && k < (uint64_t)n_events) la[na++] = fr[i].recv - ack[k];
    }
    printf("subscribers %d, events %d, frames %zu of %lld\n", n, n_events, n_fr, (long long)expect);
    report("commit time", lc, n_fr);
    report("201 received", la, na);
    return (int64_t)n_fr == expect ? 0 : 1;
}
