/* evlog over the network: evlogd (spawned per run, --no-builtin so no
 * projector competes for the CPU) and one keep-alive connection per client,
 * msgpack request bodies: POST /streams/{stream} with one event or an array,
 * Expected-Revision for optimistic concurrency.  Replay pages through
 * GET /events in msgpack, 10000 events a page. */
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmp.h"

typedef struct state {
    cmp_evlogd d;
    char data[4200];
    const char *sync;
} state;

static const char *dur_full(const cmp_env *env)
{
    (void)env;
    return "evlogd --sync full: fdatasync per group commit";
}
static const char *dur_none(const cmp_env *env)
{
    (void)env;
    return "evlogd --sync none: no fsync (flush every 100 ms)";
}

static int start_sync(cmp_run *r, const char *sync)
{
    state *s = calloc(1, sizeof *s);
    if (!s || cmp_mkdir(r) != 0) {
        free(s);
        cmp_err(r->err, "out of memory");
        return -1;
    }
    r->st = s;
    s->sync = sync;
    snprintf(s->data, sizeof s->data, "%s/data", r->dir);
    return cmp_evlogd_start(r->env, s->data, sync, &s->d, r->err);
}
static int start_full(cmp_run *r) { return start_sync(r, "full"); }
static int start_none(cmp_run *r) { return start_sync(r, "none"); }

typedef struct client {
    cmp_http h;
    msgpack_sbuffer sb;
} client;

static void disconnect(void *cl)
{
    client *c = cl;
    if (!c)
        return;
    cmp_http_close(&c->h);
    msgpack_sbuffer_destroy(&c->sb);
    free(c);
}

static void *connect_(cmp_run *r, int idx, char *err)
{
    (void)idx;
    client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    msgpack_sbuffer_init(&c->sb);
    if (cmp_http_open(&c->h, ((state *)r->st)->d.port, err) != 0) {
        msgpack_sbuffer_destroy(&c->sb);
        free(c);
        return NULL;
    }
    return c;
}

/* The last "KEY":N in a JSON text (the answers are jansson's compact form). */
static int json_last_u64(const char *s, const char *key, uint64_t *v)
{
    const char *hit = NULL;
    for (const char *p = s; (p = strstr(p, key)); p++)
        hit = p;
    if (!hit)
        return -1;
    hit += strlen(key);
    while (*hit == ' ' || *hit == ':')
        hit++;
    if (*hit < '0' || *hit > '9')
        return -1;
    *v = strtoull(hit, NULL, 10);
    return 0;
}

static void pack_event(msgpack_packer *pk, const cmp_ev *e)
{
    size_t tl = strlen(e->type);
    msgpack_pack_map(pk, 2);
    msgpack_pack_str_with_body(pk, "type", 4);
    msgpack_pack_str_with_body(pk, e->type, tl);
    msgpack_pack_str_with_body(pk, "data", 4);
    /* the generator's msgpack map, byte for byte */
    msgpack_sbuffer_write(pk->data, (const char *)e->data, e->len);
}

static int append(void *cl, const char *stream, const cmp_ev *evs, size_t n, uint64_t expected,
                  uint64_t *rev, char *err)
{
    client *c = cl;
    msgpack_sbuffer_clear(&c->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c->sb, msgpack_sbuffer_write);
    if (n > 1)
        msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++)
        pack_event(&pk, &evs[i]);
    char path[300], hdr[160];
    snprintf(path, sizeof path, "/streams/%s", stream);
    int hl = snprintf(hdr, sizeof hdr, "Content-Type: application/msgpack\r\n");
    if (expected != CMP_ANY)
        snprintf(hdr + hl, sizeof hdr - (size_t)hl, "Expected-Revision: %" PRIu64 "\r\n", expected);
    int st = cmp_http_do(&c->h, "POST", path, hdr, c->sb.data, c->sb.size, err);
    if (st == 201) {
        if (json_last_u64(c->h.buf, "\"revision\"", rev) != 0) {
            cmp_err(err, "201 without a revision: %.100s", c->h.buf);
            return CMP_FAIL;
        }
        return CMP_OK;
    }
    if (st == 409) {
        if (json_last_u64(c->h.buf, "\"current_revision\"", rev) != 0)
            *rev = CMP_ANY;
        return CMP_CONFLICT;
    }
    if (st > 0)
        cmp_err(err, "POST %s: %d %.120s", path, st, c->h.buf);
    return CMP_FAIL;
}

