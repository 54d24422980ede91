/* Connections: HTTP/1.1 on an epoll loop, the way Redis serves its protocol.
 *
 * WHY not libevent's evhttp.  With 64 clients appending single events the
 * workers' CPU is what bounds evlogd, and evhttp spent a large part of it
 * on itself: it disables reading when a request is whole and enables
 * reading and writing for the answer, which it writes only when epoll has
 * reported the socket writable (four epoll_ctl and one more loop turn per
 * request), and it allocates every header of both.  bench/http/floor.c
 * measures the difference without a log: 1.22-1.55x the requests/s.  evhttp
 * also had no connection cap, restarted its timeouts on every byte and
 * answered some errors with HTML pages we had to rewrite in flight.
 *
 * HOW.  A connection is registered for reading once and stays so.  Bytes go
 * into one buffer per connection; http1.c parses the head in place (field
 * values become NUL-terminated strings there) and the body is taken from
 * the same buffer, chunked bodies decoded in place.  A handler answers now
 * or later (appends answer after their group commit); meanwhile the
 * connection keeps reading, so a client that goes away is seen, and a
 * pipelined request waits in the buffer.  An answer is written at once with
 * one writev; only what the socket does not take waits for EPOLLOUT.
 *
 * Deadlines: a whole request within header_timeout_ms of its first byte
 * (so one byte a second does not hold a connection), idle_timeout_ms
 * between requests, and an answer that makes no progress for
 * idle_timeout_ms (a feed's own write timeout) closes the connection.
 * Connections above max_connections are accepted and their first request
 * answered 503, so a client learns why instead of timing out.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/srv_int.h"

#define IN_MIN 4096
#define LINGER_NS 2000000000LL /* after an error: read and drop for this long at most */

static void read_cb(evutil_socket_t fd, short what, void *arg);
static void write_cb(evutil_socket_t fd, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void process(srv_conn *c);
static void flush(srv_conn *c);

static void arm_ns(srv_conn *c, int64_t ns) {
    if (ns < 0) ns = 0;
    struct timeval tv = {(time_t)(ns / 1000000000), (suseconds_t)(ns % 1000000000 / 1000)};
    evtimer_add(c->timer, &tv);
}

static void set_read(srv_conn *c, int on) {
    if (c->fd < 0 || c->rev_on == on) return;
    c->rev_on = on;
    if (on) event_add(c->rev, NULL);
    else event_del(c->rev);
}

static void set_write(srv_conn *c, int on) {
    if (c->fd < 0 || c->wev_on == on) return;
    c->wev_on = on;
    if (on) event_add(c->wev, NULL);
    else event_del(c->wev);
}

/* ---------------------------------------------------------- lifecycle */

static void conn_release(srv_conn *c) {
    srv_worker *w = c->w;
    if (c->sub) evl__srv_sse_closed(c->sub); /* clears c->sub */
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->rev) event_free(c->rev);
    if (c->wev) event_free(c->wev);
    if (c->timer) event_free(c->timer);
    if (c->fd >= 0) close(c->fd);
    if (c->req.u) evhttp_uri_free(c->req.u);
    if (c->req.ohdr) evbuffer_free(c->req.ohdr);
    if (c->out) evbuffer_free(c->out);
    evl_free(c->in);
    evl_free(c->fields);
    atomic_fetch_sub(&w->srv->n_conns, 1);
    atomic_fetch_sub_explicit(&w->st.connections, 1, memory_order_relaxed);
    evl_free(c);
}

/* Close the socket; the connection itself goes at the top of the next loop
 * turn (timer_cb), never under a caller that may still hold it (a feed
 * writing to its subscribers, a handler answering at once).  A request
 * still being handled keeps it until it answers (answered()). */
static void conn_shut(srv_conn *c) {
    if (c->fd >= 0) {
        event_del(c->rev);
        event_del(c->wev);
        c->rev_on = c->wev_on = 0;
        close(c->fd);
        c->fd = -1;
    }
    if (c->state != CONN_HANDLING) arm_ns(c, 0);
    else evtimer_del(c->timer);
}

