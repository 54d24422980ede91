/* evlog-http-floor: what the HTTP layer alone costs per request.
 *
 * 64 HTTP clients appending one event each over loopback are CPU-bound on
 * the two cores of the benchmark machines, and a profile of evlogd puts a
 * large share of its workers' time in libevent's evhttp rather than in the
 * log (bench/README.md, "Where evlog falls short").  This measures that
 * share without the log: the same blocking keep-alive clients as
 * bench/compare against two servers that answer every POST at once with the
 * same bytes evlogd answers a single append with (201, Location,
 * Content-Type, Date, Content-Length, the JSON body), each with two worker
 * threads on SO_REUSEPORT sockets like evlogd:
 *
 *   evhttp  libevent 2.1's evhttp, as evlogd uses it: a read disabled when a
 *           request is complete, read and write enabled for the answer,
 *           written when epoll reports the socket writable (four epoll_ctl
 *           per request);
 *   direct  an epoll loop that keeps each connection registered for reading
 *           and writes the answer with one writev as soon as it has it
 *           (Redis's way: no epoll_ctl per request).
 *
 * Rounds alternate the two; it prints requests/s per server per round and
 * the ratio direct/evhttp per round and its median.  The difference is the
 * most a leaner HTTP layer could give evlogd's workers at this load.
 *
 *   evlog-http-floor [--clients N] [--seconds S] [--rounds R]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, strcasestr */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 2
#define MAX_CLIENTS 256

static const char BODY[] = "{\"events\":[{\"id\":\"01a23cee-e664-7d5d-a612-592cc0c6be5e\","
                           "\"stream\":\"s-1\",\"position\":2,\"revision\":1}]}";
static const char LOCATION[] = "/events/01a23cee-e664-7d5d-a612-592cc0c6be5e";

static void die(const char *what) {
    fprintf(stderr, "evlog-http-floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ------------------------------------------------------------- evhttp */

static void evhttp_answer(struct evhttp_request *req, void *arg) {
    (void)arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    evbuffer_drain(in, evbuffer_get_length(in));
    (void)evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Location", LOCATION);
    evhttp_add_header(h, "Content-Type", "application/json");
    struct evbuffer *out = evbuffer_new();
    if (!out) return;
    evbuffer_add(out, BODY, sizeof BODY - 1);
    evhttp_send_reply(req, 201, "Created", out);
    evbuffer_free(out);
}

static void *evhttp_worker(void *arg) {
    int fd = *(int *)arg;
    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http) die("evhttp_new");
    evhttp_set_gencb(http, evhttp_answer, NULL);
    if (!evhttp_accept_socket_with_handle(http, fd)) die("evhttp_accept_socket");
    event_base_dispatch(base);
    return NULL;
}

/* ------------------------------------------------------------- direct */

typedef struct dconn {
    int fd;
    size_t have;
    char buf[16384];
} dconn;

/* Answer every whole request in c->buf; -1 when the connection must close. */
static int direct_answer(dconn *c) {
    for (;;) {
        c->buf[c->have] = 0;
        char *eoh = strstr(c->buf, "\r\n\r\n");
        if (!eoh) return c->have < sizeof c->buf - 1 ? 0 : -1;
        char *cl = strcasestr(c->buf, "\r\nContent-Length:");
        size_t clen = cl && cl < eoh ? strtoul(cl + 17, NULL, 10) : 0;
        size_t total = (size_t)(eoh + 4 - c->buf) + clen;
        if (total > sizeof c->buf - 1) return -1;
        if (total > c->have) return 0;
        char date[64], head[512];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 201 Created\r\nLocation: %s\r\nContent-Type: application/json\r\n"
                          "Date: %s\r\nContent-Length: %zu\r\n\r\n",
                          LOCATION, date, sizeof BODY - 1);
        struct iovec iov[2] = {{head, (size_t)hl}, {(void *)BODY, sizeof BODY - 1}};
        /* answers are small and clients wait for each: the socket buffer
         * always has room, so a short write is an error here */
        if (writev(c->fd, iov, 2) != (ssize_t)(hl + sizeof BODY - 1)) return -1;
        memmove(c->buf, c->buf + total, c->have - total);
        c->have -= total;
    }
}

static void *direct_worker(void *arg) {
    int lfd = *(int *)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) die("epoll_ctl");
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            dconn *c = evs[i].data.ptr;
            if (!c) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) continue;
                if (!(c = calloc(1, sizeof *c))) die("calloc");
                c->fd = fd;
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) die("epoll_ctl");
                continue;
            }
            ssize_t r = read(c->fd, c->buf + c->have, sizeof c->buf - 1 - c->have);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0 || (c->have += (size_t)r, direct_answer(c) != 0)) {
                close(c->fd); /* also leaves the epoll set */
                free(c);
            }
        }
    }
    return NULL;
}

/* ------------------------------------------------------------- server */

