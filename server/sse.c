/* GET /subscribe: Server-Sent Events, catch-up then live.
 *
 * DESIGN.  A subscriber is only a position: `pos` says that every event up
 * to it has been sent or filtered out.  Catch-up and live are the same
 * loop, "send what lies between pos and the head", so there is no seam to
 * get wrong: no gap, no duplicate, whatever interleaving of commits and
 * reads happens.  Two sources serve that loop:
 * - the worker's ring: the most recent events, each read once from the log
 *   and formatted once as an SSE frame, shared by every live subscriber of
 *   the worker (a commit costs one read and one JSON encoding per worker,
 *   not per subscriber);
 * - the log itself, through a short-lived filtered iterator, for a
 *   subscriber behind the ring (catch-up).  Catch-up batches go through a
 *   queue with a budget per turn of the loop, so one subscriber far behind
 *   never starves the others.
 * The log's commit notification activates each worker's commit event
 * (wakeups merge; the worker re-reads the head).  No iterator stays open
 * between turns, and an idle subscriber holds no buffer: a few hundred
 * bytes plus its connection.
 *
 * Slow subscribers.  Nothing is queued for a subscriber beyond sse_buffer
 * bytes: above it, it is simply not fed, and when its connection drains it
 * continues from its position, out of the ring or the log.  Its lag costs
 * the server nothing.  A subscriber whose queued output does not shrink at
 * all for sse_stall_ms is disconnected with a final comment saying so; it
 * can resume with Last-Event-ID.
 */
#include <inttypes.h>
#include <stdio.h>

#include "server/srv_int.h"

#define RING_CAP 4096               /* frames per worker */
#define RING_BYTES (8u << 20)       /* and at most this much text */
#define CATCHUP_EVENTS 512          /* events read from the log per turn and subscriber */
#define PUMP_BUDGET 32              /* catch-up turns per activation of the pump */

struct srv_sub {
    srv_worker *w;
    srv_conn *conn;
    srv_hreq *req;
    char *type, *category, *stream; /* filters; NULL: any */
    char *actor, *corr;             /* meta.actor, meta.correlation_id: NULL any */
    size_t category_len;
    uint64_t pos;
    int queued;                     /* in the pump queue */
    size_t last_queued;
    int64_t stall_since;
    srv_sub *prev, *next, *qnext;
};

/* ---------------------------------------------------------------- ring */

void evl__srv_ring_free(srv_ring *r) {
    for (size_t i = 0; i < r->n; i++) evl_free(r->f[(r->start + i) % r->cap].text);
    evl_free(r->f);
    memset(r, 0, sizeof *r);
}

static void ring_pop(srv_ring *r) {
    srv_frame *f = &r->f[r->start];
    r->bytes -= f->len;
    evl_free(f->text);
    r->start = (r->start + 1) % r->cap;
    r->n--;
    r->first++;
}

/* Format @p ev as a frame into @p out. */
static int frame(struct evbuffer *out, const evl_event *ev) {
    evbuffer_add_printf(out, "id: %" PRIu64 "\nevent: %.*s\ndata: ", ev->position,
                        (int)ev->type_len, ev->type);
    int rc = evl__srv_event_json(ev, out);
    evbuffer_add(out, "\n\n", 2);
    return rc;
}

/* meta[key] when it is a string, else NULL (the log's audit filters match
 * strings only, and a feed must select what /events selects). */
static const char *meta_str(const evl_event *ev, const char *key, uint32_t *len) {
    evl_mp m;
    evl_mp_val v;
    if (evl_mp_map_find(ev->meta, ev->meta_len, key, strlen(key), &m) || evl_mp_read(&m, &v) ||
        v.kind != EVL_MP_STR)
        return NULL;
    *len = v.v.s.len;
    return v.v.s.ptr;
}