static void conn_new(srv_worker *w, int fd) {
    srv_conn *c = evl_calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->w = w;
    c->fd = fd;
    c->state = CONN_IDLE;
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, read_cb, c);
    c->wev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
    c->timer = evtimer_new(w->base, timer_cb, c);
    c->out = evbuffer_new();
    c->req.ohdr = evbuffer_new();
    c->req.conn = c;
    c->in = evl_malloc(IN_MIN);
    c->in_cap = IN_MIN;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add_explicit(&w->st.connections, 1, memory_order_relaxed);
    if (atomic_fetch_add(&w->srv->n_conns, 1) >= w->srv->cfg.max_connections) {
        c->over_cap = 1;
        atomic_fetch_add_explicit(&w->st.rejected_connections, 1, memory_order_relaxed);
    }
    if (!c->rev || !c->wev || !c->timer || !c->out || !c->req.ohdr || !c->in) {
        conn_release(c);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* an answer is one write */
    set_read(c, 1);
    arm_ns(c, (int64_t)w->srv->cfg.idle_timeout_ms * 1000000);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg) {
    srv_worker *w = arg;
    for (int i = 0; i < 64; i++) { /* a burst at a time; the rest on the next turn */
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN, or out of descriptors: retried when epoll says */
        conn_new(w, fd);
    }
}

int evl__srv_listen(srv_worker *w, int fd) {
    w->lfd = fd;
    w->accept_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, accept_cb, w);
    if (!w->accept_ev || event_add(w->accept_ev, NULL)) return EVL_ENOMEM;
    return EVL_OK;
}

void evl__srv_unlisten(srv_worker *w) {
    if (w->accept_ev) event_free(w->accept_ev);
    w->accept_ev = NULL;
    if (w->lfd >= 0) close(w->lfd);
    w->lfd = -1;
}

void evl__srv_conn_free_all(srv_worker *w) {
    while (w->conns) conn_release(w->conns);
}

size_t evl__srv_conn_queued(srv_conn *c) { return evbuffer_get_length(c->out); }

void evl__srv_conn_sweep(srv_worker *w, int64_t now) {
    for (srv_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        int64_t limit = c->write_timeout_ns ? c->write_timeout_ns
                                            : (int64_t)w->srv->cfg.idle_timeout_ms * 1000000;
        if (c->fd >= 0 && c->out_since && now - c->out_since > limit) conn_shut(c);
    }
}

/* ------------------------------------------------------------ reading */

/* Start over for the next request: drop what the last one took. */
static void next_request(srv_conn *c) {
    if (c->req_end) {
        memmove(c->in, c->in + c->req_end, c->in_len - c->req_end);
        c->in_len -= c->req_end;
    }
    c->req_end = c->head_len = c->scanned = c->raw = c->dec = 0;
    c->sent_continue = 0;
    memset(&c->ch, 0, sizeof c->ch);
    if (c->req.u) evhttp_uri_free(c->req.u);
    c->req.u = NULL;
    c->req.close = 0;
    evbuffer_drain(c->req.ohdr, evbuffer_get_length(c->req.ohdr));
    const evl_srv_config *cfg = &c->w->srv->cfg;
    if (c->in_len) {
        c->state = CONN_READING;
        c->deadline = evl__srv_mono_ns() + (int64_t)cfg->header_timeout_ms * 1000000;
        arm_ns(c, (int64_t)cfg->header_timeout_ms * 1000000);
    } else {
        c->state = CONN_IDLE;
        arm_ns(c, (int64_t)cfg->idle_timeout_ms * 1000000);
    }
}

/* Answer an unreadable request ourselves and close: @p code is 400, 413,
 * 417, 501 or 505 (an oversized head is a 400, as evlogd has always said). */
static void fail(srv_conn *c, int code) {
    if (code == 431) code = 400;
    evl__srv_problem_raw(c->out, code);
    evl__srv_count(c->w, code);
    c->state = CONN_CLOSING;
    c->lingering = 1;
    evtimer_del(c->timer);
    arm_ns(c, LINGER_NS);
    flush(c);
}

static int method_of(const srv_h1_head *h) {
    static const struct { const char *name; int m; } ms[] = {
        {"GET", EVHTTP_REQ_GET},       {"POST", EVHTTP_REQ_POST},   {"HEAD", EVHTTP_REQ_HEAD},
        {"PUT", EVHTTP_REQ_PUT},       {"DELETE", EVHTTP_REQ_DELETE}, {"PATCH", EVHTTP_REQ_PATCH},
        {"OPTIONS", EVHTTP_REQ_OPTIONS}};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (h->method_len == strlen(ms[i].name) && !memcmp(h->method, ms[i].name, h->method_len))
            return ms[i].m;
    return 0; /* TRACE, CONNECT and the unknown: 501 */
}