static int count(cmp_run *r, uint64_t *n)
{
    cmp_http h;
    if (cmp_http_open(&h, ((state *)r->st)->d.port, r->err) != 0)
        return -1;
    int st = cmp_http_do(&h, "GET", "/events?limit=1", NULL, NULL, 0, r->err);
    int rc = st == 200 && json_last_u64(h.buf, "\"head\"", n) == 0 ? 0 : -1;
    if (rc)
        cmp_err(r->err, "GET /events: %d", st);
    cmp_http_close(&h);
    return rc;
}

static void stop(cmp_run *r)
{
    state *s = r->st;
    if (s)
        cmp_evlogd_stop(&s->d);
    free(s);
    r->st = NULL;
    bench_rm_rf(r->dir);
}

/* evlogd's data dir is filled by the embedded loader while evlogd is down. */
static int load(cmp_run *r, uint64_t n, uint64_t seed)
{
    state *s = r->st;
    cmp_evlogd_stop(&s->d);
    if (cmp_evlog_load(s->data, n, seed, r->err) != 0)
        return -1;
    return cmp_evlogd_start(r->env, s->data, s->sync, &s->d, r->err);
}

/* Pages of 10000 (evlogd's largest) in msgpack; the client decodes each
 * page as a client library would (msgpack-c's unpacker). */
static int scan(cmp_run *r, uint64_t *n, uint64_t *bytes)
{
    cmp_http h;
    if (cmp_http_open(&h, ((state *)r->st)->d.port, r->err) != 0)
        return -1;
    uint64_t from = 1, k = 0, b = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = -1;
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/events?from=%" PRIu64 "&limit=10000", from);
        int st = cmp_http_do(&h, "GET", path, "Accept: application/msgpack\r\n", NULL, 0, r->err);
        if (st != 200) {
            cmp_err(r->err, "GET %s: %d", path, st);
            break;
        }
        b += h.len;
        size_t off = 0;
        if (msgpack_unpack_next(&u, h.buf, h.len, &off) != MSGPACK_UNPACK_SUCCESS ||
            u.data.type != MSGPACK_OBJECT_MAP) {
            cmp_err(r->err, "GET /events: not a msgpack map");
            break;
        }
        const msgpack_object_map *m = &u.data.via.map;
        int64_t next = -1;
        for (uint32_t i = 0; i < m->size; i++) {
            const msgpack_object *key = &m->ptr[i].key, *v = &m->ptr[i].val;
            if (key->type != MSGPACK_OBJECT_STR)
                continue;
            if (key->via.str.size == 6 && !memcmp(key->via.str.ptr, "events", 6) &&
                v->type == MSGPACK_OBJECT_ARRAY)
                k += v->via.array.size;
            else if (key->via.str.size == 9 && !memcmp(key->via.str.ptr, "next_from", 9) &&
                     v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                next = (int64_t)v->via.u64;
        }
        if (next < 0) {
            rc = 0;
            break;
        }
        from = (uint64_t)next;
    }
    msgpack_unpacked_destroy(&u);
    cmp_http_close(&h);
    *n = k;
    *bytes = b;
    return rc;
}

int cmp_http_feed(const cmp_env *env, cmp_feed *f);

const cmp_sys cmp_evlog_http = {
    .name = "evlog-http",
    .evlog = 1,
    .network = 1,
    .durability = dur_full,
    .start = start_full,
    .connect = connect_,
    .append = append,
    .disconnect = disconnect,
    .count = count,
    .stop = stop,
    .load = load,
    .scan = scan,
    .feed = cmp_http_feed,
};

const cmp_sys cmp_evlog_http_nosync = {
    .name = "evlog-http-nosync",
    .evlog = 1,
    .network = 1,
    .durability = dur_none,
    .start = start_none,
    .connect = connect_,
    .append = append,
    .disconnect = disconnect,
    .count = count,
    .stop = stop,
};