static int ring_push(srv_ring *r, const evl_event *ev, struct evbuffer *tmp) {
    if (!r->f) {
        if (!(r->f = evl_calloc(RING_CAP, sizeof *r->f))) return EVL_ENOMEM;
        r->cap = RING_CAP;
    }
    evbuffer_drain(tmp, evbuffer_get_length(tmp));
    int rc = frame(tmp, ev);
    if (rc) return rc;
    size_t len = evbuffer_get_length(tmp);
    uint32_t actor_len = 0, corr_len = 0;
    const char *actor = meta_str(ev, "actor", &actor_len), *corr = meta_str(ev, "correlation_id", &corr_len);
    /* one block: the frame, the type and the stream NUL-terminated, then
     * the actor and the correlation id */
    char *text = evl_malloc(len + ev->type_len + ev->stream_len + 2 + actor_len + corr_len);
    if (!text) return EVL_ENOMEM;
    evbuffer_copyout(tmp, text, len);
    char *type = text + len, *stream = type + ev->type_len + 1, *extra = stream + ev->stream_len + 1;
    memcpy(type, ev->type, ev->type_len);
    type[ev->type_len] = '\0';
    memcpy(stream, ev->stream, ev->stream_len);
    stream[ev->stream_len] = '\0';
    srv_frame f = {.pos = ev->position, .type = type, .stream = stream, .text = text, .len = len,
                   .stream_cat = evl_stream_category(ev->stream, ev->stream_len)};
    if (actor) {
        f.actor = memcpy(extra, actor, actor_len);
        f.actor_len = actor_len;
    }
    if (corr) {
        f.corr = memcpy(extra + actor_len, corr, corr_len);
        f.corr_len = corr_len;
    }
    while (r->n && (r->n == r->cap || r->bytes + len > RING_BYTES)) ring_pop(r);
    if (!r->n) r->first = ev->position;
    r->f[(r->start + r->n) % r->cap] = f;
    r->n++;
    r->bytes += len;
    return EVL_OK;
}

static uint64_t ring_last(const srv_ring *r) { return r->n ? r->first + r->n - 1 : 0; }

/* Bring the ring up to @p head, starting no earlier than any subscriber needs. */
static void ring_fill(srv_worker *w, uint64_t head) {
    srv_ring *r = &w->ring;
    if (!w->subs || ring_last(r) >= head) return;
    uint64_t from = ring_last(r) + 1;
    if (!r->n || head - ring_last(r) > RING_CAP) {
        uint64_t lowest = UINT64_MAX;
        for (srv_sub *s = w->subs; s; s = s->next)
            if (s->pos < lowest) lowest = s->pos;
        while (r->n) ring_pop(r);
        from = head >= RING_CAP ? head - RING_CAP + 1 : 1;
        if (lowest != UINT64_MAX && lowest + 1 > from) from = lowest + 1;
        if (from > head) return;
    }
    evl_query q = {.from_position = from, .until_position = head};
    evl_iter *it;
    struct evbuffer *tmp = evbuffer_new();
    if (!tmp || evl_iter_open(w->srv->log, &q, &it)) {
        if (tmp) evbuffer_free(tmp);
        return; /* subscribers fall back to catch-up reads */
    }
    evl_event ev;
    uint64_t expect = from;
    while (evl_iter_next(it, &ev) == EVL_OK && ev.position == expect) {
        if (ring_push(r, &ev, tmp)) break;
        expect++;
    }
    evl_iter_close(it);
    evbuffer_free(tmp);
}

/* -------------------------------------------------------------- feeding */

static int same(const char *want, const char *s, size_t len) {
    return s && strlen(want) == len && memcmp(want, s, len) == 0;
}

static int match(const srv_sub *s, const srv_frame *f) {
    if (s->type && strcmp(s->type, f->type)) return 0;
    if (s->stream && strcmp(s->stream, f->stream)) return 0;
    if (s->category && (s->category_len != f->stream_cat || memcmp(s->category, f->stream, f->stream_cat)))
        return 0;
    if (s->actor && !same(s->actor, f->actor, f->actor_len)) return 0;
    if (s->corr && !same(s->corr, f->corr, f->corr_len)) return 0;
    return 1;
}

