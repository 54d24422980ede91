/* Connections: the cap, the request deadline, and libevent's own error pages.
 *
 * libevent 2.1's evhttp has no connection limit, its timeouts restart on
 * every byte (a client sending one header byte a second holds a connection
 * for ever), and it tells its user nothing about a connection until a whole
 * request has arrived.  So we create each connection's bufferevent
 * ourselves (evhttp_set_bevcb) and keep a reference to it, which makes the
 * pointer safe to look at after evhttp has let go of it (its callbacks are
 * then NULL).  On it we watch:
 * - the input buffer: the first byte of a request starts the deadline
 *   (header_timeout_ms); our handler receiving the request stops it; a
 *   missed deadline shuts the socket down, which evhttp sees as EOF;
 * - the output buffer: a response that our handler did not write is one of
 *   libevent's canned HTML error pages (400, 413, 501...): it is rewritten
 *   in place as application/problem+json before it reaches the socket.
 * Connections above max_connections are accepted and their requests
 * answered 503, so a client learns why instead of timing out.
 */
#include <sys/socket.h>

#include "server/srv_int.h"

/* ------------------------------------------------- bufferevent -> conn */

static size_t hash_ptr(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int map_put(struct conn_map *m, struct bufferevent *k, srv_conn *v) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct bufferevent **nk = evl_calloc(cap, sizeof *nk);
        srv_conn **nv = evl_calloc(cap, sizeof *nv);
        if (!nk || !nv) {
            evl_free(nk);
            evl_free(nv);
            return EVL_ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->key[i]) continue;
            size_t j = hash_ptr(m->key[i]) & (cap - 1);
            while (nk[j]) j = (j + 1) & (cap - 1);
            nk[j] = m->key[i];
            nv[j] = m->val[i];
        }
        evl_free(m->key);
        evl_free(m->val);
        m->key = nk;
        m->val = nv;
        m->cap = cap;
    }
    size_t j = hash_ptr(k) & (m->cap - 1);
    while (m->key[j]) j = (j + 1) & (m->cap - 1);
    m->key[j] = k;
    m->val[j] = v;
    m->n++;
    return EVL_OK;
}

static size_t map_find(const struct conn_map *m, const struct bufferevent *k) {
    if (!m->cap) return SIZE_MAX;
    for (size_t j = hash_ptr(k) & (m->cap - 1); m->key[j]; j = (j + 1) & (m->cap - 1))
        if (m->key[j] == k) return j;
    return SIZE_MAX;
}

/* Linear probing: deleting shifts the following run back, no tombstones. */
static void map_del(struct conn_map *m, const struct bufferevent *k) {
    size_t i = map_find(m, k);
    if (i == SIZE_MAX) return;
    size_t mask = m->cap - 1;
    m->key[i] = NULL;
    m->n--;
    for (size_t j = (i + 1) & mask; m->key[j]; j = (j + 1) & mask) {
        size_t home = hash_ptr(m->key[j]) & mask;
        /* move j into the hole when its home is not in (i, j] cyclically */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            m->key[i] = m->key[j];
            m->val[i] = m->val[j];
            m->key[j] = NULL;
            i = j;
        }
    }
}

/* ---------------------------------------------------------- lifecycle */

static void input_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg);
static void output_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg);

static void arm(srv_conn *c, int64_t ms) {
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* Forget @p c and drop our reference: evhttp has let go of it or is about to. */
static void release(srv_conn *c) {
    srv_worker *w = c->w;
    if (c->sub) evl__srv_sse_closed(c->sub);
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    map_del(&w->map, c->bev);
    event_free(c->timer);
    evbuffer_remove_cb(bufferevent_get_input(c->bev), input_cb, c);
    evbuffer_remove_cb(bufferevent_get_output(c->bev), output_cb, c);
    bufferevent_decref(c->bev);
    atomic_fetch_sub(&w->srv->n_conns, 1);
    atomic_fetch_sub_explicit(&w->st.connections, 1, memory_order_relaxed);
    evl_free(c);
}

static int released(srv_conn *c) {
    bufferevent_event_cb ecb = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &ecb, NULL);
    return ecb == NULL; /* bufferevent_free() cleared the callbacks */
}

static void timer_cb(evutil_socket_t fd, short what, void *arg) {
    srv_conn *c = arg;
    if (released(c)) {
        release(c);
        return;
    }
    if (c->state == CONN_READING) {
        int64_t left = c->deadline - evl__srv_mono_ns();
        if (left > 0) {
            arm(c, left / 1000000 + 1);
            return;
        }
        /* Too slow to send one request: evhttp sees EOF and drops it. */
        atomic_fetch_add_explicit(&c->w->st.header_timeouts, 1, memory_order_relaxed);
        int s = bufferevent_getfd(c->bev);
        if (s >= 0) shutdown(s, SHUT_RDWR);
        c->state = CONN_NEW;
        c->closing = 1;
    }
    /* evhttp is closing it without a closecb for us: notice promptly, so
     * that it stops counting against max_connections. */
    if (c->closing) arm(c, 20);
}

/* Connections that close before their first request never reach closecb:
 * once a second, look for the ones evhttp has let go of. */
void evl__srv_conn_sweep(srv_worker *w) {
    for (srv_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (released(c)) release(c);
    }
}

static void closecb(struct evhttp_connection *evcon, void *arg) { release(arg); }