/* The head is whole: make its strings C strings, check what the handler
 * cannot (method, target), and say 100 Continue when asked.
 * @return 0, or the status to fail with. */
static int take_head(srv_conn *c) {
    srv_hreq *r = &c->req;
    srv_h1_head *h = &r->head;
    ((char *)h->target)[h->target_len] = '\0';
    for (size_t i = 0; i < h->n_field; i++) ((char *)h->field[i].value)[h->field[i].value_len] = '\0';
    r->method = method_of(h);
    if (!r->method) return 501;
    r->uri = (char *)h->target;
    if (!(r->u = evhttp_uri_parse_with_flags(r->uri, EVHTTP_URI_NONCONFORMANT))) return 400;
    if (!h->chunked && h->content_length > c->w->srv->cfg.max_body) return 413;
    if (h->expect_continue && !c->sent_continue && c->in_len - c->head_len < h->content_length) {
        evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        c->sent_continue = 1;
        flush(c);
    }
    return 0;
}

/* Parse what has arrived; dispatch each whole request in turn. */
static void process(srv_conn *c) {
    if (c->in_process) return; /* a handler answered at once: the loop below goes on */
    c->in_process = 1;
    const evl_srv_config *cfg = &c->w->srv->cfg;
    while (c->state == CONN_READING && c->fd >= 0) {
        srv_hreq *r = &c->req;
        if (!c->head_len) {
            r->head.field = c->fields;
            r->head.cap_field = c->cap_fields;
            long rc;
            while ((rc = evl__srv_h1_head(c->in, c->in_len, cfg->max_headers, &c->scanned, &r->head)) ==
                   SRV_H1_MORE_FIELDS) {
                size_t cap = c->cap_fields ? c->cap_fields * 2 : 32;
                srv_h1_field *f = evl_realloc(c->fields, cap * sizeof *f);
                if (!f) break;
                c->fields = r->head.field = f;
                c->cap_fields = r->head.cap_field = cap;
            }
            if (rc == 0) break;
            if (rc < 0) {
                fail(c, rc == SRV_H1_MORE_FIELDS ? 503 : (int)-rc);
                break;
            }
            c->head_len = (size_t)rc;
            int st = take_head(c);
            if (st) {
                fail(c, st);
                break;
            }
        }
        if (r->head.chunked) {
            long k = evl__srv_h1_dechunk(&c->ch, c->in + c->head_len + c->raw, c->in_len - c->head_len - c->raw,
                                         c->in + c->head_len, &c->dec, cfg->max_body);
            if (k < 0) {
                fail(c, (int)-k);
                break;
            }
            c->raw += (size_t)k;
            if (!evl__srv_h1_chunks_done(&c->ch)) break;
            c->req_end = c->head_len + c->raw;
            r->body_len = c->dec;
        } else {
            if (c->in_len - c->head_len < r->head.content_length) break;
            c->req_end = c->head_len + (size_t)r->head.content_length;
            r->body_len = (size_t)r->head.content_length;
        }
        r->body = (const uint8_t *)c->in + c->head_len;
        c->state = CONN_HANDLING;
        evtimer_del(c->timer);
        evl__srv_handle(r, c->w);
        /* answered at once: the state says what comes next */
    }
    c->in_process = 0;
}