static void enqueue(srv_sub *s) {
    srv_worker *w = s->w;
    if (s->queued) return;
    s->queued = 1;
    s->qnext = NULL;
    if (w->pump_tail) w->pump_tail->qnext = s;
    else w->pump_head = s;
    w->pump_tail = s;
    if (!w->pumping) event_active(w->pump_ev, EV_READ, 0); /* the pump re-arms itself */
}

static void unqueue(srv_sub *s) {
    srv_worker *w = s->w;
    if (!s->queued) return;
    srv_sub **p = &w->pump_head, *prev = NULL;
    while (*p && *p != s) {
        prev = *p;
        p = &(*p)->qnext;
    }
    if (*p) *p = s->qnext;
    if (w->pump_tail == s) w->pump_tail = prev;
    s->queued = 0;
}

static void on_drained(void *arg);
static void end_sub(srv_sub *s, const char *why);

static void send_buf(srv_sub *s, struct evbuffer *buf, size_t frames) {
    if (!evbuffer_get_length(buf)) return;
    atomic_fetch_add_explicit(&s->w->st.events_sent, frames, memory_order_relaxed);
    evl__srv_stream_chunk(s->req, buf, on_drained, s);
}

/* Read the next batch for @p s from the log (it is behind the ring).
 * @return EVL_OK, or the read error (the feed cannot go on). */
static int catch_up(srv_sub *s, uint64_t head) {
    srv_worker *w = s->w;
    size_t cap = w->srv->cfg.sse_buffer, queued = evl__srv_conn_queued(s->conn), frames = 0;
    if (queued >= cap) return EVL_OK; /* its drain wakes it */
    evl_query q = {.stream = s->stream, .type = s->type, .category = s->category, .actor = s->actor,
                   .correlation_id = s->corr, .from_position = s->pos + 1, .until_position = head};
    evl_iter *it;
    struct evbuffer *buf = evbuffer_new();
    if (!buf || evl_iter_open(w->srv->log, &q, &it)) {
        if (buf) evbuffer_free(buf);
        return EVL_OK; /* tried again at the next commit, tick or drain */
    }
    atomic_fetch_add_explicit(&w->st.catchup_reads, 1, memory_order_relaxed);
    evl_event ev;
    int rc;
    size_t n = 0;
    while ((rc = evl_iter_next(it, &ev)) == EVL_OK) {
        if (frame(buf, &ev)) break;
        frames++;
        s->pos = ev.position;
        if (++n == CATCHUP_EVENTS || queued + evbuffer_get_length(buf) >= cap) break;
    }
    if (rc == EVL_END) s->pos = head; /* nothing else matches up to the head */
    evl_iter_close(it);
    send_buf(s, buf, frames);
    evbuffer_free(buf);
    return rc == EVL_END || rc == EVL_OK ? EVL_OK : rc;
}

/* Send @p s what it lacks, out of the ring when it can; behind the ring it
 * queues for catch-up. */
static void feed(srv_sub *s, uint64_t head) {
    srv_worker *w = s->w;
    srv_ring *r = &w->ring;
    size_t cap = w->srv->cfg.sse_buffer, queued = evl__srv_conn_queued(s->conn), frames = 0;
    if (s->pos >= head || queued >= cap || s->queued) return;
    if (ring_last(r) < head) ring_fill(w, head);
    if (!r->n || s->pos + 1 < r->first || s->pos >= ring_last(r)) {
        enqueue(s);
        return;
    }
    struct evbuffer *buf = evbuffer_new();
    if (!buf) return;
    for (size_t i = (size_t)(s->pos + 1 - r->first); i < r->n; i++) {
        const srv_frame *f = &r->f[(r->start + i) % r->cap];
        if (match(s, f)) {
            evbuffer_add(buf, f->text, f->len);
            frames++;
        }
        s->pos = f->pos;
        if (queued + evbuffer_get_length(buf) >= cap) break;
    }
    send_buf(s, buf, frames);
    evbuffer_free(buf);
}

static void on_drained(void *arg) {
    srv_sub *s = arg;
    feed(s, evl_log_head(s->w->srv->log));
}