struct bufferevent *evl__srv_conn_bevcb(struct event_base *base, void *arg) {
    srv_worker *w = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    srv_conn *c = bev ? evl_calloc(1, sizeof *c) : NULL;
    if (!c) return bev; /* NULL makes evhttp try its own; either way untracked */
    c->w = w;
    c->bev = bev;
    c->state = CONN_NEW;
    if (!(c->timer = evtimer_new(base, timer_cb, c)) || map_put(&w->map, bev, c)) {
        if (c->timer) event_free(c->timer);
        evl_free(c);
        return bev;
    }
    bufferevent_incref(bev);
    evbuffer_add_cb(bufferevent_get_input(bev), input_cb, c);
    evbuffer_add_cb(bufferevent_get_output(bev), output_cb, c);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add_explicit(&w->st.connections, 1, memory_order_relaxed);
    if (atomic_fetch_add(&w->srv->n_conns, 1) >= w->srv->cfg.max_connections) {
        c->over_cap = 1;
        atomic_fetch_add_explicit(&w->st.rejected_connections, 1, memory_order_relaxed);
    }
    return bev;
}

srv_conn *evl__srv_conn_of(srv_worker *w, struct evhttp_request *req) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon) return NULL;
    size_t i = map_find(&w->map, evhttp_connection_get_bufferevent(evcon));
    return i == SIZE_MAX ? NULL : w->map.val[i];
}

static void start_reading(srv_conn *c) {
    c->state = CONN_READING;
    c->head_nl = c->head_done = c->head_nul = 0;
    c->deadline = evl__srv_mono_ns() + (int64_t)c->w->srv->cfg.header_timeout_ms * 1000000;
    arm(c, c->w->srv->cfg.header_timeout_ms);
}

/* The response is on the wire: the connection waits for its next request. */
static void on_complete(struct evhttp_request *req, void *arg) {
    srv_conn *c = arg;
    if (c->sub) evl__srv_sse_done(c->sub);
    c->state = CONN_IDLE;
    if (evbuffer_get_length(bufferevent_get_input(c->bev))) start_reading(c); /* pipelined */
}

void evl__srv_conn_handling(srv_conn *c, struct evhttp_request *req) {
    if (!c->evcon) {
        c->evcon = evhttp_request_get_connection(req);
        evhttp_connection_set_closecb(c->evcon, closecb, c);
    }
    c->state = CONN_HANDLING;
    evtimer_del(c->timer);
    evhttp_request_set_on_complete_cb(req, on_complete, c);
}

size_t evl__srv_conn_queued(srv_conn *c) {
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void evl__srv_conn_free_all(srv_worker *w) {
    while (w->conns) release(w->conns);
}

/* ------------------------------------------------------------ watching */

/* libevent hands header values over as C strings: "Expected-Revision:
 * 1\0..." would reach us as "1".  So the head's new bytes are looked at as
 * they arrive, up to its empty line, and a NUL in them makes the request a
 * 400 (router.c) instead of something it did not say. */
static void scan_head(srv_conn *c, struct evbuffer *b, size_t n_added) {
    size_t len = evbuffer_get_length(b);
    if (n_added > len) n_added = len;
    struct evbuffer_ptr at;
    if (evbuffer_ptr_set(b, &at, len - n_added, EVBUFFER_PTR_SET)) return;
    struct evbuffer_iovec v[16];
    int n = evbuffer_peek(b, (ev_ssize_t)n_added, &at, v, 16);
    for (int i = 0; i < n && i < 16 && !c->head_done; i++) {
        const unsigned char *p = v[i].iov_base;
        for (size_t k = 0; k < v[i].iov_len && !c->head_done; k++) {
            if (p[k] == '\n') {
                if (c->head_nl) c->head_done = 1;
                c->head_nl = 1;
            } else if (p[k] != '\r') {
                c->head_nl = 0;
                if (!p[k]) c->head_nul = 1;
            }
        }
    }
}

static void input_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg) {
    srv_conn *c = arg;
    if (!info->n_added) return;
    if (c->state == CONN_NEW || c->state == CONN_IDLE) start_reading(c);
    if (c->state == CONN_READING) {
        if (!c->head_done) scan_head(c, b, info->n_added);
    } else if (c->state == CONN_HANDLING &&
               evbuffer_get_length(b) > c->w->srv->cfg.max_headers + c->w->srv->cfg.max_body) {
        /* evhttp keeps reading during a response only to see a close; a
         * client that sends more than a whole request meanwhile is dropped. */
        int s = bufferevent_getfd(c->bev);
        if (s >= 0) shutdown(s, SHUT_RDWR);
    }
}

static long header_value(const char *hdr, size_t n, const char *name) {
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 1 < n; i++)
        if ((i == 0 || hdr[i - 1] == '\n') && !strncasecmp(hdr + i, name, nl) && hdr[i + nl] == ':')
            return strtol(hdr + i + nl + 1, NULL, 10);
    return -1;
}

static void output_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg) {
    srv_conn *c = arg;
    if (c->rewriting || !info->n_added || c->state == CONN_HANDLING) return;
    /* Not ours: a canned page of libevent's.  Wait until it is whole (it is
     * written synchronously, before anything reaches the socket). */
    char hdr[2048];
    size_t len = evbuffer_get_length(b);
    struct evbuffer_ptr end = evbuffer_search(b, "\r\n\r\n", 4, NULL);
    if (end.pos < 0 || (size_t)end.pos + 4 > sizeof hdr - 1) return;
    size_t hl = (size_t)end.pos + 4;
    evbuffer_copyout(b, hdr, hl);
    hdr[hl] = '\0';
    int code = 0;
    if (strncmp(hdr, "HTTP/1.", 7) || sscanf(hdr + 8, " %d", &code) != 1 || code < 400) return;
    long cl = header_value(hdr, hl, "Content-Length");
    if (cl < 0 || len != hl + (size_t)cl) return;
    c->rewriting = 1;
    evbuffer_drain(b, len);
    evl__srv_problem_raw(b, code);
    evl__srv_count(c->w, code);
    c->rewriting = 0;
    c->closing = 1; /* libevent closes after its own error pages */
    arm(c, 20);
}
