/* POST /streams/{stream} and POST /append.
 *
 * The body becomes a batch (batch.c), which evl_log_append_async() validates
 * and copies before returning; the event loop then goes on with other
 * requests.  The log's writer calls us back after the group commit (and its
 * fsync, with --sync full): the callback copies the result into the context
 * and posts it to the worker's mailbox, and the worker answers.  So an
 * answer is only ever sent for what is durable, and no loop thread waits.
 *
 * With a token file, meta.actor is the bearer token's name unless the client
 * gives one, and only an admin token may give another token's name (403
 * otherwise): see evl__srv_batch_actor().
 *
 * 201 with the new positions; 200 with the original ones when every event
 * id was already in the log (an idempotent repeat); 409 naming the stream,
 * its expected and its current revision.
 */
#include <inttypes.h>
#include <stdio.h>

#include "server/batch.h"

typedef struct append_ctx {
    srv_msg msg;              /* first: the mailbox hands it back to us */
    srv_rsp rsp;
    size_t n_streams;
    char **names;             /* per stream, owned */
    size_t *counts;
    uint64_t *expected;
    int err, idempotent;
    size_t stream_index, event_index;
    uint64_t current_revision;
    size_t n_acks, cap_acks;
    evl_ack *acks;            /* sized before submitting: the callback never allocates */
} append_ctx;

static void ctx_free(append_ctx *c) {
    for (size_t i = 0; i < c->n_streams; i++) evl_free(c->names[i]);
    evl_free(c->names);
    evl_free(c->counts);
    evl_free(c->expected);
    evl_free(c->acks);
    evl_free(c);
}

static json_t *rev_json(uint64_t r) {
    if (r == EVL_REV_ANY) return json_string("any");
    if (r == EVL_REV_NO_STREAM) return json_string("no_stream");
    if (r == EVL_REV_EXISTS) return json_string("exists");
    return json_integer((json_int_t)r);
}

/* The 201/200 body, written straight into one buffer: a profile of 100-event
 * msgpack batches had evlogd spend ~46 % of its instructions building this
 * answer as a jansson tree, dumping it chunk by chunk and freeing it.  The
 * output is what that tree gave: {"events": [{"id", "stream", "position",
 * "revision"}, ...], "idempotent"?: true}, JSON or msgpack as asked. */
typedef struct obuf {
    char *p;
    size_t len, cap;
    int oom;
} obuf;

static void ob_put(obuf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2;
        char *p = evl_realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static int ob_write(void *data, const char *buf, size_t len) {
    ob_put(data, buf, len);
    return 0;
}

/* A JSON string: names are UTF-8 without control characters (the log
 * refused anything else), so only '"' and '\' need escaping; controls are
 * escaped anyway rather than trusted. */
static void ob_json_str(obuf *b, const char *s, size_t n) {
    ob_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch != '"' && ch != '\\' && ch >= 0x20) continue;
        ob_put(b, s + run, i - run);
        char esc[8];
        int k = ch == '"' || ch == '\\' ? snprintf(esc, sizeof esc, "\\%c", ch)
                                         : snprintf(esc, sizeof esc, "\\u%04x", ch);
        ob_put(b, esc, (size_t)k);
        run = i + 1;
    }
    ob_put(b, s + run, n - run);
    ob_put(b, "\"", 1);
}

static void ob_u64(obuf *b, uint64_t v) {
    char d[24];
    size_t k = sizeof d;
    do { d[--k] = (char)('0' + v % 10); v /= 10; } while (v);
    ob_put(b, d + k, sizeof d - k);
}

