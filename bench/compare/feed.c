/* Workload 6, feed latency: the common bookkeeping, and evlog's side (SSE
 * subscribers of evlogd, --sync full).
 *
 * The latency of one delivery is the receive time minus the moment the
 * publisher *began* its append call, both on this process's monotonic clock:
 * the same definition for every system, whatever it stamps inside, and it
 * includes the commit (with its fsync) that must come before delivery. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "cmp.h"

int cmp_feed_begin(cmp_feed *f)
{
    f->sent = calloc((size_t)f->events + 1, sizeof *f->sent);
    pthread_mutex_t *mu = malloc(sizeof *mu);
    if (!f->sent || !mu) {
        free(f->sent);
        free(mu);
        return -1;
    }
    pthread_mutex_init(mu, NULL);
    f->mu = mu;
    f->expected = (uint64_t)f->events * (uint64_t)f->subscribers;
    f->received = 0;
    return 0;
}

void cmp_feed_got(cmp_feed *f, uint64_t k)
{
    uint64_t now = bench_now_ns();
    if (k < 1 || k > (uint64_t)f->events)
        return;
    int64_t t = atomic_load_explicit((_Atomic int64_t *)&f->sent[k], memory_order_acquire);
    pthread_mutex_lock(f->mu);
    if (t > 0) {
        bench_lat_add(&f->lat, now - (uint64_t)t);
        f->received++;
    }
    pthread_mutex_unlock(f->mu);
}

int cmp_feed_publish(cmp_feed *f, int (*pub)(void *arg, int k, char *err), void *arg)
{
    uint64_t t0 = bench_now_ns(), gap = 1000000000u / (uint64_t)f->rate;
    for (int k = 1; k <= f->events; k++) {
        uint64_t due = t0 + (uint64_t)(k - 1) * gap, now = bench_now_ns();
        if (due > now) {
            struct timespec ts = {(time_t)((due - now) / 1000000000u), (long)((due - now) % 1000000000u)};
            nanosleep(&ts, NULL);
        }
        atomic_store_explicit((_Atomic int64_t *)&f->sent[k], (int64_t)bench_now_ns(),
                              memory_order_release);
        if (pub(arg, k, f->err) != 0)
            return -1;
    }
    return 0;
}

void cmp_feed_wait(cmp_feed *f, int ms)
{
    uint64_t end = bench_now_ns() + (uint64_t)ms * 1000000u;
    for (;;) {
        pthread_mutex_lock(f->mu);
        int done = f->received >= f->expected;
        pthread_mutex_unlock(f->mu);
        if (done || bench_now_ns() > end)
            return;
        cmp_sleep_ms(2);
    }
}

void cmp_feed_end(cmp_feed *f)
{
    if (f->mu) {
        pthread_mutex_destroy(f->mu);
        free(f->mu);
    }
    f->mu = NULL;
    free(f->sent);
    f->sent = NULL;
}

/* ------------------------------------------------------ SSE subscribers */

typedef struct sub {
    int fd;
    int head_done;
    /* chunked transfer: a size line, then `left` bytes, then CRLF */
    int in_size;
    size_t left, crlf;
    char szl[32];
    size_t szn;
    char line[512]; /* the SSE line being assembled (only `id:` lines matter) */
    size_t ln;
    char head[4096];
    size_t hn;
} sub;

static void sse_line(cmp_feed *f, sub *s)
{
    s->line[s->ln] = 0;
    if (!strncmp(s->line, "id:", 3))
        cmp_feed_got(f, strtoull(s->line + 3, NULL, 10));
    s->ln = 0;
}

static void sse_body(cmp_feed *f, sub *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\n')
            sse_line(f, s);
        else if (c != '\r' && s->ln + 1 < sizeof s->line)
            s->line[s->ln++] = c;
    }
}

/* Decode chunked transfer encoding, passing the data to the SSE parser. */
static void sse_feed(cmp_feed *f, sub *s, const char *p, size_t n)
{
    while (n) {
        if (s->crlf) {
            size_t k = s->crlf < n ? s->crlf : n;
            s->crlf -= k, p += k, n -= k;
        } else if (s->left) {
            size_t k = s->left < n ? s->left : n;
            sse_body(f, s, p, k);
            s->left -= k, p += k, n -= k;
            if (!s->left)
                s->crlf = 2;
        } else {
            char c = *p++;
            n--;
            if (c == '\n') {
                s->szl[s->szn] = 0;
                s->left = strtoul(s->szl, NULL, 16);
                s->szn = 0;
            } else if (c != '\r' && s->szn + 1 < sizeof s->szl) {
                s->szl[s->szn++] = c;
            }
        }
    }
}

typedef struct sse_ctx {
    cmp_feed *f;
    sub *subs;
    int n, ep;
    atomic_int stop, open;
} sse_ctx;

