/* Append bodies, JSON or msgpack, parsed into one batch for the log.
 *
 * The shapes (docs/http.md): POST /streams/{stream} takes one event object
 * or an array of them; POST /append takes {"streams": [{"stream": S,
 * "expected_revision"?: R, "events": [...]}, ...]}.  An event is
 * {"type": T, "data"?: {...}, "meta"?: {...}, "id"?: UUID} or a full
 * CloudEvents object (then `subject`, when present, must name the stream).
 *
 * A msgpack body has the same shape.  It is pre-scanned with evl_mp_check()
 * before anything else reads it, then walked with the bounded cursor; data
 * and meta maps are passed to the log as the bytes the client sent (no
 * round trip through JSON, so bin and ext values survive).
 *
 * Every problem is reported with where it is: "events[3].type: ...".
 */
#include <stdarg.h>
#include <stdio.h>

#include "server/batch.h"

#define MP_DEPTH (EVL_MAX_DEPTH + 8) /* the envelope adds up to 5 levels */

static int fail(srv_batch *b, int err, const char *fmt, ...) SRV_FMT(3, 4);
static int fail(srv_batch *b, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof b->why, fmt, ap);
    va_end(ap);
    return b->err = err;
}

void evl__srv_batch_free(srv_batch *b) {
    for (size_t i = 0; i < b->n_json; i++) evl_json_in_free(&b->json[i]);
    for (size_t i = 0; i < b->n_strs; i++) evl_free(b->strs[i]);
    evl_free(b->json);
    evl_free(b->strs);
    evl_free(b->ev);
    evl_free(b->s);
    evl_free(b->in);
    memset(b, 0, sizeof *b);
}

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap * 2 : 16;
    while (c < need) c *= 2;
    void *n = evl_realloc(*p, c * size);
    if (!n) return -1;
    *p = n;
    *cap = c;
    return 0;
}

/* A NUL-terminated copy owned by the batch. */
static char *keep(srv_batch *b, const char *s, size_t n) {
    if (grow((void **)&b->strs, &b->cap_strs, b->n_strs + 1, sizeof *b->strs)) return NULL;
    char *c = evl_malloc(n + 1);
    if (!c) return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    return b->strs[b->n_strs++] = c;
}

static int add_stream(srv_batch *b, const char *name, size_t len, uint64_t expected) {
    if (evl_name_check(name, len) != EVL_OK || memchr(name, '\0', len))
        return fail(b, EVL_ESTREAM, "stream '%.*s': %s", (int)(len > 300 ? 300 : len), name,
                    evl_strerror(EVL_ESTREAM));
    if (grow((void **)&b->s, &b->cap_s, b->n_s + 1, sizeof *b->s)) return fail(b, EVL_ENOMEM, "out of memory");
    srv_bstream *s = &b->s[b->n_s];
    if (!(s->name = keep(b, name, len))) return fail(b, EVL_ENOMEM, "out of memory");
    s->expected = expected;
    s->first = b->n_ev;
    s->n = 0;
    b->n_s++;
    return EVL_OK;
}

static evl_event_in *add_event(srv_batch *b) {
    if (grow((void **)&b->ev, &b->cap_ev, b->n_ev + 1, sizeof *b->ev)) return NULL;
    evl_event_in *e = &b->ev[b->n_ev++];
    memset(e, 0, sizeof *e);
    b->s[b->n_s - 1].n++;
    return e;
}

/* Point each stream at its events now that the array no longer moves. */
static int finish(srv_batch *b) {
    if (!b->n_s) return fail(b, EVL_EEMPTY, "the batch has no streams");
    b->in = evl_calloc(b->n_s, sizeof *b->in);
    if (!b->in) return fail(b, EVL_ENOMEM, "out of memory");
    for (size_t i = 0; i < b->n_s; i++) {
        if (!b->s[i].n) return fail(b, EVL_EEMPTY, "stream %s: no events", b->s[i].name);
        b->in[i] = (evl_stream_in){b->s[i].name, b->s[i].expected, b->ev + b->s[i].first, b->s[i].n};
    }
    return EVL_OK;
}