static void body_json(obuf *b, const append_ctx *c) {
    ob_put(b, "{\"events\":[", 11);
    size_t k = 0;
    for (size_t s = 0; s < c->n_streams; s++) {
        size_t nl = strlen(c->names[s]);
        for (size_t i = 0; i < c->counts[s] && k < c->n_acks; i++, k++) {
            char id[37];
            evl_uuid_format(c->acks[k].id, id);
            ob_put(b, k ? ",{\"id\":\"" : "{\"id\":\"", k ? 8 : 7);
            ob_put(b, id, 36);
            ob_put(b, "\",\"stream\":", 11);
            ob_json_str(b, c->names[s], nl);
            ob_put(b, ",\"position\":", 12);
            ob_u64(b, c->acks[k].position);
            ob_put(b, ",\"revision\":", 12);
            ob_u64(b, c->acks[k].revision);
            ob_put(b, "}", 1);
        }
    }
    ob_put(b, "]", 1);
    if (c->idempotent) ob_put(b, ",\"idempotent\":true", 18);
    ob_put(b, "}", 1);
}

static void body_mp(obuf *b, const append_ctx *c) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, ob_write);
    msgpack_pack_map(&pk, c->idempotent ? 2 : 1);
    msgpack_pack_str_with_body(&pk, "events", 6);
    msgpack_pack_array(&pk, (uint32_t)c->n_acks);
    size_t k = 0;
    for (size_t s = 0; s < c->n_streams; s++) {
        size_t nl = strlen(c->names[s]);
        for (size_t i = 0; i < c->counts[s] && k < c->n_acks; i++, k++) {
            char id[37];
            evl_uuid_format(c->acks[k].id, id);
            msgpack_pack_map(&pk, 4);
            msgpack_pack_str_with_body(&pk, "id", 2);
            msgpack_pack_str_with_body(&pk, id, 36);
            msgpack_pack_str_with_body(&pk, "stream", 6);
            msgpack_pack_str_with_body(&pk, c->names[s], nl);
            msgpack_pack_str_with_body(&pk, "position", 8);
            msgpack_pack_int64(&pk, (int64_t)c->acks[k].position);
            msgpack_pack_str_with_body(&pk, "revision", 8);
            msgpack_pack_int64(&pk, (int64_t)c->acks[k].revision);
        }
    }
    if (c->idempotent) {
        msgpack_pack_str_with_body(&pk, "idempotent", 10);
        msgpack_pack_true(&pk);
    }
}

static void answer_ok(append_ctx *c) {
    obuf b = {0};
    if (c->rsp.want_mp) body_mp(&b, c);
    else body_json(&b, c);
    struct evbuffer *eb = b.oom ? NULL : evbuffer_new();
    if (!eb || evbuffer_add(eb, b.p, b.len) != 0) {
        if (eb) evbuffer_free(eb);
        evl_free(b.p);
        evl__srv_problem(&c->rsp, 503, "unavailable", NULL, "out of memory answering a committed append");
        return;
    }
    evl_free(b.p);
    if (c->n_acks) {
        char loc[48];
        snprintf(loc, sizeof loc, "/events/%" PRIu64, c->acks[0].position);
        evl__srv_add_header(c->rsp.req, "Location", loc);
    }
    evl__srv_reply(&c->rsp, c->idempotent ? 200 : 201,
                   c->rsp.want_mp ? "application/msgpack" : "application/json", eb);
    evbuffer_free(eb);
}

