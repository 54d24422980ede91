/* JSON at the edges: CloudEvents out, input events in, msgpack <-> JSON.
 *
 * msgpack is only ever read here through the bounded evl_mp cursor: the
 * buffers come from the log (already checked) but the cursor costs nothing
 * and keeps a corrupt record from turning into an out-of-bounds read.
 */
#include "evlog/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evlog/mp.h"

/* --------------------------------------------------------------- base64 */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* JSON has no bytes type; standard padded base64 is what every client can
 * decode without guessing the variant. */
static json_t *b64_string(const uint8_t *p, size_t n)
{
    size_t out_len = 4 * ((n + 2) / 3);
    char *s = evl_malloc(out_len + 1);
    if (!s)
        return NULL;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        s[o++] = b64_alphabet[v >> 18 & 63];
        s[o++] = b64_alphabet[v >> 12 & 63];
        s[o++] = b64_alphabet[v >> 6 & 63];
        s[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        s[o++] = b64_alphabet[v >> 18 & 63];
        s[o++] = b64_alphabet[v >> 12 & 63];
        s[o++] = '=';
        s[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        s[o++] = b64_alphabet[v >> 18 & 63];
        s[o++] = b64_alphabet[v >> 12 & 63];
        s[o++] = b64_alphabet[v >> 6 & 63];
        s[o++] = '=';
    }
    s[o] = '\0';
    json_t *j = json_stringn_nocheck(s, o);
    evl_free(s);
    return j;
}

/* ------------------------------------------------------- msgpack -> JSON */

static int from_mp(evl_mp *m, int depth, json_t **out)
{
    evl_mp_val v;
    int rc = evl_mp_read(m, &v);
    if (rc != EVL_OK)
        return rc;
    json_t *j = NULL;
    switch (v.kind) {
    case EVL_MP_NIL:
        j = json_null();
        break;
    case EVL_MP_BOOL:
        j = json_boolean(v.v.b);
        break;
    case EVL_MP_UINT:
        /* json_int_t is signed 64-bit: the top half of uint64 can only be
         * carried (approximately) as a real. */
        j = v.v.u > (uint64_t)INT64_MAX ? json_real((double)v.v.u)
                                        : json_integer((json_int_t)v.v.u);
        break;
    case EVL_MP_INT:
        j = json_integer((json_int_t)v.v.i);
        break;
    case EVL_MP_FLOAT:
        /* JSON cannot spell NaN or infinities; null is the only value every
         * parser accepts, rather than failing the whole event. */
        j = isfinite(v.v.f) ? json_real(v.v.f) : json_null();
        break;
    case EVL_MP_STR:
        if (!evl_utf8_valid(v.v.s.ptr, v.v.s.len))
            return EVL_EMSGPACK;
        j = json_stringn_nocheck(v.v.s.ptr, v.v.s.len);
        break;
    case EVL_MP_BIN:
        j = b64_string((const uint8_t *)v.v.s.ptr, v.v.s.len);
        break;
    case EVL_MP_EXT:
        j = b64_string(v.v.ext.ptr, v.v.ext.len);
        break;
    case EVL_MP_ARRAY:
        if (depth > EVL_MAX_DEPTH)
            return EVL_EDEPTH;
        if (!(j = json_array()))
            return EVL_ENOMEM;
        for (uint32_t i = 0; i < v.v.n; i++) {
            json_t *e = NULL;
            if ((rc = from_mp(m, depth + 1, &e)) != EVL_OK) {
                json_decref(j);
                return rc;
            }
            if (json_array_append_new(j, e) != 0) {
                json_decref(j);
                return EVL_ENOMEM;
            }
        }
        break;
    case EVL_MP_MAP:
        if (depth > EVL_MAX_DEPTH)
            return EVL_EDEPTH;
        if (!(j = json_object()))
            return EVL_ENOMEM;
        for (uint32_t i = 0; i < v.v.n; i++) {
            evl_mp_val k;
            json_t *e = NULL;
            if ((rc = evl_mp_read(m, &k)) != EVL_OK || k.kind != EVL_MP_STR ||
                !evl_utf8_valid(k.v.s.ptr, k.v.s.len)) {
                json_decref(j);
                return rc != EVL_OK ? rc : EVL_EMSGPACK;
            }
            if ((rc = from_mp(m, depth + 1, &e)) != EVL_OK) {
                json_decref(j);
                return rc;
            }
            /* setn: keys may legitimately contain NUL bytes. */
            if (json_object_setn_new_nocheck(j, k.v.s.ptr, k.v.s.len, e) != 0) {
                json_decref(j);
                return EVL_ENOMEM;
            }
        }
        break;
    default:
        return EVL_EMSGPACK;
    }
    if (!j)
        return EVL_ENOMEM;
    *out = j;
    return EVL_OK;
}

int evl_json_from_msgpack(const uint8_t *mp, size_t len, json_t **out)
{
    if (!mp || !out)
        return EVL_EINVAL;
    *out = NULL;
    evl_mp m = {mp, mp + len};
    json_t *j = NULL;
    int rc = from_mp(&m, 1, &j);
    if (rc != EVL_OK)
        return rc;
    if (m.p != m.end) { /* one value means one value: trailing bytes are corruption */
        json_decref(j);
        return EVL_EMSGPACK;
    }
    *out = j;
    return EVL_OK;
}

/* ------------------------------------------------------- JSON -> msgpack */

static int to_mp(const json_t *j, msgpack_packer *pk, int depth)
{
    int rc;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if (depth > EVL_MAX_DEPTH)
            return EVL_EDEPTH;
        json_t *o = (json_t *)j; /* the iterator API is not const-correct */
        if (msgpack_pack_map(pk, json_object_size(o)) != 0)
            return EVL_ENOMEM;
        for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
            const char *k = json_object_iter_key(it);
            size_t kl = json_object_iter_key_len(it);
            if (msgpack_pack_str(pk, kl) != 0 || msgpack_pack_str_body(pk, k, kl) != 0)
                return EVL_ENOMEM;
            if ((rc = to_mp(json_object_iter_value(it), pk, depth + 1)) != EVL_OK)
                return rc;
        }
        return EVL_OK;
    }
    case JSON_ARRAY: {
        if (depth > EVL_MAX_DEPTH)
            return EVL_EDEPTH;
        size_t n = json_array_size(j);
        if (msgpack_pack_array(pk, n) != 0)
            return EVL_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if ((rc = to_mp(json_array_get(j, i), pk, depth + 1)) != EVL_OK)
                return rc;
        return EVL_OK;
    }
    case JSON_STRING: {
        size_t n = json_string_length(j);
        if (msgpack_pack_str(pk, n) != 0 ||
            msgpack_pack_str_body(pk, json_string_value(j), n) != 0)
            return EVL_ENOMEM;
        return EVL_OK;
    }
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, (int64_t)json_integer_value(j)) ? EVL_ENOMEM : EVL_OK;
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(j)) ? EVL_ENOMEM : EVL_OK;
    case JSON_TRUE:
        return msgpack_pack_true(pk) ? EVL_ENOMEM : EVL_OK;
    case JSON_FALSE:
        return msgpack_pack_false(pk) ? EVL_ENOMEM : EVL_OK;
    case JSON_NULL:
        return msgpack_pack_nil(pk) ? EVL_ENOMEM : EVL_OK;
    }
    return EVL_EINVAL;
}