static int check_type(srv_batch *b, const char *where, const char *t, size_t n) {
    if (evl_name_check(t, n) != EVL_OK || memchr(t, '\0', n))
        return fail(b, EVL_ETYPE, "%s.type: %s", where, evl_strerror(EVL_ETYPE));
    return EVL_OK;
}

/* ------------------------------------------------------------- JSON */

static int json_event(srv_batch *b, const json_t *o, const char *where) {
    if (grow((void **)&b->json, &b->cap_json, b->n_json + 1, sizeof *b->json))
        return fail(b, EVL_ENOMEM, "out of memory");
    evl_json_in *in = &b->json[b->n_json];
    const char *why = NULL;
    int rc = evl_json_parse_event(o, in, &why);
    b->n_json++; /* freed with the batch whatever happened */
    if (rc) return fail(b, rc, "%s: %s", where, why ? why : evl_strerror(rc));
    const char *stream = b->s[b->n_s - 1].name;
    if (in->stream && strcmp(in->stream, stream))
        return fail(b, EVL_EINVAL, "%s.subject '%s' is not the stream '%s'", where, in->stream, stream);
    if ((rc = check_type(b, where, in->type, strlen(in->type)))) return rc;
    evl_event_in *e = add_event(b);
    if (!e) return fail(b, EVL_ENOMEM, "out of memory");
    evl_json_in_view(in, e);
    return EVL_OK;
}

static int json_events(srv_batch *b, const json_t *j, const char *prefix) {
    char where[96];
    if (json_is_object(j)) {
        snprintf(where, sizeof where, "%s", *prefix ? prefix : "event");
        return json_event(b, j, where);
    }
    if (!json_is_array(j) || !json_array_size(j))
        return fail(b, EVL_EJSON, "%s must be an event object or a non-empty array of them",
                    *prefix ? prefix : "the body");
    for (size_t i = 0; i < json_array_size(j); i++) {
        snprintf(where, sizeof where, "%sevents[%zu]", prefix, i);
        int rc = json_event(b, json_array_get(j, i), where);
        if (rc) return rc;
    }
    return EVL_OK;
}

static int json_expected(srv_batch *b, const json_t *v, const char *where, uint64_t *out) {
    if (!v || json_is_null(v)) {
        *out = EVL_REV_ANY;
        return EVL_OK;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        (uint64_t)json_integer_value(v) < EVL_REV_EXISTS) {
        *out = (uint64_t)json_integer_value(v);
        return EVL_OK;
    }
    if (json_is_string(v) && evl_json_parse_expected(json_string_value(v), out) == EVL_OK)
        return EVL_OK;
    return fail(b, EVL_EINVAL, "%s.expected_revision must be a revision number or one of any, "
                               "no_stream, exists", where);
}

static json_t *json_load(srv_batch *b, const uint8_t *body, size_t len) {
    json_error_t je;
    if (!len) {
        fail(b, EVL_EJSON, "the body is empty");
        return NULL;
    }
    json_t *j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &je);
    if (!j) fail(b, EVL_EJSON, "malformed JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    return j;
}

int evl__srv_batch_json_stream(srv_batch *b, const char *stream, uint64_t expected,
                               const uint8_t *body, size_t len) {
    int rc = add_stream(b, stream, strlen(stream), expected);
    if (rc) return rc;
    json_t *j = json_load(b, body, len);
    if (!j) return b->err;
    rc = json_events(b, j, "");
    json_decref(j);
    return rc ? rc : finish(b);
}