/* Two listening sockets on one free port (SO_REUSEPORT), one per worker. */
static int listen_pair(int fds[WORKERS]) {
    int port = 0;
    for (int i = 0; i < WORKERS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fds[i] < 0 || setsockopt(fds[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) die("socket");
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof sa;
        if (bind(fds[i], (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fds[i], 1024) != 0) die("bind");
        if (getsockname(fds[i], (struct sockaddr *)&sa, &sl) != 0) die("getsockname");
        port = ntohs(sa.sin_port);
    }
    return port;
}

/* A child process with the server's two workers; returns its pid. */
static pid_t server_start(int direct, int *port) {
    int fds[WORKERS];
    *port = listen_pair(fds);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        pthread_t t[WORKERS];
        for (int i = 0; i < WORKERS; i++)
            if (pthread_create(&t[i], NULL, direct ? direct_worker : evhttp_worker, &fds[i]) != 0) _exit(1);
        pthread_join(t[0], NULL);
        _exit(0);
    }
    for (int i = 0; i < WORKERS; i++) close(fds[i]);
    return pid;
}

/* ------------------------------------------------------------- client */

typedef struct run {
    int port;
    atomic_long done;
    atomic_int stop;
    atomic_int failed;
} run;

/* One blocking keep-alive client, as bench/compare's (compare/http.c). */
static void *client(void *arg) {
    run *r = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) { r->failed = 1; return NULL; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0; connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0; tries++) {
        if (tries == 200) { r->failed = 1; close(fd); return NULL; }
        struct timespec ts = {0, 10000000}; /* the child is still starting */
        nanosleep(&ts, NULL);
        close(fd);
        if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) { r->failed = 1; return NULL; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    /* a one-event msgpack body the size of bench/compare's */
    char body[200];
    memset(body, 0xa0, sizeof body);
    char head[256], buf[4096];
    int hl = snprintf(head, sizeof head,
                      "POST /streams/s-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n"
                      "Content-Type: application/msgpack\r\n\r\n", sizeof body);
    while (!r->stop) {
        struct iovec iov[2] = {{head, (size_t)hl}, {body, sizeof body}};
        if (writev(fd, iov, 2) != (ssize_t)(hl + sizeof body)) { r->failed = 1; break; }
        size_t have = 0;
        long clen = -1;
        char *eoh = NULL;
        while (!eoh || (size_t)(eoh + 4 - buf) + (size_t)clen > have) {
            ssize_t k = read(fd, buf + have, sizeof buf - 1 - have);
            if (k <= 0) { r->failed = 1; close(fd); return NULL; }
            have += (size_t)k;
            buf[have] = 0;
            if (!eoh && (eoh = strstr(buf, "\r\n\r\n"))) {
                char *cl = strcasestr(buf, "\r\nContent-Length:");
                clen = cl ? atol(cl + 17) : 0;
            }
        }
        atomic_fetch_add(&r->done, 1);
    }
    close(fd);
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Requests/s of @p clients clients against one server, after a 1 s warm-up. */
static double measure(int direct, int clients, double seconds) {
    static run r;
    memset(&r, 0, sizeof r);
    pid_t pid = server_start(direct, &r.port);
    pthread_t t[MAX_CLIENTS];
    for (int i = 0; i < clients; i++)
        if (pthread_create(&t[i], NULL, client, &r) != 0) die("pthread_create");
    struct timespec warm = {1, 0};
    nanosleep(&warm, NULL);
    long a = atomic_load(&r.done);
    double t0 = now_s();
    struct timespec span = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&span, NULL);
    long b = atomic_load(&r.done);
    double t1 = now_s();
    r.stop = 1;
    for (int i = 0; i < clients; i++) pthread_join(t[i], NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (r.failed) {
        fprintf(stderr, "evlog-http-floor: a %s client failed\n", direct ? "direct" : "evhttp");
        exit(1);
    }
    return (double)(b - a) / (t1 - t0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int clients = 64, rounds = 3;
    double seconds = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--clients") && i + 1 < argc) clients = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: evlog-http-floor [--clients N] [--seconds S] [--rounds R]\n");
            return 2;
        }
    }
    if (clients < 1 || clients > MAX_CLIENTS || rounds < 1 || rounds > 99 || seconds <= 0) {
        fprintf(stderr, "evlog-http-floor: clients 1-%d, rounds 1-99, seconds > 0\n", MAX_CLIENTS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("evlog-http-floor: %d clients, %d workers, %.1f s per run, answers without a log\n", clients,
           WORKERS, seconds);
    printf("%-6s %12s %12s %8s\n", "round", "evhttp r/s", "direct r/s", "ratio");
    double ratio[99];
    for (int k = 0; k < rounds; k++) {
        double e = measure(0, clients, seconds), d = measure(1, clients, seconds);
        ratio[k] = d / e;
        printf("%-6d %12.0f %12.0f %7.2fx\n", k + 1, e, d, ratio[k]);
        fflush(stdout);
    }
    qsort(ratio, (size_t)rounds, sizeof *ratio, cmp_double);
    printf("median direct/evhttp: %.2fx\n", ratio[rounds / 2]);
    return 0;
}