int evl_json_to_msgpack(const json_t *j, msgpack_sbuffer *sb)
{
    if (!j || !sb)
        return EVL_EINVAL;
    size_t start = sb->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = to_mp(j, &pk, 1);
    if (rc != EVL_OK)
        sb->size = start; /* a half-packed value must not look like a value */
    return rc;
}

/* ------------------------------------------------------------ the event */

static int set_new(json_t *obj, const char *key, json_t *val)
{
    /* json_object_set_new releases val on failure and refuses NULL, so a
     * failed constructor upstream is caught here as well. */
    return json_object_set_new(obj, key, val);
}

json_t *evl_json_event(const evl_event *ev)
{
    if (!ev)
        return NULL;
    json_t *data = NULL, *meta = NULL;
    if (ev->data && ev->data_len) {
        if (evl_json_from_msgpack(ev->data, ev->data_len, &data) != EVL_OK)
            return NULL;
    } else if (!(data = json_object())) {
        return NULL;
    }
    if (ev->meta && ev->meta_len) {
        if (evl_json_from_msgpack(ev->meta, ev->meta_len, &meta) != EVL_OK) {
            json_decref(data);
            return NULL;
        }
    } else if (!(meta = json_object())) {
        json_decref(data);
        return NULL;
    }

    char id[37], tm[40];
    evl_uuid_format(ev->id, id);
    size_t tl = evl_time_format(ev->time_ns, 9, tm);
    json_t *o = json_object();
    if (!o || set_new(o, "specversion", json_string("1.0")) ||
        set_new(o, "id", json_stringn(id, 36)) ||
        set_new(o, "source", json_string("evlog")) ||
        set_new(o, "type", json_stringn(ev->type, ev->type_len)) ||
        set_new(o, "subject", json_stringn(ev->stream, ev->stream_len)) ||
        set_new(o, "time", json_stringn(tm, tl))) {
        json_decref(o);
        json_decref(data);
        json_decref(meta);
        return NULL;
    }
    if (set_new(o, "data", data)) {
        json_decref(o);
        json_decref(meta);
        return NULL;
    }
    if (set_new(o, "position", json_integer((json_int_t)ev->position)) ||
        set_new(o, "revision", json_integer((json_int_t)ev->revision))) {
        json_decref(o);
        json_decref(meta);
        return NULL;
    }
    if (set_new(o, "meta", meta)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ------------------------------------------------------------ input */

static void in_init(evl_json_in *in)
{
    memset(in, 0, sizeof *in);
    msgpack_sbuffer_init(&in->data);
    msgpack_sbuffer_init(&in->meta);
}

void evl_json_in_free(evl_json_in *in)
{
    if (!in)
        return;
    evl_free(in->stream);
    evl_free(in->type);
    msgpack_sbuffer_destroy(&in->data);
    msgpack_sbuffer_destroy(&in->meta);
    in_init(in);
}

/* A name with an embedded NUL would be silently cut short by every C
 * consumer, so it is refused rather than truncated. */
static char *dup_name(const json_t *s)
{
    size_t n = json_string_length(s);
    const char *v = json_string_value(s);
    if (memchr(v, '\0', n))
        return NULL;
    char *c = evl_malloc(n + 1);
    if (c) {
        memcpy(c, v, n);
        c[n] = '\0';
    }
    return c;
}

static int fail(const char **why, const char *msg, int rc)
{
    if (why)
        *why = msg;
    return rc;
}

int evl_json_parse_event(const json_t *obj, evl_json_in *in, const char **why)
{
    if (!in)
        return fail(why, "no output", EVL_EINVAL);
    in_init(in);
    if (why)
        *why = NULL;
    if (!obj || !json_is_object(obj))
        return fail(why, "an event must be a JSON object", EVL_EJSON);

    json_t *type = json_object_get(obj, "type");
    if (!type || !json_is_string(type))
        return fail(why, "\"type\" is missing or not a string", EVL_EJSON);
    if (memchr(json_string_value(type), '\0', json_string_length(type)))
        return fail(why, "\"type\" contains a NUL character", EVL_EJSON);
    if (!(in->type = dup_name(type)))
        return fail(why, "out of memory", EVL_ENOMEM);

    json_t *subject = json_object_get(obj, "subject");
    if (subject && !json_is_null(subject)) {
        if (!json_is_string(subject))
            return fail(why, "\"subject\" must be a string (the stream)", EVL_EJSON);
        if (memchr(json_string_value(subject), '\0', json_string_length(subject)))
            return fail(why, "\"subject\" contains a NUL character", EVL_EJSON);
        if (!(in->stream = dup_name(subject)))
            return fail(why, "out of memory", EVL_ENOMEM);
    }

    json_t *id = json_object_get(obj, "id");
    if (id && !json_is_null(id)) {
        if (!json_is_string(id) ||
            evl_uuid_parse(json_string_value(id), json_string_length(id), in->id) != EVL_OK)
            return fail(why, "\"id\" must be a UUID string", EVL_EID);
        in->has_id = 1;
    }

    int rc;
    /* Absent and null data both mean "no payload": CloudEvents allows events
     * without data, and the log stores that as an empty map. */
    json_t *data = json_object_get(obj, "data");
    if (data && !json_is_null(data)) {
        if (!json_is_object(data))
            return fail(why, "\"data\" must be a JSON object", EVL_EDATA);
        if ((rc = evl_json_to_msgpack(data, &in->data)) != EVL_OK)
            return fail(why,
                        rc == EVL_EDEPTH ? "\"data\" is nested deeper than 16 levels"
                                         : "out of memory",
                        rc);
    } else if (msgpack_sbuffer_write(&in->data, "\x80", 1) != 0) {
        return fail(why, "out of memory", EVL_ENOMEM);
    }

    json_t *meta = json_object_get(obj, "meta");
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta))
            return fail(why, "\"meta\" must be a JSON object", EVL_EMETA);
        if ((rc = evl_json_to_msgpack(meta, &in->meta)) != EVL_OK)
            return fail(why,
                        rc == EVL_EDEPTH ? "\"meta\" is nested deeper than 16 levels"
                                         : "out of memory",
                        rc);
    }
    return EVL_OK;
}

void evl_json_in_view(const evl_json_in *in, evl_event_in *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = in->type;
    ev->id = in->has_id ? in->id : NULL;
    ev->data = in->data.size ? in->data.data : NULL;
    ev->data_len = in->data.size;
    ev->meta = in->meta.size ? in->meta.data : NULL;
    ev->meta_len = in->meta.size;
}

int evl_json_parse_expected(const char *s, uint64_t *expected)
{
    if (!s || !expected || !*s)
        return EVL_EINVAL;
    if (!strcmp(s, "any")) {
        *expected = EVL_REV_ANY;
        return EVL_OK;
    }
    if (!strcmp(s, "no_stream")) {
        *expected = EVL_REV_NO_STREAM;
        return EVL_OK;
    }
    if (!strcmp(s, "exists")) {
        *expected = EVL_REV_EXISTS;
        return EVL_OK;
    }
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return EVL_EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return EVL_EINVAL;
        v = v * 10 + d;
    }
    /* The top three values are the words above; a number must not alias them. */
    if (v >= EVL_REV_EXISTS)
        return EVL_EINVAL;
    *expected = v;
    return EVL_OK;
}