static void *sse_reader(void *arg)
{
    sse_ctx *x = arg;
    struct epoll_event evs[64];
    char buf[65536];
    while (!atomic_load(&x->stop)) {
        int k = epoll_wait(x->ep, evs, 64, 50);
        for (int i = 0; i < k; i++) {
            sub *s = evs[i].data.ptr;
            ssize_t r = read(s->fd, buf, sizeof buf);
            if (r <= 0)
                continue;
            const char *p = buf;
            size_t n = (size_t)r;
            while (!s->head_done && n) { /* the answer's head, up to the blank line */
                if (s->hn + 1 < sizeof s->head)
                    s->head[s->hn++] = *p;
                p++, n--;
                if (s->hn >= 4 && !memcmp(s->head + s->hn - 4, "\r\n\r\n", 4)) {
                    s->head_done = 1;
                    atomic_fetch_add(&x->open, 1);
                }
            }
            sse_feed(x->f, s, p, n);
        }
    }
    return NULL;
}

typedef struct pub_ctx {
    cmp_http h;
    const cmp_feed *f;
} pub_ctx;

static int sse_pub(void *arg, int k, char *err)
{
    pub_ctx *p = arg;
    const cmp_ev *e = &p->f->evs[k - 1];
    char body[8192];
    size_t tl = strlen(e->type), n = 0;
    if (tl > 200 || e->len > sizeof body - 256) {
        cmp_err(err, "event too large for the feed publisher");
        return -1;
    }
    /* {"type": T, "data": <the generator's map>} in msgpack */
    body[n++] = (char)0x82;
    body[n++] = (char)0xa4;
    memcpy(body + n, "type", 4), n += 4;
    body[n++] = (char)0xd9;
    body[n++] = (char)tl;
    memcpy(body + n, e->type, tl), n += tl;
    body[n++] = (char)0xa4;
    memcpy(body + n, "data", 4), n += 4;
    memcpy(body + n, e->data, e->len), n += e->len;
    int st = cmp_http_do(&p->h, "POST", "/streams/feed-1", "Content-Type: application/msgpack\r\n",
                         body, n, err);
    if (st != 201) {
        cmp_err(err, "feed append: %d", st);
        return -1;
    }
    return 0;
}

int cmp_http_feed(const cmp_env *env, cmp_feed *f)
{
    cmp_run r = {.env = env};
    cmp_evlogd d = {.pid = -1};
    sse_ctx x = {.f = f, .ep = -1};
    pub_ctx p = {.h = {.fd = -1}, .f = f};
    pthread_t th;
    int rc = -1, started = 0;
    char data[4200];
    if (cmp_mkdir(&r) != 0 || cmp_feed_begin(f) != 0) {
        cmp_err(f->err, "set-up failed %s", r.err);
        goto out;
    }
    snprintf(data, sizeof data, "%s/data", r.dir);
    if (cmp_evlogd_start(env, data, "full", &d, f->err) != 0)
        goto out;
    x.n = f->subscribers;
    x.subs = calloc((size_t)x.n, sizeof *x.subs);
    x.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!x.subs || x.ep < 0)
        goto out;
    for (int i = 0; i < x.n; i++)
        x.subs[i].fd = -1;
    for (int i = 0; i < x.n; i++) {
        cmp_http h;
        if (cmp_http_open(&h, d.port, f->err) != 0)
            goto out;
        x.subs[i].fd = h.fd; /* only the socket: the reader thread owns it from here */
        const char *req = "GET /subscribe?from=now HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Accept: text/event-stream\r\n\r\n";
        if (write(h.fd, req, strlen(req)) != (ssize_t)strlen(req)) {
            cmp_err(f->err, "subscribe: %s", strerror(errno));
            goto out;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &x.subs[i]};
        epoll_ctl(x.ep, EPOLL_CTL_ADD, h.fd, &ev);
    }
    if (pthread_create(&th, NULL, sse_reader, &x) != 0)
        goto out;
    started = 1;
    for (int i = 0; i < 1000 && atomic_load(&x.open) < x.n; i++)
        cmp_sleep_ms(10);
    if (atomic_load(&x.open) < x.n) {
        cmp_err(f->err, "only %d of %d subscribers opened", atomic_load(&x.open), x.n);
        goto out;
    }
    cmp_sleep_ms(100); /* heads are out before the server registers the feed */
    if (cmp_http_open(&p.h, d.port, f->err) != 0 || cmp_feed_publish(f, sse_pub, &p) != 0)
        goto out;
    cmp_feed_wait(f, 3000);
    rc = 0;
out:
    if (started) {
        atomic_store(&x.stop, 1);
        pthread_join(th, NULL);
    }
    cmp_http_close(&p.h);
    for (int i = 0; x.subs && i < x.n; i++)
        if (x.subs[i].fd >= 0)
            close(x.subs[i].fd);
    free(x.subs);
    if (x.ep >= 0)
        close(x.ep);
    cmp_evlogd_stop(&d);
    if (r.dir[0])
        bench_rm_rf(r.dir);
    return rc;
}