static void answer_err(const srv_rsp *r, int err, const char *stream, uint64_t expected,
                       uint64_t current, const char *why) {
    const char *slug;
    int code = evl__srv_err_status(err, &slug);
    if (err == EVL_ECONFLICT) {
        char cur[40], exp[40];
        if (current == EVL_REV_NONE) snprintf(cur, sizeof cur, "has no events");
        else snprintf(cur, sizeof cur, "is at revision %" PRIu64, current);
        if (expected == EVL_REV_NO_STREAM) snprintf(exp, sizeof exp, "no events");
        else if (expected == EVL_REV_EXISTS) snprintf(exp, sizeof exp, "some events");
        else snprintf(exp, sizeof exp, "revision %" PRIu64, expected);
        json_t *x = json_pack("{s:s,s:o,s:o}", "stream", stream, "expected_revision",
                              rev_json(expected), "current_revision", rev_json(current));
        evl__srv_problem(r, code, slug, x, "stream %s %s; the append expected %s", stream, cur, exp);
        return;
    }
    json_t *x = stream ? json_pack("{s:s}", "stream", stream) : NULL;
    if (err == EVL_EIO || err >= EVL_ESYS_BASE) {
        /* the commit itself failed (a write or fsync of the log): not the
         * client's fault and not an internal bug; the log now refuses
         * appends until a restart (see /readyz), so say that, as a 503 */
        evl__srv_problem(r, 503, "unavailable", x, "the log could not commit this append (%s): it is not "
                         "acknowledged, and the log refuses appends until evlogd restarts", evl_strerror(err));
        return;
    }
    if (err == EVL_EFULL)
        evl__srv_problem(r, code, slug, x, "%s; nothing of this append was written",
                         evl_strerror(err));
    else
        evl__srv_problem(r, code, slug, x, "%s", why ? why : evl_strerror(err));
}

/* A failure of the log itself (not of the request) is a fault: one line in
 * the server's log the first time, not one per request. */
static void note_fault(srv_worker *w, int err) {
    if (err == EVL_EREADONLY || err == EVL_EIO || err == EVL_ECORRUPT || err >= EVL_ESYS_BASE)
        if (atomic_exchange(&w->srv->last_fault, err) != err)
            evl__srv_say(w->srv, "fault: the log refuses appends: %s", evl_strerror(err));
}

/* On the worker, from the mailbox. */
static void appended_run(srv_worker *w, srv_msg *m) {
    append_ctx *c = (append_ctx *)m;
    w->inflight--;
    note_fault(w, c->err);
    if (c->err == EVL_OK) {
        answer_ok(c);
    } else {
        size_t s = c->stream_index < c->n_streams ? c->stream_index : 0;
        char why[200], *w = NULL;
        if (c->err == EVL_EIDREUSE && c->event_index < c->n_acks) {
            /* name the id: the client reused it for an event that differs */
            char id[37];
            evl_uuid_format(c->acks[c->event_index].id, id);
            snprintf(why, sizeof why, "event id %s already belongs to a different event (its stream, "
                     "type, data or meta differ); a retry must send the same event", id);
            w = why;
        }
        answer_err(&c->rsp, c->err, c->n_streams ? c->names[s] : NULL,
                   c->n_streams ? c->expected[s] : EVL_REV_ANY, c->current_revision, w);
    }
    uint64_t us = (uint64_t)(evl__srv_mono_ns() - c->rsp.t0) / 1000;
    evl__srv_hist_add(&w->st.append_us, evl__srv_lat_bounds, SRV_LAT_BUCKETS, us);
    ctx_free(c);
}

/* On the log's writer thread: copy and hand over, nothing more. */
static void appended(void *arg, const evl_append_result *res) {
    append_ctx *c = arg;
    c->err = res->err;
    c->idempotent = res->idempotent;
    c->stream_index = res->stream_index;
    c->event_index = res->event_index;
    c->current_revision = res->current_revision;
    c->n_acks = res->acks ? (res->n_acks < c->cap_acks ? res->n_acks : c->cap_acks) : 0;
    if (c->n_acks) memcpy(c->acks, res->acks, c->n_acks * sizeof *c->acks);
    evl__srv_mail(c->rsp.w, &c->msg);
}

/* The context of one append, copied out of the batch (which the request
 * frees).  The caller owns it until evl_log_append_async() accepts it; from
 * then on the writer's callback hands it to appended_run(), which frees it. */
