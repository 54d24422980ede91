/* Reads: GET /streams/{stream}, GET /events, GET /events/{position}.
 *
 * A page is read with one short-lived iterator, on the loop thread (LMDB
 * reads are memory-mapped and bounded by max_page, they never wait).  One
 * event more than the page is read to know whether another page follows:
 * then the answer carries `next_from` (the first position, or revision for
 * a stream, of the next page) and `next`, the same URL with `from` set,
 * which a client follows until it is null.
 */
#include <inttypes.h>
#include <stdio.h>

#include "server/srv_int.h"

#define DEFAULT_PAGE 100

typedef struct page {
    int mp;
    struct evbuffer *json;     /* "{"events":[e1,e2" so far */
    msgpack_sbuffer sb;        /* packed events so far */
    msgpack_packer pk;
    size_t n;
} page;

static int page_init(page *p, int mp) {
    memset(p, 0, sizeof *p);
    p->mp = mp;
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
    if (!(p->json = evbuffer_new())) return EVL_ENOMEM;
    if (!mp) evbuffer_add(p->json, "{\"events\":[", 11);
    return EVL_OK;
}

static void page_free(page *p) {
    if (p->json) evbuffer_free(p->json);
    msgpack_sbuffer_destroy(&p->sb);
}

static int page_add(page *p, const evl_event *ev) {
    p->n++;
    if (p->mp) return evl__srv_event_mp(ev, &p->pk);
    if (p->n > 1) evbuffer_add(p->json, ",", 1);
    return evl__srv_event_json(ev, p->json);
}

/* The URL of the next page: this one with from=NEXT.  The caller frees it
 * with evl_free(); NULL without memory (then the page has no link). */
static char *next_link(srv_req *q, uint64_t next) {
    struct evbuffer *b = evbuffer_new();
    if (!b) return NULL;
    evbuffer_add_printf(b, "%s?", evhttp_uri_get_path(q->rsp.req->u));
    for (int i = 0; i < q->n_param; i++) {
        const srv_kv *kv = &q->param[i];
        if (!strcmp(kv->key, "from")) continue;
        char *k = evhttp_uriencode(kv->key, -1, 0), *v = evhttp_uriencode(kv->val, -1, 0);
        if (k && v) evbuffer_add_printf(b, "%s=%s&", k, v);
        free(k);
        free(v);
    }
    evbuffer_add_printf(b, "from=%" PRIu64, next);
    size_t n = evbuffer_get_length(b);
    char *s = evl_malloc(n + 1);
    if (s) {
        evbuffer_remove(b, s, n);
        s[n] = '\0';
    }
    evbuffer_free(b);
    return s;
}