int evl__srv_batch_json_multi(srv_batch *b, const uint8_t *body, size_t len) {
    json_t *j = json_load(b, body, len);
    if (!j) return b->err;
    int rc = EVL_OK;
    json_t *streams = json_object_get(j, "streams");
    if (!json_is_array(streams) || !json_array_size(streams)) {
        rc = fail(b, EVL_EJSON, "the body must be {\"streams\": [{\"stream\": S, \"events\": [...]}, ...]}");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(streams) && !rc; i++) {
        char where[64];
        snprintf(where, sizeof where, "streams[%zu]", i);
        json_t *s = json_array_get(streams, i), *name = json_object_get(s, "stream");
        uint64_t expected;
        if (!json_is_string(name)) {
            rc = fail(b, EVL_EJSON, "%s.stream is missing or not a string", where);
            break;
        }
        if ((rc = json_expected(b, json_object_get(s, "expected_revision"), where, &expected))) break;
        if ((rc = add_stream(b, json_string_value(name), json_string_length(name), expected))) break;
        json_t *evs = json_object_get(s, "events");
        if (!json_is_array(evs)) {
            rc = fail(b, EVL_EJSON, "%s.events must be an array of events", where);
            break;
        }
        strcat(where, ".");
        rc = json_events(b, evs, where);
    }
    if (!rc) rc = finish(b);
out:
    json_decref(j);
    return rc;
}

/* ----------------------------------------------------------- msgpack */

static int mp_str(evl_mp *m, const char **s, uint32_t *n) {
    evl_mp_val v;
    if (evl_mp_read(m, &v) || v.kind != EVL_MP_STR) return -1;
    *s = v.v.s.ptr;
    *n = v.v.s.len;
    return 0;
}

/* The value at the cursor must be a map (or nil: absent); returns its bytes. */
static int mp_map_bytes(evl_mp *m, const uint8_t **p, size_t *n) {
    const uint8_t *start = m->p;
    evl_mp_val v;
    if (evl_mp_read(m, &v)) return -1;
    if (v.kind == EVL_MP_NIL) {
        *p = NULL;
        *n = 0;
        return 0;
    }
    if (v.kind != EVL_MP_MAP) return -1;
    m->p = start;
    if (evl_mp_skip(m, MP_DEPTH)) return -1;
    *p = start;
    *n = (size_t)(m->p - start);
    return 0;
}

static int mp_event(srv_batch *b, evl_mp *m, const char *where) {
    evl_mp_val v;
    if (evl_mp_read(m, &v) || v.kind != EVL_MP_MAP)
        return fail(b, EVL_EMSGPACK, "%s must be a map", where);
    evl_event_in *e = add_event(b);
    if (!e) return fail(b, EVL_ENOMEM, "out of memory");
    const char *stream = b->s[b->n_s - 1].name, *type = NULL;
    uint32_t type_len = 0;
    for (uint32_t i = 0; i < v.v.n; i++) {
        const char *k, *s;
        uint32_t kl, sl;
        if (mp_str(m, &k, &kl)) return fail(b, EVL_EMSGPACK, "%s: keys must be strings", where);
#define KEY(name) (kl == sizeof name - 1 && !memcmp(k, name, kl))
        if (KEY("type")) {
            if (mp_str(m, &type, &type_len)) return fail(b, EVL_EJSON, "%s.type must be a string", where);
        } else if (KEY("data")) {
            if (mp_map_bytes(m, (const uint8_t **)&e->data, &e->data_len))
                return fail(b, EVL_EDATA, "%s.data must be a map", where);
        } else if (KEY("meta")) {
            if (mp_map_bytes(m, (const uint8_t **)&e->meta, &e->meta_len))
                return fail(b, EVL_EMETA, "%s.meta must be a map", where);
        } else if (KEY("id")) {
            evl_mp_val id;
            uint8_t *buf = (uint8_t *)keep(b, "0123456789abcdef", 16);
            if (!buf) return fail(b, EVL_ENOMEM, "out of memory");
            int ok = !evl_mp_read(m, &id) &&
                     ((id.kind == EVL_MP_STR && !evl_uuid_parse(id.v.s.ptr, id.v.s.len, buf)) ||
                      (id.kind == EVL_MP_BIN && id.v.s.len == 16 && memcpy(buf, id.v.s.ptr, 16)));
            if (!ok) return fail(b, EVL_EID, "%s.id must be a UUID string or 16 bytes", where);
            e->id = buf;
        } else if (KEY("subject")) {
            if (mp_str(m, &s, &sl)) return fail(b, EVL_EJSON, "%s.subject must be a string", where);
            if (sl != strlen(stream) || memcmp(s, stream, sl))
                return fail(b, EVL_EINVAL, "%s.subject '%.*s' is not the stream '%s'", where,
                            (int)(sl > 300 ? 300 : sl), s, stream);
        } else if (evl_mp_skip(m, MP_DEPTH)) {
            return fail(b, EVL_EMSGPACK, "%s: malformed value", where);
        }
#undef KEY
    }
    if (!type) return fail(b, EVL_EJSON, "%s.type is missing", where);
    int rc = check_type(b, where, type, type_len);
    if (rc) return rc;
    if (!(e->type = keep(b, type, type_len))) return fail(b, EVL_ENOMEM, "out of memory");
    return EVL_OK;
}

