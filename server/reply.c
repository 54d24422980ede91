/* Answers and request helpers: status and body, content negotiation (JSON
 * or msgpack), query parameters, the request body, and the two encodings of
 * an event.
 */
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

#include "server/srv_int.h"

void evl__srv_count(srv_worker *w, int code) {
    if (code >= 100 && code < 600)
        atomic_fetch_add_explicit(&w->st.codes[code], 1, memory_order_relaxed);
}

void evl__srv_reply(const srv_rsp *r, int code, const char *ctype, struct evbuffer *body) {
    if (ctype) evl__srv_add_header(r->req, "Content-Type", ctype);
    if (r->w->stopping) evl__srv_add_header(r->req, "Connection", "close"); /* let the drain finish */
    evl__srv_count(r->w, code);
    evl__srv_send(r->req, code, body);
}

static int add_cb(const char *p, size_t n, void *arg) {
    return evbuffer_add(arg, p, n);
}

void evl__srv_reply_json(const srv_rsp *r, int code, const json_t *j) {
    evl__srv_reply_json_digits(r, code, j, 0);
}

void evl__srv_reply_json_digits(const srv_rsp *r, int code, const json_t *j, int digits) {
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evl__srv_reply(r, 503, NULL, NULL);
        return;
    }
    const char *ctype = "application/json";
    if (r->want_mp) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (evl_json_to_msgpack(j, &sb) == EVL_OK) evbuffer_add(b, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        ctype = "application/msgpack";
    } else {
        json_dump_callback(j, add_cb, b, JSON_COMPACT | (digits ? JSON_REAL_PRECISION(digits) : 0));
    }
    evl__srv_reply(r, code, ctype, b);
    evbuffer_free(b);
}

/* ------------------------------------------------------------ requests */

const char *evl__srv_param(const srv_req *q, const char *name) {
    for (int i = 0; i < q->n_param; i++)
        if (!strcmp(q->param[i].key, name)) return q->param[i].val;
    return NULL;
}

int evl__srv_u64(const char *s, uint64_t *v) {
    if (!s || !*s) return -1;
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

int evl__srv_flag(const srv_req *q, const char *name) {
    const char *v = evl__srv_param(q, name);
    if (!v) return 0;
    return !*v || !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes");
}

const uint8_t *evl__srv_body(const srv_hreq *req, size_t *len) {
    *len = req->body_len;
    return *len ? req->body : (const uint8_t *)"";
}

static int is_msgpack_type(const char *v) {
    if (!v) return 0;
    while (*v == ' ') v++;
    return !strncasecmp(v, "application/msgpack", 19) || !strncasecmp(v, "application/x-msgpack", 21);
}

int evl__srv_body_is_mp(const srv_hreq *req) {
    return is_msgpack_type(evl__srv_hdr(req, "Content-Type"));
}

/* -------------------------------------------------------------- events */

int evl__srv_event_json(const evl_event *ev, struct evbuffer *out) {
    json_t *j = evl_json_event(ev);
    if (!j) return EVL_ENOMEM;
    int rc = json_dump_callback(j, add_cb, out, JSON_COMPACT) ? EVL_ENOMEM : EVL_OK;
    json_decref(j);
    return rc;
}

static int pack_str(msgpack_packer *pk, const char *s, size_t n) {
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int pack_key(msgpack_packer *pk, const char *k) { return pack_str(pk, k, strlen(k)); }

/* The same members as the JSON form, with data and meta as the stored
 * msgpack maps, byte for byte (bin and ext survive, unlike through JSON). */
int evl__srv_event_mp(const evl_event *ev, msgpack_packer *pk) {
    char id[37], tm[40];
    evl_uuid_format(ev->id, id);
    size_t tl = evl_time_format(ev->time_ns, 9, tm);
    int bad = msgpack_pack_map(pk, 10) || pack_key(pk, "specversion") || pack_str(pk, "1.0", 3) ||
              pack_key(pk, "id") || pack_str(pk, id, 36) || pack_key(pk, "source") ||
              pack_str(pk, "evlog", 5) || pack_key(pk, "type") ||
              pack_str(pk, ev->type, ev->type_len) || pack_key(pk, "subject") ||
              pack_str(pk, ev->stream, ev->stream_len) || pack_key(pk, "time") ||
              pack_str(pk, tm, tl) || pack_key(pk, "data");
    if (!bad) bad = ev->data_len ? pk->callback(pk->data, (const char *)ev->data, ev->data_len)
                                 : msgpack_pack_map(pk, 0);
    bad = bad || pack_key(pk, "position") || msgpack_pack_uint64(pk, ev->position) ||
          pack_key(pk, "revision") || msgpack_pack_uint64(pk, ev->revision) || pack_key(pk, "meta");
    if (!bad) bad = ev->meta_len ? pk->callback(pk->data, (const char *)ev->meta, ev->meta_len)
                                 : msgpack_pack_map(pk, 0);
    return bad ? EVL_ENOMEM : EVL_OK;
}