/* The buffer moved from @p from to @p to: so do the slices of the head. */
static void rebase(srv_hreq *r, uintptr_t from, char *to) {
#define MOVE(p) ((p) = (void *)(to + ((uintptr_t)(p) - from)))
    MOVE(r->uri);
    MOVE(r->head.method);
    MOVE(r->head.target);
    for (size_t i = 0; i < r->head.n_field; i++) {
        MOVE(r->head.field[i].name);
        MOVE(r->head.field[i].value);
    }
#undef MOVE
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
    srv_conn *c = arg;
    const evl_srv_config *cfg = &c->w->srv->cfg;
    size_t limit = cfg->max_headers + cfg->max_body + 65536; /* a whole request, chunk framing included */
    if (c->lingering) {
        c->in_len = 0; /* after an error answer: what arrives is dropped */
    } else if (c->in_len == c->in_cap) {
        /* The buffer only grows between requests: a request being answered
         * points into it.  A client sending ahead waits until then. */
        if (c->state != CONN_IDLE && c->state != CONN_READING) {
            set_read(c, 0); /* answered() reads again */
            return;
        }
        if (c->in_cap >= limit) { /* the parser refuses anything this large first */
            fail(c, 413);
            return;
        }
        size_t cap = c->in_cap * 2 > limit ? limit : c->in_cap * 2;
        uintptr_t was = (uintptr_t)c->in;
        char *in = evl_realloc(c->in, cap);
        if (!in) return; /* tried again on the next turn */
        if (c->head_len) rebase(&c->req, was, in); /* a parsed head waiting for its body */
        c->in = in;
        c->in_cap = cap;
    }
    ssize_t n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { /* the client went away, or half-closed after its request */
        if (c->state == CONN_HANDLING) {
            set_read(c, 0); /* the answer may still reach a half-closed client */
            return;
        }
        conn_shut(c);
        return;
    }
    if (c->lingering) return;
    c->in_len += (size_t)n;
    if (c->state == CONN_IDLE) {
        c->state = CONN_READING;
        c->deadline = evl__srv_mono_ns() + (int64_t)cfg->header_timeout_ms * 1000000;
        arm_ns(c, (int64_t)cfg->header_timeout_ms * 1000000);
    }
    if (c->state == CONN_READING) process(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg) {
    srv_conn *c = arg;
    if (c->fd < 0) {
        if (c->state != CONN_HANDLING) conn_release(c);
        return;
    }
    if (c->state == CONN_READING) {
        int64_t left = c->deadline - evl__srv_mono_ns();
        if (left > 0) {
            arm_ns(c, left);
            return;
        }
        atomic_fetch_add_explicit(&c->w->st.header_timeouts, 1, memory_order_relaxed);
    }
    if (c->state == CONN_IDLE || c->state == CONN_READING || c->state == CONN_CLOSING) conn_shut(c);
}

/* ------------------------------------------------------------ writing */

static void flush(srv_conn *c) {
    while (c->fd >= 0 && evbuffer_get_length(c->out)) {
        int n = evbuffer_write(c->out, c->fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            conn_shut(c); /* the peer is gone */
            return;
        }
        c->out_since = evl__srv_mono_ns();
    }
    if (c->fd < 0) return;
    if (evbuffer_get_length(c->out)) {
        if (!c->out_since) c->out_since = evl__srv_mono_ns();
        set_write(c, 1);
        return;
    }
    c->out_since = 0;
    set_write(c, 0);
    if (c->state == CONN_CLOSING && !c->lingering) {
        conn_shut(c);
        return;
    }
    if (c->state == CONN_CLOSING && c->lingering) {
        shutdown(c->fd, SHUT_WR); /* the answer, then FIN; their bytes are read and dropped */
        return;
    }
    if (c->drained) {
        void (*cb)(void *) = c->drained;
        c->drained = NULL;
        cb(c->drained_arg); /* may queue more */
    }
}

static void write_cb(evutil_socket_t fd, short what, void *arg) { flush(arg); }

/* ------------------------------------------------------------ answers */

const char *evl__srv_hdr(const srv_hreq *r, const char *name) {
    size_t n;
    return evl__srv_h1_field(&r->head, name, &n);
}

void evl__srv_add_header(srv_hreq *r, const char *name, const char *value) {
    if (!strcasecmp(name, "Connection") && evl__srv_h1_has_token(value, strlen(value), "close")) {
        if (r->close) return; /* once is enough */
        r->close = 1;
    }
    size_t nl = strlen(name), vl = strlen(value);
    char line[512];
    if (nl + vl + 4 > sizeof line) {
        evbuffer_add_printf(r->ohdr, "%s: %s\r\n", name, value);
        return;
    }
    memcpy(line, name, nl);
    memcpy(line + nl, ": ", 2);
    memcpy(line + nl + 2, value, vl);
    memcpy(line + nl + 2 + vl, "\r\n", 2);
    evbuffer_add(r->ohdr, line, nl + vl + 4); /* printf was 2-3% of a worker's CPU */
}

static const char *date_now(srv_worker *w) {
    time_t now = time(NULL);
    if (now != w->date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof w->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_at = now;
    }
    return w->date;
}

static size_t put_str(char *b, size_t at, const char *s) {
    size_t n = strlen(s);
    memcpy(b + at, s, n);
    return at + n;
}

static size_t put_u64(char *b, size_t at, uint64_t v) {
    char d[24];
    size_t k = sizeof d;
    do d[--k] = (char)('0' + v % 10); while (v /= 10);
    memcpy(b + at, d + k, sizeof d - k);
    return at + sizeof d - k;
}

/* The status line and the headers; Content-Length when @p len is not -1.
 * Formatted by hand into two short runs around the handler's headers. */
static void put_head(srv_hreq *r, int code, long long len, int chunked) {
    srv_conn *c = r->conn;
    int closing = r->close || !r->head.keep_alive || c->w->stopping;
    char b[256];
    size_t n = put_str(b, 0, r->head.minor ? "HTTP/1.1 " : "HTTP/1.0 ");
    n = put_u64(b, n, (uint64_t)code);
    b[n++] = ' ';
    const char *reason = evl__srv_reason(code);
    size_t rl = strlen(reason);
    if (rl > 100) rl = 100;
    memcpy(b + n, reason, rl);
    n += rl;
    n = put_str(b, n, "\r\n");
    evbuffer_add(c->out, b, n);
    evbuffer_add_buffer(c->out, r->ohdr);
    n = put_str(b, 0, "Date: ");
    n = put_str(b, n, date_now(c->w));
    n = put_str(b, n, "\r\n");
    if (len >= 0) {
        n = put_str(b, n, "Content-Length: ");
        n = put_u64(b, n, (uint64_t)len);
        n = put_str(b, n, "\r\n");
    }
    if (chunked) n = put_str(b, n, "Transfer-Encoding: chunked\r\n");
    if (closing && !r->close) n = put_str(b, n, "Connection: close\r\n");
    else if (!closing && r->head.minor == 0) n = put_str(b, n, "Connection: keep-alive\r\n");
    n = put_str(b, n, "\r\n");
    evbuffer_add(c->out, b, n);
    r->close = closing;
}

/* The answer is queued: on to the next request, or to closing. */
static void answered(srv_conn *c) {
    int closing = c->req.close;
    if (c->fd < 0) { /* the client left while it was handled */
        c->state = CONN_CLOSING;
        arm_ns(c, 0); /* released at the top of the next turn */
        return;
    }
    if (closing) {
        c->state = CONN_CLOSING;
        evtimer_del(c->timer);
        set_read(c, 0);
    } else {
        next_request(c);
        set_read(c, 1);
    }
    flush(c);
    if (c->fd >= 0 && c->state == CONN_READING && !c->in_process) process(c); /* pipelined */
}

void evl__srv_send(srv_hreq *r, int code, struct evbuffer *body) {
    srv_conn *c = r->conn;
    size_t len = body ? evbuffer_get_length(body) : 0;
    put_head(r, code, (long long)len, 0);
    if (body && r->method != EVHTTP_REQ_HEAD) evbuffer_add_buffer(c->out, body);
    else if (body) evbuffer_drain(body, len);
    answered(c);
}

void evl__srv_stream_start(srv_hreq *r, int code) {
    srv_conn *c = r->conn;
    c->chunked_out = r->head.minor >= 1;
    if (!c->chunked_out) r->close = 1; /* HTTP/1.0: the end of the answer is the close */
    put_head(r, code, -1, c->chunked_out);
    c->state = CONN_STREAMING;
    flush(c);
}

void evl__srv_stream_chunk(srv_hreq *r, struct evbuffer *buf, void (*drained)(void *arg), void *arg) {
    srv_conn *c = r->conn;
    size_t n = evbuffer_get_length(buf);
    if (n) {
        if (c->chunked_out) evbuffer_add_printf(c->out, "%zx\r\n", n);
        evbuffer_add_buffer(c->out, buf);
        if (c->chunked_out) evbuffer_add(c->out, "\r\n", 2);
    }
    c->drained = drained;
    c->drained_arg = arg;
    flush(c);
}

void evl__srv_stream_end(srv_hreq *r) {
    srv_conn *c = r->conn;
    if (c->chunked_out) evbuffer_add(c->out, "0\r\n\r\n", 5);
    c->drained = NULL;
    c->state = CONN_HANDLING; /* answered() decides, as for any answer */
    r->close = 1;
    answered(c);
}