/* "<prefix>events[<i>]" into @p out (96 bytes): for every event of a
 * batch, so without snprintf (~3% of a worker's CPU in a profile of
 * 100-event batches).  The prefix is at most "streams[4294967295].". */
static void event_where(char out[96], const char *prefix, uint32_t i) {
    size_t n = strlen(prefix);
    char digits[10];
    int k = 0;
    memcpy(out, prefix, n);
    memcpy(out + n, "events[", 7);
    n += 7;
    do { digits[k++] = (char)('0' + i % 10); i /= 10; } while (i);
    while (k) out[n++] = digits[--k];
    out[n++] = ']';
    out[n] = '\0';
}

static int mp_events(srv_batch *b, evl_mp *m, const char *prefix) {
    evl_mp save = *m;
    evl_mp_val v;
    char where[96];
    if (evl_mp_read(m, &v)) return fail(b, EVL_EMSGPACK, "malformed msgpack");
    if (v.kind == EVL_MP_MAP) {
        *m = save;
        snprintf(where, sizeof where, "%s", *prefix ? prefix : "event");
        return mp_event(b, m, where);
    }
    if (v.kind != EVL_MP_ARRAY || !v.v.n)
        return fail(b, EVL_EMSGPACK, "%s must be an event map or a non-empty array of them",
                    *prefix ? prefix : "the body");
    for (uint32_t i = 0; i < v.v.n; i++) {
        event_where(where, prefix, i);
        int rc = mp_event(b, m, where);
        if (rc) return rc;
    }
    return EVL_OK;
}

static int mp_check(srv_batch *b, const uint8_t *body, size_t len) {
    size_t off = 0;
    int dup, rc = evl_mp_check_unique(body, len, MP_DEPTH, &off, &dup);
    if (rc == EVL_ENOMEM) return fail(b, rc, "out of memory");
    if (dup) return fail(b, rc, "the map at byte %zu of the msgpack body has the same key twice", off);
    if (rc) return fail(b, rc, "malformed msgpack body at byte %zu: %s", off, evl_strerror(rc));
    return EVL_OK;
}

int evl__srv_batch_mp_stream(srv_batch *b, const char *stream, uint64_t expected,
                             const uint8_t *body, size_t len) {
    int rc = mp_check(b, body, len);
    if (!rc) rc = add_stream(b, stream, strlen(stream), expected);
    evl_mp m = {body, body + len};
    if (!rc) rc = mp_events(b, &m, "");
    return rc ? rc : finish(b);
}