void evl__srv_sse_commit(evutil_socket_t fd, short what, void *arg) {
    srv_worker *w = arg;
    if (!w->subs) return;
    uint64_t head = evl_log_head(w->srv->log);
    ring_fill(w, head);
    for (srv_sub *s = w->subs; s; s = s->next) feed(s, head);
}

void evl__srv_sse_pump(evutil_socket_t fd, short what, void *arg) {
    srv_worker *w = arg;
    uint64_t head = evl_log_head(w->srv->log);
    int moved = 0;
    w->pumping = 1;
    for (int turn = 0; turn < PUMP_BUDGET && w->pump_head; turn++) {
        srv_sub *s = w->pump_head;
        unqueue(s);
        uint64_t was = s->pos;
        int rc = catch_up(s, head);
        moved |= s->pos != was;
        if (rc) {
            char why[160];
            snprintf(why, sizeof why, "reading the log failed: %s", evl_strerror(rc));
            end_sub(s, why);
            continue;
        }
        feed(s, head); /* caught up with the ring, or queued again */
    }
    w->pumping = 0;
    /* More to do: after the loop has polled its sockets (an event activated
     * from its own callback would run again before any of them), and not
     * at once when nothing moved (a read that failed for want of memory). */
    struct timeval soon = {0, moved ? 0 : 10000};
    if (w->pump_head) event_add(w->pump_ev, &soon);
}

/* ------------------------------------------------------------ lifecycle */

static void sub_free_filters(srv_sub *s) {
    evl_free(s->type);
    evl_free(s->category);
    evl_free(s->stream);
    evl_free(s->actor);
    evl_free(s->corr);
}

static void unlink_sub(srv_sub *s) {
    srv_worker *w = s->w;
    unqueue(s);
    if (s->prev) s->prev->next = s->next;
    else w->subs = s->next;
    if (s->next) s->next->prev = s->prev;
    if (s->conn) s->conn->sub = NULL;
    atomic_fetch_sub_explicit(&w->st.subscribers, 1, memory_order_relaxed);
    sub_free_filters(s);
    evl_free(s);
}

/* End the response with a comment saying why, and the connection with it
 * (the feed was sent with Connection: close). */
static void end_sub(srv_sub *s, const char *why) {
    struct evbuffer *b = evbuffer_new();
    if (b) {
        evbuffer_add_printf(b, ": evlog: closing: %s\n\n", why);
        evl__srv_stream_chunk(s->req, b, NULL, NULL);
        evbuffer_free(b);
    }
    srv_hreq *req = s->req;
    unlink_sub(s);
    evl__srv_stream_end(req);
}

void evl__srv_sse_end_all(srv_worker *w, const char *why) {
    while (w->subs) end_sub(w->subs, why);
}

void evl__srv_sse_closed(srv_sub *s) { unlink_sub(s); }

void evl__srv_sse_tick(srv_worker *w, int64_t now) {
    const evl_srv_config *cfg = &w->srv->cfg;
    int beat = now - w->last_heartbeat >= (int64_t)cfg->sse_heartbeat_ms * 1000000;
    if (beat) w->last_heartbeat = now;
    uint64_t total = 0, head = evl_log_head(w->srv->log);
    for (srv_sub *s = w->subs, *next; s; s = next) {
        next = s->next;
        size_t q = evl__srv_conn_queued(s->conn);
        total += q;
        if (q < cfg->sse_buffer) {
            s->stall_since = 0;
            if (beat) {
                struct evbuffer *b = evbuffer_new();
                if (b) {
                    evbuffer_add(b, ": heartbeat\n\n", 13);
                    evl__srv_stream_chunk(s->req, b, on_drained, s);
                    evbuffer_free(b);
                }
            }
            feed(s, head); /* in case a wakeup found it full */
        } else if (!s->stall_since || q < s->last_queued) {
            s->stall_since = now; /* full, but it reads: not stalled */
        } else if (now - s->stall_since >= (int64_t)cfg->sse_stall_ms * 1000000) {
            atomic_fetch_add_explicit(&w->st.sse_slow_disconnects, 1, memory_order_relaxed);
            char why[160];
            snprintf(why, sizeof why, "subscriber too slow (nothing read for %u ms); reconnect "
                                      "with Last-Event-ID to resume", cfg->sse_stall_ms);
            end_sub(s, why);
            continue;
        }
        s->last_queued = q;
    }
    atomic_store_explicit(&w->st.sse_queued, total, memory_order_relaxed);
}

