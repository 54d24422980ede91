/* Optimistic concurrency race over HTTP: 64 clients append to one stream,
 * every one with the same expected revision, round after round.  In each
 * round exactly one append may win (201, at the expected revision + 1) and
 * every other must be a 409 naming the winner's revision as the current
 * one.  Afterwards the stream holds exactly one event per round, in round
 * order.
 *
 * C rather than Python: 64 x 10,000 requests.  The clients are threads on
 * keep-alive connections, released together by a barrier each round.  The
 * rounds run against `evlogd --sync none` (the race is decided by the
 * writer's revision check, not by the fsync, and 10,000 fsyncs would take
 * a minute here), then a few hundred more against a restarted
 * `evlogd --sync full` on the same data.
 *
 * EVL_RACE_ROUNDS overrides the number of rounds (default 10,000; 1,000
 * under the sanitizers, EVL_SANITIZED). */
#include "test.h" /* first: it sets _GNU_SOURCE (strcasestr) */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evlog/log.h"

#define CLIENTS 64

typedef struct server {
    pid_t pid;
    int port;
    char err[600];
} server;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void server_start(server *s, const char *data, const char *sync, int run) {
    char bin[600];
    const char *dir = getenv("EVL_BIN_DIR");
    snprintf(bin, sizeof bin, "%s/evlogd", dir ? dir : ".");
    snprintf(s->err, sizeof s->err, "%s.err%d", data, run);
    s->pid = fork();
    CHECK(s->pid >= 0);
    if (s->pid == 0) {
        int fd = open(s->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execl(bin, bin, "--data", data, "--listen", "127.0.0.1:0", "--threads", "2", "--no-builtin", "--sync",
              sync, "--max-connections", "256", (char *)NULL);
        _exit(127);
    }
    /* wait for "listening on http://127.0.0.1:PORT " with a deadline */
    double deadline = now_s() + 30;
    for (;;) {
        char buf[4096] = "";
        FILE *f = fopen(s->err, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = 0;
            fclose(f);
        }
        const char *p = strstr(buf, "listening on http://127.0.0.1:");
        if (p && strchr(p + 30, ' ')) {
            s->port = atoi(p + 30);
            return;
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            fprintf(stderr, "evlogd exited: %s\n", buf);
            CHECK(0);
        }
        CHECK(now_s() < deadline);
        usleep(10000);
    }
}

static void server_stop(server *s) {
    int st;
    kill(s->pid, SIGTERM);
    CHECK(waitpid(s->pid, &st, 0) == s->pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* One request on a keep-alive connection; the body is returned in a
 * malloc'd, NUL-terminated buffer the caller frees.  Returns the status. */
static int http(int fd, const char *method, const char *path, const char *headers, const char *body,
                char **out) {
    char req[1024];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s", method, path, headers, blen, body ? body : "");
    CHECK(n > 0 && (size_t)n < sizeof req);
    for (int off = 0; off < n;) {
        ssize_t w = write(fd, req + off, (size_t)(n - off));
        CHECK(w > 0);
        off += (int)w;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    size_t hl = 0; /* header length with its blank line, once known */
    long clen = -1;
    for (;;) {
        if (len + 4096 > cap) {
            CHECK((buf = realloc(buf, cap *= 2)) != NULL);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) fprintf(stderr, "read: %s\n", r ? strerror(errno) : "EOF");
        CHECK(r > 0);
        len += (size_t)r;
        buf[len] = 0;
        const char *end;
        if (!hl && (end = strstr(buf, "\r\n\r\n"))) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            CHECK(cl && cl < end);
            clen = atol(cl + 17);
            hl = (size_t)(end + 4 - buf);
        }
        if (hl && len >= hl + (size_t)clen) break;
    }
    int status = atoi(buf + 9);
    memmove(buf, buf + hl, (size_t)clen);
    buf[clen] = 0;
    CHECK(len == hl + (size_t)clen); /* nothing beyond: one request in flight */
    *out = buf;
    return status;
}

typedef struct shared {
    int port;
    uint64_t first, rounds;        /* revisions first .. first+rounds-1 */
    pthread_barrier_t start, done;
    _Atomic uint64_t *wins;        /* per round: 201s */
    _Atomic uint64_t n201, n409, bad;
    char badmsg[512];
    pthread_mutex_t mu;
} shared;

typedef struct client {
    shared *sh;
    int k;
} client;

static void note_bad(shared *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_bad(shared *sh, const char *fmt, ...) {
    if (atomic_fetch_add(&sh->bad, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        pthread_mutex_lock(&sh->mu);
        vsnprintf(sh->badmsg, sizeof sh->badmsg, fmt, ap);
        pthread_mutex_unlock(&sh->mu);
        va_end(ap);
    }
}

static void *client_main(void *p) {
    client *c = p;
    shared *sh = c->sh;
    int fd = dial(sh->port);
    for (uint64_t i = 0; i < sh->rounds; i++) {
        uint64_t rev = sh->first + i; /* the revision this round's winner gets */
        char hdr[64], body[128], *resp;
        if (rev == 0) snprintf(hdr, sizeof hdr, "Expected-Revision: no_stream\r\n");
        else snprintf(hdr, sizeof hdr, "Expected-Revision: %llu\r\n", (unsigned long long)(rev - 1));
        snprintf(body, sizeof body, "{\"type\":\"Raced\",\"data\":{\"round\":%llu,\"k\":%d}}",
                 (unsigned long long)rev, c->k);
        pthread_barrier_wait(&sh->start);
        int st = http(fd, "POST", "/streams/race-1", hdr, body, &resp);
        json_t *j = json_loads(resp, 0, NULL);
        if (st == 201) {
            atomic_fetch_add(&sh->n201, 1);
            atomic_fetch_add(&sh->wins[i], 1);
            json_t *ev = json_array_get(json_object_get(j, "events"), 0);
            if ((uint64_t)json_integer_value(json_object_get(ev, "revision")) != rev)
                note_bad(sh, "round %llu: 201 at revision %lld", (unsigned long long)rev,
                         (long long)json_integer_value(json_object_get(ev, "revision")));
        } else if (st == 409) {
            atomic_fetch_add(&sh->n409, 1);
            json_t *cur = json_object_get(j, "current_revision");
            const char *type = json_string_value(json_object_get(j, "type"));
            if (!json_is_integer(cur) || (uint64_t)json_integer_value(cur) != rev || !type ||
                strcmp(type, "urn:evlog:problem:conflict"))
                note_bad(sh, "round %llu: 409 %s", (unsigned long long)rev, resp);
        } else {
            note_bad(sh, "round %llu: status %d %s", (unsigned long long)rev, st, resp);
        }
        json_decref(j);
        free(resp);
        pthread_barrier_wait(&sh->done);
    }
    close(fd);
    return NULL;
}

/* Run @p rounds rounds from revision @p first against the server on @p port. */
static void race(int port, uint64_t first, uint64_t rounds, const char *label) {
    shared sh = {.port = port, .first = first, .rounds = rounds};
    sh.wins = calloc(rounds, sizeof *sh.wins);
    pthread_mutex_init(&sh.mu, NULL);
    pthread_barrier_init(&sh.start, NULL, CLIENTS);
    pthread_barrier_init(&sh.done, NULL, CLIENTS);
    pthread_t th[CLIENTS];
    client cl[CLIENTS];
    double t0 = now_s();
    for (int k = 0; k < CLIENTS; k++) {
        cl[k] = (client){&sh, k};
        CHECK(pthread_create(&th[k], NULL, client_main, &cl[k]) == 0);
    }
    for (int k = 0; k < CLIENTS; k++) pthread_join(th[k], NULL);
    double dt = now_s() - t0;
    if (sh.bad) fprintf(stderr, "%llu bad answers, first: %s\n", (unsigned long long)sh.bad, sh.badmsg);
    CHECK(sh.bad == 0);
    uint64_t not_one = 0;
    for (uint64_t i = 0; i < rounds; i++) not_one += sh.wins[i] != 1;
    CHECK(not_one == 0);
    CHECK(sh.n201 == rounds && sh.n409 == rounds * (CLIENTS - 1));
    printf("%s: %llu rounds x %d clients in %.1fs: %llu x 201 (one per round), %llu x 409 naming the "
           "winner's revision\n", label, (unsigned long long)rounds, CLIENTS, dt, (unsigned long long)sh.n201,
           (unsigned long long)sh.n409);
    fflush(stdout);
    free(sh.wins);
    pthread_barrier_destroy(&sh.start);
    pthread_barrier_destroy(&sh.done);
    pthread_mutex_destroy(&sh.mu);
}

/* The stream holds exactly one event per round, in round order. */
static void check_stream(int port, uint64_t n) {
    int fd = dial(port);
    uint64_t rev = 0;
    while (rev < n) {
        char path[128], *resp;
        snprintf(path, sizeof path, "/streams/race-1?from=%llu&limit=10000", (unsigned long long)rev);
        CHECK(http(fd, "GET", path, "", NULL, &resp) == 200);
        json_t *j = json_loads(resp, 0, NULL);
        size_t i;
        json_t *ev;
        CHECK(j && json_array_size(json_object_get(j, "events")) > 0);
        json_array_foreach(json_object_get(j, "events"), i, ev) {
            CHECK((uint64_t)json_integer_value(json_object_get(ev, "revision")) == rev);
            CHECK((uint64_t)json_integer_value(json_object_get(json_object_get(ev, "data"), "round")) == rev);
            rev++;
        }
        json_decref(j);
        free(resp);
    }
    CHECK(rev == n);
    char *resp;
    CHECK(http(fd, "GET", "/events?limit=1", "", NULL, &resp) == 200);
    json_t *j = json_loads(resp, 0, NULL);
    CHECK((uint64_t)json_integer_value(json_object_get(j, "head")) == n); /* nothing else was written */
    json_decref(j);
    free(resp);
    close(fd);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *env = getenv("EVL_RACE_ROUNDS"), *asan = getenv("EVL_SANITIZED");
    uint64_t rounds = env ? strtoull(env, NULL, 10) : (asan && *asan && strcmp(asan, "0")) ? 1000 : 10000;
    uint64_t full_rounds = rounds / 20 > 50 ? rounds / 20 : 50;
    const char *data = test_path("data");
    server s;
    server_start(&s, data, "none", 1);
    race(s.port, 0, rounds, "sync none");
    check_stream(s.port, rounds);
    server_stop(&s);
    server_start(&s, data, "full", 2);
    race(s.port, rounds, full_rounds, "sync full");
    check_stream(s.port, rounds + full_rounds);
    server_stop(&s);
    TEST_PASS();
}