int evl__srv_batch_mp_multi(srv_batch *b, const uint8_t *body, size_t len) {
    int rc = mp_check(b, body, len);
    if (rc) return rc;
    evl_mp streams;
    evl_mp_val v;
    if (evl_mp_map_find(body, len, "streams", 7, &streams) || evl_mp_read(&streams, &v) ||
        v.kind != EVL_MP_ARRAY || !v.v.n)
        return fail(b, EVL_EMSGPACK, "the body must be a map {\"streams\": [...]}");
    for (uint32_t i = 0; i < v.v.n; i++) {
        char where[64];
        snprintf(where, sizeof where, "streams[%u]", i);
        evl_mp_val sv;
        if (evl_mp_read(&streams, &sv) || sv.kind != EVL_MP_MAP)
            return fail(b, EVL_EMSGPACK, "%s must be a map", where);
        const char *name = NULL;
        uint32_t name_len = 0;
        uint64_t expected = EVL_REV_ANY;
        evl_mp events = {NULL, NULL};
        for (uint32_t k = 0; k < sv.v.n; k++) {
            const char *key;
            uint32_t kl;
            if (mp_str(&streams, &key, &kl)) return fail(b, EVL_EMSGPACK, "%s: keys must be strings", where);
            if (kl == 6 && !memcmp(key, "stream", 6)) {
                if (mp_str(&streams, &name, &name_len))
                    return fail(b, EVL_EJSON, "%s.stream must be a string", where);
            } else if (kl == 17 && !memcmp(key, "expected_revision", 17)) {
                evl_mp_val e;
                char word[24];
                int ok = 0;
                if (evl_mp_read(&streams, &e)) return fail(b, EVL_EMSGPACK, "malformed msgpack");
                if (e.kind == EVL_MP_UINT && e.v.u < EVL_REV_EXISTS) {
                    expected = e.v.u;
                    ok = 1;
                } else if (e.kind == EVL_MP_NIL) {
                    ok = 1;
                } else if (e.kind == EVL_MP_STR && e.v.s.len < sizeof word) {
                    memcpy(word, e.v.s.ptr, e.v.s.len);
                    word[e.v.s.len] = '\0';
                    ok = evl_json_parse_expected(word, &expected) == EVL_OK;
                }
                if (!ok) return fail(b, EVL_EINVAL, "%s.expected_revision must be a revision number "
                                                    "or one of any, no_stream, exists", where);
            } else if (kl == 6 && !memcmp(key, "events", 6)) {
                events = streams;
                if (evl_mp_skip(&streams, MP_DEPTH)) return fail(b, EVL_EMSGPACK, "malformed msgpack");
            } else if (evl_mp_skip(&streams, MP_DEPTH)) {
                return fail(b, EVL_EMSGPACK, "malformed msgpack");
            }
        }
        if (!name) return fail(b, EVL_EJSON, "%s.stream is missing", where);
        if (!events.p) return fail(b, EVL_EJSON, "%s.events is missing", where);
        int rc2 = add_stream(b, name, name_len, expected);
        if (rc2) return rc2;
        strcat(where, ".");
        evl_mp_val arr;
        evl_mp peek = events;
        if (evl_mp_read(&peek, &arr) || arr.kind != EVL_MP_ARRAY)
            return fail(b, EVL_EMSGPACK, "%sevents must be an array of events", where);
        if ((rc2 = mp_events(b, &events, where))) return rc2;
    }
    return finish(b);
}

/* ------------------------------------------------------------ actors */

/* meta with "actor": @p name added as its last key, in a buffer the batch
 * owns (*out).  The map header grows to the width its new count needs. */