static append_ctx *ctx_new(const srv_rsp *r, srv_batch *b) {
    append_ctx *c = evl_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->msg.run = appended_run;
    c->rsp = *r;
    c->names = evl_calloc(b->n_s, sizeof *c->names);
    c->counts = evl_calloc(b->n_s, sizeof *c->counts);
    c->expected = evl_calloc(b->n_s, sizeof *c->expected);
    c->cap_acks = b->n_ev;
    c->acks = evl_calloc(b->n_ev, sizeof *c->acks);
    if (!c->names || !c->counts || !c->expected || !c->acks) {
        ctx_free(c);
        return NULL;
    }
    for (size_t i = 0; i < b->n_s; i++, c->n_streams++) {
        size_t n = strlen(b->s[i].name);
        if (!(c->names[i] = evl_malloc(n + 1))) {
            ctx_free(c);
            return NULL;
        }
        memcpy(c->names[i], b->s[i].name, n + 1);
        c->counts[i] = b->s[i].n;
        c->expected[i] = b->s[i].expected;
    }
    return c;
}

static void submit(srv_req *q, srv_batch *b, int rc) {
    srv_worker *w = q->rsp.w;
    const srv_auth *auth = w->srv->auth;
    /* who did it: the token, unless an admin says otherwise (batch.c) */
    if (!rc && auth && (rc = evl__srv_batch_actor(b, auth, q->role, q->token_name)) == SRV_ACTOR_FORBIDDEN) {
        json_t *x = json_pack("{s:I}", "event_index", (json_int_t)b->event_index);
        if (x && q->token_name) json_object_set_new(x, "token", json_string(q->token_name));
        evl__srv_problem(&q->rsp, 403, "actor-forbidden", x, "%s", b->why);
        return;
    }
    if (rc) {
        answer_err(&q->rsp, rc, NULL, EVL_REV_ANY, 0, b->why);
        return;
    }
    append_ctx *c = ctx_new(&q->rsp, b);
    if (!c) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    rc = evl_log_append_async(w->srv->log, b->in, b->n_s, appended, c);
    if (rc) { /* refused before the writer: the callback will not run */
        ctx_free(c);
        answer_err(&q->rsp, rc, b->n_s == 1 ? b->s[0].name : NULL, EVL_REV_ANY, 0,
                   NULL);
        return;
    }
    w->inflight++;
}

static int expected_of(srv_req *q, uint64_t *out) {
    const char *h = evl__srv_hdr(q->rsp.req, "Expected-Revision");
    const char *p = evl__srv_param(q, "expected_revision");
    const char *v = h ? h : p;
    *out = EVL_REV_ANY;
    if (!v) return 0;
    if (evl_json_parse_expected(v, out) == EVL_OK) return 0;
    evl__srv_problem(&q->rsp, 400, "bad-request", NULL,
                     "%s '%s' must be a revision number or one of any, no_stream, exists",
                     h ? "the Expected-Revision header" : "expected_revision", v);
    return -1;
}

void evl__srv_append_stream(srv_req *q) {
    uint64_t expected;
    if (expected_of(q, &expected)) return;
    size_t len;
    const uint8_t *body = evl__srv_body(q->rsp.req, &len);
    srv_batch b;
    memset(&b, 0, sizeof b);
    int rc = evl__srv_body_is_mp(q->rsp.req)
                 ? evl__srv_batch_mp_stream(&b, q->seg[1], expected, body, len)
                 : evl__srv_batch_json_stream(&b, q->seg[1], expected, body, len);
    submit(q, &b, rc);
    evl__srv_batch_free(&b);
}

void evl__srv_append_multi(srv_req *q) {
    size_t len;
    const uint8_t *body = evl__srv_body(q->rsp.req, &len);
    srv_batch b;
    memset(&b, 0, sizeof b);
    int rc = evl__srv_body_is_mp(q->rsp.req) ? evl__srv_batch_mp_multi(&b, body, len)
                                             : evl__srv_batch_json_multi(&b, body, len);
    submit(q, &b, rc);
    evl__srv_batch_free(&b);
}