static void page_send(page *p, srv_req *q, int has_next, uint64_t next, uint64_t head) {
    char *link = has_next ? next_link(q, next) : NULL;
    if (link) {
        struct evbuffer *lh = evbuffer_new();
        if (lh) {
            evbuffer_add_printf(lh, "<%s>; rel=\"next\"", link);
            evbuffer_add(lh, "", 1);
            evl__srv_add_header(q->rsp.req, "Link",
                              (const char *)evbuffer_pullup(lh, -1));
            evbuffer_free(lh);
        }
    }
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evl_free(link);
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    if (p->mp) {
        msgpack_sbuffer hb;
        msgpack_sbuffer_init(&hb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &hb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        msgpack_pack_str_with_body(&pk, "events", 6);
        msgpack_pack_array(&pk, p->n);
        evbuffer_add(out, hb.data, hb.size);
        evbuffer_add(out, p->sb.data, p->sb.size);
        hb.size = 0;
        msgpack_pack_str_with_body(&pk, "next_from", 9);
        if (has_next) msgpack_pack_uint64(&pk, next);
        else msgpack_pack_nil(&pk);
        msgpack_pack_str_with_body(&pk, "next", 4);
        if (link) msgpack_pack_str_with_body(&pk, link, strlen(link));
        else msgpack_pack_nil(&pk);
        msgpack_pack_str_with_body(&pk, "head", 4);
        msgpack_pack_uint64(&pk, head);
        evbuffer_add(out, hb.data, hb.size);
        msgpack_sbuffer_destroy(&hb);
    } else {
        evbuffer_add_buffer(out, p->json);
        evbuffer_add(out, "],\"next_from\":", 14);
        if (has_next) evbuffer_add_printf(out, "%" PRIu64, next);
        else evbuffer_add(out, "null", 4);
        evbuffer_add(out, ",\"next\":", 8);
        if (link) {
            json_t *s = json_string(link); /* escaped as JSON */
            char *t = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
            if (t) evbuffer_add(out, t, strlen(t));
            else evbuffer_add(out, "null", 4);
            free(t);
            json_decref(s);
        } else {
            evbuffer_add(out, "null", 4);
        }
        evbuffer_add_printf(out, ",\"head\":%" PRIu64 "}", head);
    }
    evl__srv_reply(&q->rsp, 200, p->mp ? "application/msgpack" : "application/json", out);
    evbuffer_free(out);
    evl_free(link);
}

/* 0: ok; -1: answered 400. */
static int u64_param(srv_req *q, const char *name, uint64_t *v, int *given) {
    const char *s = evl__srv_param(q, name);
    if (given) *given = s != NULL;
    if (!s) return 0;
    if (!evl__srv_u64(s, v)) return 0;
    evl__srv_problem(&q->rsp, 400, "bad-request", NULL, "%s must be a non-negative integer, not '%s'",
                     name, s);
    return -1;
}

static int limit_param(srv_req *q, uint64_t *limit) {
    *limit = DEFAULT_PAGE;
    if (u64_param(q, "limit", limit, NULL)) return -1;
    uint64_t max = q->rsp.w->srv->cfg.max_page;
    if (*limit == 0 || *limit > max) {
        evl__srv_problem(&q->rsp, 400, "bad-request", NULL, "limit must be 1..%" PRIu64, max);
        return -1;
    }
    return 0;
}

static int time_param(srv_req *q, const char *name, const char *s, int64_t *ns) {
    if (evl_time_parse(s, strlen(s), ns) == EVL_OK) return 0;
    evl__srv_problem(&q->rsp, 400, "bad-request", NULL,
                     "%s must be an RFC 3339 time (2026-11-23T10:30:00Z), not '%s'", name, s);
    return -1;
}

static void read_failed(srv_req *q, int rc) {
    const char *slug;
    int code = evl__srv_err_status(rc, &slug);
    evl__srv_problem(&q->rsp, code, slug, NULL, "reading the log: %s", evl_strerror(rc));
}

void evl__srv_read_stream(srv_req *q) {
    evl_log *log = q->rsp.w->srv->log;
    const char *stream = q->seg[1];
    uint64_t rev, from = 0, until = 0, limit;
    int has_from, has_until, backward = evl__srv_flag(q, "backward");
    if (evl_name_check(stream, strlen(stream)) != EVL_OK ||
        evl_log_stream_revision(log, stream, &rev) != EVL_OK) {
        evl__srv_problem(&q->rsp, 404, "not-found", NULL, "stream %s has no events", stream);
        return;
    }
    if (u64_param(q, "from", &from, &has_from) || u64_param(q, "until", &until, &has_until) ||
        limit_param(q, &limit))
        return;
    evl_query qq = {.stream = stream, .backward = backward, .limit = limit + 1,
                    .from_revision = has_from ? from : backward ? EVL_REV_ANY : 0};
    evl_iter *it;
    int rc = evl_iter_open(log, &qq, &it);
    if (rc) {
        read_failed(q, rc);
        return;
    }
    page p;
    rc = page_init(&p, q->rsp.want_mp);
    evl_event ev;
    int has_next = 0;
    uint64_t next = 0;
    while (rc == EVL_OK && (rc = evl_iter_next(it, &ev)) == EVL_OK) {
        if (has_until && (backward ? ev.revision < until : ev.revision > until)) break;
        if (p.n == limit) {
            has_next = 1;
            next = ev.revision;
            break;
        }
        rc = page_add(&p, &ev);
    }
    evl_iter_close(it);
    if (rc == EVL_END) rc = EVL_OK;
    if (rc) read_failed(q, rc);
    else page_send(&p, q, has_next, next, evl_log_head(log));
    page_free(&p);
}

void evl__srv_read_events(srv_req *q) {
    evl_log *log = q->rsp.w->srv->log;
    uint64_t limit, until = 0;
    int has_until = 0, backward = evl__srv_flag(q, "backward");
    evl_query qq = {.stream = evl__srv_param(q, "stream"), .type = evl__srv_param(q, "type"),
                    .category = evl__srv_param(q, "category"), .actor = evl__srv_param(q, "actor"),
                    .correlation_id = evl__srv_param(q, "correlation_id"), .backward = backward};
    const char *since = evl__srv_param(q, "since"), *u = evl__srv_param(q, "until");
    if (u64_param(q, "from", &qq.from_position, NULL) || limit_param(q, &limit)) return;
    if (since && time_param(q, "since", since, &qq.since_ns)) return;
    if (u && evl__srv_u64(u, &until) == 0) has_until = 1;
    else if (u && time_param(q, "until", u, &qq.until_ns)) return;
    if (has_until && !backward) qq.until_position = until;
    qq.limit = limit + 1;
    evl_iter *it;
    int rc = evl_iter_open(log, &qq, &it);
    if (rc) {
        read_failed(q, rc);
        return;
    }
    page p;
    rc = page_init(&p, q->rsp.want_mp);
    evl_event ev;
    int has_next = 0;
    uint64_t next = 0;
    while (rc == EVL_OK && (rc = evl_iter_next(it, &ev)) == EVL_OK) {
        if (has_until && backward && ev.position < until) break;
        if (p.n == limit) {
            has_next = 1;
            next = ev.position;
            break;
        }
        rc = page_add(&p, &ev);
    }
    evl_iter_close(it);
    if (rc == EVL_END) rc = EVL_OK;
    if (rc) read_failed(q, rc);
    else page_send(&p, q, has_next, next, evl_log_head(log));
    page_free(&p);
}

void evl__srv_read_event(srv_req *q) {
    evl_log *log = q->rsp.w->srv->log;
    uint64_t pos;
    if (evl__srv_u64(q->seg[1], &pos) || pos == 0 || pos > evl_log_head(log)) {
        evl__srv_problem(&q->rsp, 404, "not-found", NULL, "no event at position %s", q->seg[1]);
        return;
    }
    uint8_t *raw = NULL;
    size_t len;
    evl_event ev;
    int rc = evl_log_get(log, pos, &raw, &len);
    if (!rc) rc = evl_log_decode(raw, len, &ev);
    struct evbuffer *out = rc ? NULL : evbuffer_new();
    if (!rc && !out) rc = EVL_ENOMEM;
    if (!rc && q->rsp.want_mp) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (!(rc = evl__srv_event_mp(&ev, &pk))) evbuffer_add(out, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    } else if (!rc) {
        rc = evl__srv_event_json(&ev, out);
    }
    if (rc == EVL_ENOTFOUND)
        evl__srv_problem(&q->rsp, 404, "not-found", NULL, "no event at position %" PRIu64, pos);
    else if (rc)
        read_failed(q, rc);
    else
        evl__srv_reply(&q->rsp, 200, q->rsp.want_mp ? "application/msgpack" : "application/json", out);
    if (out) evbuffer_free(out);
    evl_free(raw);
}

/* GET /digest?at=POS: the hash-chain head (docs/audit.md), the same JSON as
 * `evlog digest`.  Reading a record is cheap: no verification here, that is
 * `evlog verify`'s job on the server's data dir. */
void evl__srv_digest(srv_req *q) {
    evl_log *log = q->rsp.w->srv->log;
    uint64_t at = 0, head = evl_log_head(log);
    int given;
    if (u64_param(q, "at", &at, &given)) return;
    if (given && at == 0) {
        evl__srv_problem(&q->rsp, 400, "bad-request", NULL, "at must be a position from 1");
        return;
    }
    if (at > head || head == 0) {
        evl__srv_problem(&q->rsp, 404, "not-found", NULL, head ? "position %" PRIu64 " is past the head %" PRIu64
                                                             : "the log is empty: no digest yet", at, head);
        return;
    }
    evl_digest d;
    int rc = evl_log_digest(log, at, &d);
    if (rc == EVL_ENOTFOUND) {
        evl__srv_problem(&q->rsp, 404, "not-found", NULL, "position %" PRIu64 " predates the hash chain",
                         at ? at : head);
        return;
    }
    if (rc) {
        read_failed(q, rc);
        return;
    }
    char hex[2 * EVL_CHAIN_LEN + 1];
    for (int i = 0; i < EVL_CHAIN_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", d.hash[i]);
    json_t *o = json_pack("{s:I,s:s}", "position", (json_int_t)d.position, "hash", hex);
    if (!o) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return;
    }
    evl__srv_reply_json(&q->rsp, 200, o);
    json_decref(o);
}