static int add_actor(srv_batch *b, const uint8_t *meta, size_t len, const char *name,
                     const uint8_t **out, size_t *out_len) {
    static const uint8_t empty = 0x80;
    if (!meta) { meta = &empty; len = 1; }
    uint32_t n;
    size_t hdr;
    if (meta[0] >= 0x80 && meta[0] <= 0x8f) { n = meta[0] & 0x0f; hdr = 1; }
    else if (meta[0] == 0xde) { n = (uint32_t)meta[1] << 8 | meta[2]; hdr = 3; }
    else { n = (uint32_t)meta[1] << 24 | (uint32_t)meta[2] << 16 | (uint32_t)meta[3] << 8 | meta[4]; hdr = 5; }
    size_t nl = strlen(name); /* 1..255 (auth.c) */
    uint8_t *buf = evl_malloc(len + 4 + 6 + 2 + nl), *p = buf;
    if (!buf) return EVL_ENOMEM;
    n++;
    if (n <= 15) { *p++ = (uint8_t)(0x80 | n); }
    else if (n <= 0xffff) { *p++ = 0xde; *p++ = (uint8_t)(n >> 8); *p++ = (uint8_t)n; }
    else { *p++ = 0xdf; *p++ = (uint8_t)(n >> 24); *p++ = (uint8_t)(n >> 16); *p++ = (uint8_t)(n >> 8); *p++ = (uint8_t)n; }
    memcpy(p, meta + hdr, len - hdr);
    p += len - hdr;
    memcpy(p, "\xa5" "actor", 6);
    p += 6;
    if (nl < 32) { *p++ = (uint8_t)(0xa0 | nl); }
    else { *p++ = 0xd9; *p++ = (uint8_t)nl; }
    memcpy(p, name, nl);
    p += nl;
    *out_len = (size_t)(p - buf);
    *out = (const uint8_t *)keep(b, (const char *)buf, *out_len);
    evl_free(buf);
    return *out ? EVL_OK : EVL_ENOMEM;
}

int evl__srv_batch_actor(srv_batch *b, const srv_auth *a, srv_role role, const char *name) {
    for (size_t i = 0; i < b->n_ev; i++) {
        evl_event_in *e = &b->ev[i];
        size_t n_actor = 0;
        if (e->meta) {
            /* a meta the log will refuse anyway: leave it to say why */
            if (evl_mp_check(e->meta, e->meta_len, EVL_MAX_DEPTH, EVL_MP_STRING_KEYS, NULL)) continue;
            evl_mp m = {e->meta, (const uint8_t *)e->meta + e->meta_len};
            evl_mp_val v, k;
            if (evl_mp_read(&m, &v) || v.kind != EVL_MP_MAP) continue;
            /* every "actor" key: msgpack allows a key twice, and decoders
             * differ on which one wins */
            for (uint32_t j = 0; j < v.v.n; j++) {
                if (evl_mp_read(&m, &k)) break;
                evl_mp at = m;
                if (evl_mp_skip(&m, EVL_MAX_DEPTH)) break;
                if (k.v.s.len != 5 || memcmp(k.v.s.ptr, "actor", 5)) continue;
                n_actor++;
                if (role == ROLE_ADMIN || evl_mp_read(&at, &v) || v.kind != EVL_MP_STR) continue;
                int own = name && strlen(name) == v.v.s.len && !memcmp(name, v.v.s.ptr, v.v.s.len);
                if (!own && evl__srv_auth_is_name(a, v.v.s.ptr, v.v.s.len)) {
                    b->event_index = i;
                    fail(b, EVL_EINVAL, "events[%zu].meta.actor '%.*s' is another token's name: only an "
                                        "admin token may append as another actor (this token is %s%s%s)",
                         i, (int)v.v.s.len, v.v.s.ptr, name ? "'" : "", name ? name : "unnamed", name ? "'" : "");
                    return SRV_ACTOR_FORBIDDEN;
                }
            }
        }
        if (!n_actor && name) {
            const uint8_t *meta;
            size_t len;
            if (add_actor(b, e->meta, e->meta_len, name, &meta, &len)) return fail(b, EVL_ENOMEM, "out of memory");
            e->meta = meta;
            e->meta_len = len;
        }
    }
    return EVL_OK;
}