/* ------------------------------------------------------------- handler */

/* A copy of parameter @p name that the caller frees with evl_free(), or NULL. */
static char *dup_param(srv_req *q, const char *name) {
    const char *v = evl__srv_param(q, name);
    if (!v) return NULL;
    size_t n = strlen(v);
    char *d = evl_malloc(n + 1);
    if (d) memcpy(d, v, n + 1);
    return d;
}

void evl__srv_subscribe(srv_req *q) {
    srv_worker *w = q->rsp.w;
    const evl_srv_config *cfg = &w->srv->cfg;
    uint64_t head = evl_log_head(w->srv->log), pos = 0;
    const char *from = evl__srv_param(q, "from");
    const char *last = evl__srv_hdr(q->rsp.req, "Last-Event-ID");
    if (last) { /* a reconnecting EventSource: resume after the last event it got */
        if (evl__srv_u64(last, &pos)) {
            evl__srv_problem(&q->rsp, 400, "bad-request", NULL,
                             "Last-Event-ID must be a position, not '%s'", last);
            return;
        }
    } else if (from && !strcmp(from, "now")) {
        pos = head;
    } else if (from) {
        if (evl__srv_u64(from, &pos)) {
            evl__srv_problem(&q->rsp, 400, "bad-request", NULL,
                             "from must be a position or now, not '%s'", from);
            return;
        }
        pos = pos ? pos - 1 : 0;
    }
    if (!q->conn) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    if (q->method == EVHTTP_REQ_HEAD) {
        evl__srv_reply(&q->rsp, 200, "text/event-stream", NULL);
        return;
    }
    srv_sub *s = evl_calloc(1, sizeof *s);
    if (!s) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    s->w = w;
    s->conn = q->conn;
    s->req = q->rsp.req;
    s->pos = pos;
    s->type = dup_param(q, "type");
    s->stream = dup_param(q, "stream");
    s->category = dup_param(q, "category");
    s->actor = dup_param(q, "actor");
    s->corr = dup_param(q, "correlation_id");
    s->category_len = s->category ? strlen(s->category) : 0;
    if ((!s->type && evl__srv_param(q, "type")) || (!s->stream && evl__srv_param(q, "stream")) ||
        (!s->category && evl__srv_param(q, "category")) || (!s->actor && evl__srv_param(q, "actor")) ||
        (!s->corr && evl__srv_param(q, "correlation_id"))) {
        /* a filter lost to memory would turn into "every event" */
        sub_free_filters(s);
        evl_free(s);
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    evl__srv_add_header(s->req, "Content-Type", "text/event-stream");
    evl__srv_add_header(s->req, "Cache-Control", "no-cache");
    evl__srv_add_header(s->req, "X-Accel-Buffering", "no");
    evl__srv_add_header(s->req, "Connection", "close");
    evl__srv_count(w, 200);
    evl__srv_stream_start(s->req, 200);
    /* A feed is read-idle by nature: no read timeout.  The write timeout
     * catches a peer that vanished without a FIN, after the stall policy. */
    q->conn->write_timeout_ns = ((int64_t)cfg->sse_stall_ms + 10000) * 1000000;
    q->conn->sub = s;
    s->next = w->subs;
    if (w->subs) w->subs->prev = s;
    w->subs = s;
    atomic_fetch_add_explicit(&w->st.subscribers, 1, memory_order_relaxed);
    struct evbuffer *b = evbuffer_new();
    if (b) {
        evbuffer_add_printf(b, ": evlog feed after position %" PRIu64 " (head %" PRIu64 ")\nretry: %u\n\n",
                            pos, head, cfg->sse_retry_ms);
        evl__srv_stream_chunk(s->req, b, on_drained, s);
        evbuffer_free(b);
    }
    feed(s, head);
}
