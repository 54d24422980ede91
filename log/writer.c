/* Appends and group commit.
 *
 * DESIGN.  Appenders validate and pre-encode their batch in their own thread
 * (build_req), then queue it.  One writer thread takes everything queued (up
 * to max_group_events), checks each batch in turn (idempotency, expected
 * revisions, room in the LMDB map), encodes the accepted ones into one
 * journal frame and writes it.  The frame is synced (EVL_SYNC_FULL) and only
 * then are the appenders answered: by the syncer thread (sync.c) for a big
 * group, while this thread goes on with the next, or by this thread for a
 * small one.  The applier thread (apply.c) puts the frames into LMDB
 * afterwards, many per transaction, once they are durable; journal.c says
 * why.
 *
 * The checks see the batches before them: LMDB through a read transaction,
 * and the events journaled but not yet applied through the pending tables
 * (pend.c).  A refused batch writes nothing and its neighbours are
 * untouched; if the frame cannot be written the whole group is undone.
 *
 * A failed sync is never retried: the kernel may have dropped the dirty
 * pages already (fsyncgate), so a later "successful" fsync proves nothing.
 * The log turns read-only until it is reopened -- except for ENOSPC, which
 * leaves nothing acknowledged behind: the next frame overwrites the torn one.
 */
#include <errno.h>
#include <msgpack.h>
#include <semaphore.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#include "log/log_int.h"

typedef struct req_stream {
    const char *name;
    uint32_t len;
    uint64_t expected;
    size_t first, n;    /* its events: events[first .. first+n) */
} req_stream;

typedef struct req_event {
    uint32_t stream;
    int client_id;      /* the id came from the client: check it for idempotency */
    uint8_t id[16];
    const char *type;
    uint32_t type_len;
    const uint8_t *data, *meta;
    uint32_t data_len, meta_len;
} req_event;

struct evl_req {
    evl_req *next;
    size_t n_streams, n_events;
    req_stream *streams;
    req_event *events;
    evl_append_result res;
    evl_append_cb cb;   /* NULL: a synchronous appender waits on done */
    void *arg;
    sem_t done;
    evl_req *wake[2];   /* sync appenders this one wakes once woken (complete()) */
    size_t bytes;
};

static const uint8_t EMPTY_MAP = 0x80;

static int check_map(const void *p, size_t len, int not_map_err) {
    if (len == 0 || !((*(const uint8_t *)p >= 0x80 && *(const uint8_t *)p <= 0x8f) ||
                      *(const uint8_t *)p == 0xde || *(const uint8_t *)p == 0xdf)) {
        /* say "not a map" only for something that is valid msgpack */
        if (len && evl_mp_check(p, len, 64, 0, NULL) != EVL_OK) return EVL_EMSGPACK;
        return not_map_err;
    }
    int rc = evl_mp_check(p, len, EVL_MAX_DEPTH, EVL_MP_STRING_KEYS, NULL);
    if (rc == EVL_EMSGPACK && evl_mp_check(p, len, EVL_MAX_DEPTH, 0, NULL) == EVL_OK)
        return not_map_err; /* well-formed, but a key is not a string */
    return rc;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, 16); }
static int cmp_name(const void *a, const void *b) {
    const req_stream *x = *(req_stream *const *)a, *y = *(req_stream *const *)b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return memcmp(x->name, y->name, x->len);
}

static void free_req(evl_req *r) {
    if (!r) return;
    evl_free(r->res.acks);
    evl_free(r);
}

/* Validate a batch and lay it out in one allocation.  With @p copy the
 * names and payloads are copied in too (async: the caller's buffers may be
 * gone by the time the writer runs). */
static int build_req(evl_log *log, const evl_stream_in *in, size_t n_streams, int copy,
                     evl_append_result *res, evl_req **out) {
    size_t n_events = 0, arena = 0;
    int rc = EVL_OK;
    *out = NULL;
    memset(res, 0, sizeof *res);
    if (n_streams == 0) return res->err = EVL_EEMPTY;
    for (size_t s = 0; s < n_streams; s++) {
        res->stream_index = s;
        size_t len = in[s].stream ? strlen(in[s].stream) : 0;
        if (evl_name_check(in[s].stream, len)) return res->err = EVL_ESTREAM;
        if (in[s].n_events == 0 || !in[s].events) return res->err = EVL_EEMPTY;
        for (size_t e = 0; e < in[s].n_events; e++, n_events++) {
            const evl_event_in *ev = &in[s].events[e];
            res->event_index = n_events;
            size_t tlen = ev->type ? strlen(ev->type) : 0;
            if (evl_name_check(ev->type, tlen)) return res->err = EVL_ETYPE;
            if (ev->data && (rc = check_map(ev->data, ev->data_len, EVL_EDATA))) return res->err = rc;
            if (ev->meta && (rc = check_map(ev->meta, ev->meta_len, EVL_EMETA))) return res->err = rc;
            size_t sz = EVL_RECORD_OVERHEAD + len + tlen + (ev->data ? ev->data_len : 1) +
                        (ev->meta ? ev->meta_len : 1);
            if (sz > log->opt.max_event_size) return res->err = EVL_ETOOBIG;
            if (copy) arena += tlen + (ev->data ? ev->data_len : 0) + (ev->meta ? ev->meta_len : 0);
        }
        if (copy) arena += len;
    }
    res->stream_index = res->event_index = 0;
    size_t size = sizeof(evl_req) + n_streams * sizeof(req_stream) + n_events * sizeof(req_event) + arena;
    evl_req *r = evl_calloc(1, size);
    evl_ack *acks = evl_calloc(n_events, sizeof *acks);
    if (!r || !acks) {
        evl_free(r);
        evl_free(acks);
        return res->err = EVL_ENOMEM;
    }
    r->streams = (req_stream *)(r + 1);
    r->events = (req_event *)(r->streams + n_streams);
    char *a = (char *)(r->events + n_events);
    r->n_streams = n_streams;
    r->n_events = n_events;
    r->res.acks = acks;
    r->res.n_acks = n_events;
#define KEEP(dst, src, n) do { if (copy) { memcpy(a, src, n); dst = (void *)a; a += (n); } else dst = (void *)(src); } while (0)
    size_t k = 0;
    for (size_t s = 0; s < n_streams; s++) {
        req_stream *rs = &r->streams[s];
        rs->len = (uint32_t)strlen(in[s].stream);
        KEEP(rs->name, in[s].stream, rs->len);
        rs->expected = in[s].expected;
        rs->first = k;
        rs->n = in[s].n_events;
        for (size_t e = 0; e < in[s].n_events; e++, k++) {
            const evl_event_in *ev = &in[s].events[e];
            req_event *re = &r->events[k];
            re->stream = (uint32_t)s;
            if (ev->id) { memcpy(re->id, ev->id, 16); re->client_id = 1; }
            re->type_len = (uint32_t)strlen(ev->type);
            KEEP(re->type, ev->type, re->type_len);
            if (ev->data) { re->data_len = (uint32_t)ev->data_len; KEEP(re->data, ev->data, ev->data_len); }
            else { re->data = &EMPTY_MAP; re->data_len = 1; }
            if (ev->meta) { re->meta_len = (uint32_t)ev->meta_len; KEEP(re->meta, ev->meta, ev->meta_len); }
            else { re->meta = &EMPTY_MAP; re->meta_len = 1; }
            r->bytes += re->data_len + re->meta_len;
        }
    }
#undef KEEP
    /* generated ids: random bits from the log's pool, not a read each */
    uint8_t gen[32][16];
    size_t n_gen = sizeof gen / sizeof gen[0];
    for (size_t e = 0; e < n_events; e++) {
        req_event *re = &r->events[e];
        if (!re->client_id) {
            if (n_gen == sizeof gen / sizeof gen[0]) {
                size_t left = 0;
                for (size_t j = e; j < n_events && left < n_gen; j++) left += !r->events[j].client_id;
                evl__uuid_v7_pool(&log->rnd, gen + (n_gen - left), left);
                n_gen -= left;
            }
            memcpy(re->id, gen[n_gen++], 16);
            memcpy(re->id + 14, log->gen_mark, 2); /* see find_id() */
        }
        memcpy(acks[e].id, re->id, 16);
    }
    /* A stream listed twice would make "expected revision" ambiguous, and
     * one id twice would be half idempotent: refuse both up front. */
    if (n_streams > 1) {
        req_stream **idx = evl_malloc(n_streams * sizeof *idx);
        if (!idx) { rc = EVL_ENOMEM; goto fail; }
        for (size_t s = 0; s < n_streams; s++) idx[s] = &r->streams[s];
        qsort(idx, n_streams, sizeof *idx, cmp_name);
        for (size_t s = 1; s < n_streams && !rc; s++)
            if (cmp_name(&idx[s - 1], &idx[s]) == 0) {
                rc = EVL_EDUPSTREAM;
                res->stream_index = (size_t)(idx[s] - r->streams);
            }
        evl_free(idx);
        if (rc) goto fail;
    }
    size_t n_client = 0;
    for (size_t e = 0; e < n_events; e++) n_client += r->events[e].client_id;
    if (n_client > 1) {
        uint8_t(*ids)[16] = evl_malloc(n_client * 16);
        if (!ids) { rc = EVL_ENOMEM; goto fail; }
        size_t j = 0;
        for (size_t e = 0; e < n_events; e++)
            if (r->events[e].client_id) memcpy(ids[j++], r->events[e].id, 16);
        qsort(ids, n_client, 16, cmp_id);
        for (size_t i = 1; i < n_client && !rc; i++)
            if (memcmp(ids[i - 1], ids[i], 16) == 0) rc = EVL_EDUPID;
        evl_free(ids);
        if (rc) goto fail;
    }
    *out = r;
    return EVL_OK;
fail:
    free_req(r);
    return res->err = rc;
}

/* ------------------------------------------------------------ the writer */

/* A pending-table slot as it was before the group changed it, so a group
 * whose frame cannot be written leaves the tables as they were. */
typedef struct undo {
    evl_pmap *map;
    int had;
    evl_pent old; /* had: the entry to put back; else: the key to delete */
} undo;

typedef struct group_ctx {
    MDB_cursor *c_streams;  /* on log->rtxn */
    msgpack_sbuffer rec;
    evl_jbatch *b;
    int64_t time_ns;
    undo *undo;
    size_t n_undo, cap_undo;
    uint64_t need, room;    /* LMDB map bytes: reserved by this group, free for it */
    /* The group as written: its frame's last position (0: none), file and
     * offset, when its write began; and (EVL_SYNC_FULL) what goes to the
     * syncer, allocated before anything is written. */
    uint64_t last, off;
    int file;
    int64_t t0;
    evl_wgroup *wg;
    size_t wg_cap;
} group_ctx;

/* Where a group or a batch started: rollback() returns there. */
typedef struct mark {
    size_t len, side_len, n_undo;
    uint32_t n;
    uint64_t next_pos, need;
    uint8_t chain[EVL_CHAIN_LEN];
} mark;

static void set_mark(evl_log *log, group_ctx *g, mark *m) {
    m->len = g->b->len;
    m->side_len = g->b->side_len;
    m->n = g->b->n;
    m->n_undo = g->n_undo;
    m->next_pos = log->next_pos;
    m->need = g->need;
    memcpy(m->chain, log->chain, EVL_CHAIN_LEN);
}

static void rollback(evl_log *log, group_ctx *g, const mark *m) {
    while (g->n_undo > m->n_undo) {
        undo *u = &g->undo[--g->n_undo];
        if (u->had) {
            evl__pend_put(u->map, &u->old); /* the slot exists: no allocation */
        } else {
            evl_pent *e = evl__pend_get(u->map, u->old.key, u->old.len, u->old.hash);
            if (e) evl__pend_del_entry(u->map, e);
        }
    }
    g->b->len = m->len;
    g->b->side_len = m->side_len;
    g->b->n = m->n;
    g->need = m->need;
    log->next_pos = m->next_pos;
    memcpy(log->chain, m->chain, EVL_CHAIN_LEN);
}

/* Put @p e in @p map, remembering what it replaced. */
static int pend_set(group_ctx *g, evl_pmap *map, const evl_pent *e) {
    if (g->n_undo == g->cap_undo) {
        size_t cap = g->cap_undo ? 2 * g->cap_undo : 256;
        undo *nu = evl_realloc(g->undo, cap * sizeof *nu);
        if (!nu) return EVL_ENOMEM;
        g->undo = nu;
        g->cap_undo = cap;
    }
    undo *u = &g->undo[g->n_undo];
    evl_pent *old = evl__pend_get(map, e->key, e->len, e->hash);
    u->map = map;
    u->had = old != NULL;
    u->old = old ? *old : *e;
    if (evl__pend_put(map, e)) return EVL_ENOMEM;
    g->n_undo++;
    return EVL_OK;
}

/* Is the stream's current state compatible with the expectation? */
static int expectation_ok(uint64_t expected, int exists, uint64_t cur) {
    if (expected == EVL_REV_ANY) return 1;
    if (expected == EVL_REV_NO_STREAM) return !exists;
    if (expected == EVL_REV_EXISTS) return exists;
    return exists && cur == expected;
}

/* The stream's head: journaled events first, then LMDB. */
static int stream_head(evl_log *log, group_ctx *g, const char *name, uint32_t len, uint64_t *rev) {
    evl_pent *e = evl__pend_get(&log->pm_streams, name, len, evl__pend_hash(name, len));
    if (e) {
        *rev = e->rev;
        return EVL_OK;
    }
    return evl__stream_head(g->c_streams, name, len, rev, NULL);
}

/* A generated id among the batches not yet in LMDB (@p cur: the group
 * being built): 1 with its position and record, or 0. */
static int find_generated(evl_log *log, const evl_jbatch *cur, const uint8_t id[16], uint64_t *pos,
                          const uint8_t **rec, size_t *len) {
    for (const evl_jbatch *b = log->jb_first ? log->jb_first : cur; b;
         b = b == log->jb_last || b == cur ? (b == cur ? NULL : cur) : b->next) {
        const uint8_t *side = b->side;
        for (uint32_t k = 0; k < b->n; k++, side += EVL_SIDE_HDR + side[17]) {
            if (!(side[16] & SIDE_GENERATED) || memcmp(side, id, 16)) continue;
            const uint8_t *p = b->buf + EVL_JNL_HDR;
            for (uint32_t j = 0; j < k; j++) p += 4 + evl__get_be32(p);
            *pos = b->first + k;
            *rec = p + 4;
            *len = evl__get_be32(p);
            return 1;
        }
    }
    return 0;
}

/* Where an event id already is: 1 with its position and record, 0 if new,
 * or -(error).
 *
 * WHY generated ids are not in pm_ids: only a client's id is ever looked
 * up, and a client id equals a generated one only if the client copied it
 * from the log.  Keeping every generated id of the last 64 MiB of groups in
 * a table cost three random memory accesses per event (about 10% of the
 * batch workload's throughput).  Instead every id generated since this
 * open carries log->gen_mark in its last two bytes: a client id without it
 * cannot be a pending generated one, and one with it (a copy, or 1 in 65536
 * of other clients' random ids) is looked for in the pending batches. */
static int find_id(evl_log *log, const evl_jbatch *cur, const uint8_t id[16], uint64_t *pos,
                   const uint8_t **rec, size_t *len) {
    evl_pent *e = evl__pend_get(&log->pm_ids, id, 16, evl__pend_hash(id, 16));
    if (e) {
        *pos = e->pos;
        *rec = e->rec;
        *len = e->rlen;
        return 1;
    }
    if (!memcmp(id + 14, log->gen_mark, 2) && find_generated(log, cur, id, pos, rec, len)) return 1;
    MDB_val k = {16, (void *)id}, v;
    int mrc = mdb_get(log->rtxn, log->db_ids, &k, &v);
    if (mrc == MDB_NOTFOUND) return 0;
    if (mrc) return -evl__lmdb_err(mrc);
    *pos = evl__get_be64(v.mv_data);
    uint8_t key[8];
    evl__put_be64(key, *pos);
    MDB_val pk = {8, key};
    if ((mrc = mdb_get(log->rtxn, log->db_events, &pk, &v))) return -EVL_ECORRUPT;
    *rec = v.mv_data;
    *len = v.mv_size;
    return 1;
}

/* All ids already in the log: answer with the originals. */
static int answer_idempotent(evl_req *r, const uint8_t *const *recs, const size_t *lens) {
    for (size_t e = 0; e < r->n_events; e++) {
        req_event *re = &r->events[e];
        evl_event ev;
        if (evl_log_decode(recs[e], lens[e], &ev)) return EVL_ECORRUPT;
        const req_stream *rs = &r->streams[re->stream];
        /* A repeat is the same event sent again (a retry after a lost
         * answer), so everything the client chose must match the record:
         * the same id with another payload is a client bug or a clash, and
         * answering it with the original positions would make the client
         * believe its different data was stored. */
        if (ev.stream_len != rs->len || memcmp(ev.stream, rs->name, rs->len) ||
            ev.type_len != re->type_len || memcmp(ev.type, re->type, re->type_len) ||
            !evl_mp_equal(ev.data, ev.data_len, re->data, re->data_len) ||
            !evl_mp_equal(ev.meta, ev.meta_len, re->meta, re->meta_len)) {
            r->res.event_index = e;
            return EVL_EIDREUSE;
        }
        r->res.acks[e].position = ev.position;
        r->res.acks[e].revision = ev.revision;
    }
    r->res.idempotent = 1;
    return EVL_OK;
}

/* LMDB map bytes an event may take once applied: the record (on overflow
 * pages when large) and its index entries, with room for half-full pages.
 * An estimate that errs high: the exact answer exists only in a commit. */
static uint64_t map_need(const evl_log *log, size_t rec_bytes) {
    uint64_t ps = log->psize;
    if (rec_bytes + 16 > ps / 2) return (rec_bytes + 16 + ps - 1) / ps * ps + 1024;
    return 2 * ((uint64_t)rec_bytes + 160);
}

/* Checks that decide whether the batch is accepted.  Writes nothing. */
static int check_req(evl_log *log, group_ctx *g, evl_req *r, uint64_t *cur, int *exists) {
    size_t seen = 0;
    const uint8_t **recs = NULL;
    size_t *lens = NULL;
    int rc = EVL_OK;
    for (size_t e = 0; e < r->n_events && rc == EVL_OK; e++) {
        if (!r->events[e].client_id) continue;
        uint64_t pos = 0;
        const uint8_t *rec = NULL;
        size_t len = 0;
        int f = find_id(log, g->b, r->events[e].id, &pos, &rec, &len);
        if (f < 0) rc = -f;
        if (f <= 0) continue;
        if (!recs && (!(recs = evl_calloc(r->n_events, sizeof *recs)) ||
                      !(lens = evl_calloc(r->n_events, sizeof *lens)))) {
            rc = EVL_ENOMEM;
            continue;
        }
        recs[e] = rec;
        lens[e] = len;
        seen++;
    }
    if (rc == EVL_OK && seen)
        rc = seen == r->n_events ? answer_idempotent(r, recs, lens) : EVL_EIDMIX;
    evl_free(recs);
    evl_free(lens);
    if (rc || seen) return rc == EVL_OK ? -1 : rc; /* -1: accepted, nothing to write */
    for (size_t s = 0; s < r->n_streams; s++) {
        req_stream *rs = &r->streams[s];
        int hrc = stream_head(log, g, rs->name, rs->len, &cur[s]);
        if (hrc && hrc != EVL_ENOTFOUND) return hrc;
        exists[s] = hrc == EVL_OK;
        if (!exists[s]) cur[s] = 0;
        if (!expectation_ok(rs->expected, exists[s], cur[s])) {
            r->res.stream_index = s;
            r->res.current_revision = exists[s] ? cur[s] : EVL_REV_NONE;
            return EVL_ECONFLICT;
        }
    }
    uint64_t need = 0;
    for (size_t e = 0; e < r->n_events; e++) {
        const req_event *re = &r->events[e];
        need += map_need(log, EVL_RECORD_OVERHEAD + r->streams[re->stream].len + re->type_len +
                                  re->data_len + re->meta_len);
    }
    if (g->need + need > g->room) return EVL_EFULL;
    g->need += need;
    return EVL_OK;
}

/* Encode an accepted batch into the group's frame and record its events in
 * the pending tables.  The frame was sized for the whole group up front, so
 * nothing here moves bytes the tables point at. */
static int write_req(evl_log *log, group_ctx *g, evl_req *r, uint64_t *cur, int *exists) {
    evl_jbatch *b = g->b;
    for (size_t s = 0; s < r->n_streams; s++) {
        req_stream *rs = &r->streams[s];
        uint64_t rev = exists[s] ? cur[s] + 1 : 0;
        for (size_t e = rs->first; e < rs->first + rs->n; e++, rev++) {
            req_event *re = &r->events[e];
            uint64_t pos = log->next_pos++;
            int rc = evl__fmt_encode(&g->rec, log->hasher, log->chain, log->chain, pos, rs->name,
                                     rs->len, rev, re->id, re->type, re->type_len, g->time_ns,
                                     re->data, re->data_len, re->meta, re->meta_len);
            if (rc) return rc;
            evl_assert(b->len + 4 + g->rec.size <= b->cap);
            uint8_t *rec = b->buf + b->len + 4;
            evl__put_be32(rec - 4, (uint32_t)g->rec.size);
            memcpy(rec, g->rec.data, g->rec.size);
            b->len += 4 + g->rec.size;
            b->n++;
            uint8_t *side = b->side + b->side_len;
            memcpy(side, re->id, 16);
            side[16] = re->client_id ? 0 : SIDE_GENERATED;
            side[17] = (uint8_t)rs->len;
            memcpy(side + EVL_SIDE_HDR, rs->name, rs->len);
            b->side_len += EVL_SIDE_HDR + rs->len;
            evl_pent ie = {evl__pend_hash(side, 16), side, 16, pos, rev, rec, (uint32_t)g->rec.size};
            evl_pent se = {evl__pend_hash(rs->name, rs->len), side + EVL_SIDE_HDR, rs->len, pos, rev, NULL, 0};
            if (re->client_id && (rc = pend_set(g, &log->pm_ids, &ie))) return rc;
            if ((rc = pend_set(g, &log->pm_streams, &se))) return rc;
            r->res.acks[e].position = pos;
            r->res.acks[e].revision = rev;
        }
    }
    return EVL_OK;
}

/* Check and write one batch; a refused batch gets its error in r->res.err
 * and leaves the group as it was. */
static void apply_req(evl_log *log, group_ctx *g, evl_req *r) {
    uint64_t cur_small[8];
    int exists_small[8];
    uint64_t *cur = cur_small;
    int *exists = exists_small;
    int rc;
    if (r->n_streams > 8) {
        cur = evl_malloc(r->n_streams * sizeof *cur);
        exists = evl_malloc(r->n_streams * sizeof *exists);
        if (!cur || !exists) { r->res.err = EVL_ENOMEM; goto out; }
    }
    mark m;
    set_mark(log, g, &m);
    rc = check_req(log, g, r, cur, exists);
    if (rc == -1) { r->res.err = EVL_OK; goto out; }
    if (rc == EVL_OK && (rc = write_req(log, g, r, cur, exists))) rollback(log, g, &m);
    if (rc == EVL_ECONFLICT) atomic_fetch_add(&log->n_conflicts, 1);
    r->res.err = rc;
out:
    if (cur != cur_small) { evl_free(cur); evl_free(exists); }
}

static int64_t commit_time(evl_log *log) {
    int64_t now = evl__now_ns();
    return now > log->last_time ? now : log->last_time;
}

int evl__low_space(evl_log *log) {
    struct statvfs vs;
    if (statvfs(log->dir, &vs) != 0) return 0;
    return (uint64_t)vs.f_bavail * vs.f_frsize < EVL_LOW_SPACE_BYTES;
}

/* Free the frames LMDB holds, and forget their pending entries (LMDB
 * answers for them now; an entry a later event replaced stays). */
static void reclaim(evl_log *log) {
    uint64_t head = atomic_load(&log->head);
    for (;;) {
        pthread_mutex_lock(&log->mu);
        evl_jbatch *b = log->jb_first;
        if (b && b->last <= head) {
            log->jb_first = b->next;
            if (!log->jb_first) log->jb_last = NULL;
        } else {
            b = NULL;
        }
        pthread_mutex_unlock(&log->mu);
        if (!b) return;
        const uint8_t *side = b->side;
        for (uint64_t pos = b->first; pos <= b->last; pos++) {
            const uint8_t *name = side + EVL_SIDE_HDR;
            if (!(side[16] & SIDE_GENERATED)) evl__pend_del(&log->pm_ids, side, 16, evl__pend_hash(side, 16), pos);
            evl__pend_del(&log->pm_streams, name, side[17], evl__pend_hash(name, side[17]), pos);
            side = name + side[17];
        }
        log->pend_bytes -= b->cap;
        log->pend_need -= b->need;
        evl_free(b);
    }
}

/* Why the writer cannot take appends now, or 0. */
static int refusal(evl_log *log) {
    pthread_mutex_lock(&log->mu);
    if (log->apply_err && !log->ro_error && !log->a_dead && log->applier_started) {
        /* the disk may have room again: ask the applier to try now rather
         * than on its clock, and refuse only if that attempt failed too */
        uint64_t tries = log->a_tries;
        log->a_kick = 1;
        pthread_cond_signal(&log->apply_cv);
        while (log->apply_err && log->a_tries == tries && !log->ro_error && !log->a_dead && !log->a_stop)
            pthread_cond_wait(&log->head_cv, &log->mu);
    }
    int err = log->ro_error ? EVL_EREADONLY : log->apply_err;
    pthread_mutex_unlock(&log->mu);
    return err;
}

/* Wait until the applier has caught up with @p pos (0: everything
 * journaled); the error that stops it, if any. */
static int wait_applied(evl_log *log, uint64_t pos) {
    int err;
    pthread_mutex_lock(&log->mu);
    if (!pos) pos = atomic_load(&log->durable);
    if (atomic_load(&log->head) < pos) {
        log->a_kick = 1; /* no lingering (apply.c): this thread waits */
        pthread_cond_signal(&log->apply_cv);
    }
    while (atomic_load(&log->head) < pos && !log->ro_error && !log->apply_err)
        pthread_cond_wait(&log->head_cv, &log->mu);
    err = log->ro_error ? EVL_EREADONLY : log->apply_err;
    pthread_mutex_unlock(&log->mu);
    return err;
}

/* Free LMDB map bytes for this group: map size less the pages in use less
 * what the frames not yet applied will take. */
static uint64_t map_room(evl_log *log) {
    MDB_envinfo ei;
    mdb_env_info(log->env, &ei);
    uint64_t used = ((uint64_t)ei.me_last_pgno + 1) * log->psize + log->pend_need + EVL_MAP_SLACK_PAGES * log->psize;
    return ei.me_mapsize > used ? ei.me_mapsize - used : 0;
}

/* Write the frame at the end of the current file; past the lap size, at
 * the start of the other file once LMDB holds every frame in that one.
 * WHY two files: with one, the writer had to wait at each lap until the
 * applier had put everything in LMDB: under a steady load of batches it
 * stopped every 4 MiB for 10-50 ms, and the writer and the applier took
 * turns instead of working side by side (batches of 100 over HTTP: 180-200k
 * events/s; two files of 16 MiB: 205-270k).  The other file was written a
 * lap ago; when the applier is a whole lap behind, the writer waits for
 * that lap only. */
static int journal(evl_log *log, evl_jbatch *b, group_ctx *g) {
    /* back to the start as soon as LMDB holds everything written (the
     * journal then stays small where appends come in bursts) */
    if (log->joff >= EVL_JNL_EARLY_WRAP && atomic_load(&log->head) == b->first - 1) log->joff = 0;
    if (log->joff && log->joff + b->len > log->opt.journal_lap) {
        int other = !log->jcur;
        if (atomic_load(&log->head) < log->jlast[other]) {
            int err = wait_applied(log, log->jlast[other]);
            if (err) return err;
        }
        log->jcur = other;
        log->joff = 0;
    }
    evl__jnl_seal(b, log->jepoch);
    g->t0 = evl__mono_ns();
    g->file = log->jcur;
    g->off = log->joff;
    /* the sync is the syncer's (sync.c); EVL_SYNC_NONE leaves it to the OS */
    int rc = evl__jnl_write(log, b, 0);
    if (rc == EVL_OK) {
        log->joff += b->len;
        log->jlast[log->jcur] = b->last;
        return EVL_OK;
    }
    evl__commit_timed(log, g->t0);
    if (rc == EVL_ESYS(ENOSPC) || rc == EVL_ESYS(EDQUOT) || (rc == EVL_ESYS(EIO) && evl__low_space(log)))
        return EVL_EFULL; /* nothing was acknowledged: the next frame overwrites this one */
    pthread_mutex_lock(&log->mu);
    if (!log->ro_error) log->ro_error = rc;
    pthread_cond_broadcast(&log->head_cv);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

void evl__commit_timed(evl_log *log, int64_t t0) {
    uint64_t us = (uint64_t)(evl__mono_ns() - t0) / 1000;
    static const uint64_t bounds[EVL_COMMIT_BUCKETS] = EVL_COMMIT_BOUNDS_US;
    int bk = 0;
    while (bk < EVL_COMMIT_BUCKETS && us > bounds[bk]) bk++;
    atomic_fetch_add(&log->commit_us[bk], 1);
    atomic_fetch_add(&log->commit_us_sum, us);
    atomic_fetch_add(&log->n_groups, 1);
}

/* Check and journal a group; every req gets its result in res.err. */
static void process_group(evl_log *log, evl_req **reqs, size_t n, group_ctx *g) {
    int err = refusal(log);
    reclaim(log);
    /* the applier is behind by more than the limit: let it catch up */
    if (!err && log->pend_bytes > EVL_PENDING_MAX_BYTES) err = wait_applied(log, 0);
    if (!err) reclaim(log);
    size_t cap = EVL_JNL_HDR, side = 0;
    for (size_t i = 0; i < n && !err; i++)
        for (size_t e = 0; e < reqs[i]->n_events; e++) {
            const req_event *re = &reqs[i]->events[e];
            size_t slen = reqs[i]->streams[re->stream].len;
            cap += 4 + EVL_RECORD_OVERHEAD + slen + re->type_len + re->data_len + re->meta_len;
            side += EVL_SIDE_HDR + slen;
        }
    g->last = 0;
    if (!err && log->opt.sync == EVL_SYNC_FULL && g->wg_cap < n) {
        evl_free(g->wg);
        g->wg_cap = 0;
        if (!(g->wg = evl_malloc(sizeof *g->wg + n * sizeof g->wg->reqs[0]))) err = EVL_ENOMEM;
        else g->wg_cap = n;
    }
    evl_jbatch *b = err ? NULL : evl_malloc(sizeof *b + cap + side);
    if (!b && !err) err = EVL_ENOMEM;
    if (err) {
        for (size_t i = 0; i < n; i++) reqs[i]->res.err = err;
        return;
    }
    memset(b, 0, sizeof *b);
    b->buf = (uint8_t *)(b + 1);
    b->side = b->buf + cap;
    b->cap = sizeof *b + cap + side;
    b->len = EVL_JNL_HDR;
    b->first = log->next_pos;
    g->b = b;
    g->n_undo = 0;
    g->time_ns = commit_time(log);
    g->need = EVL_GROUP_SLACK_PAGES * log->psize;
    g->room = map_room(log);
    /* a read transaction per group, not one kept reset between groups: an
     * idle slot held for the process's life would be wiped by anything
     * that opens the environment a second time in this process */
    int rc = evl__lmdb_err(mdb_txn_begin(log->env, NULL, MDB_RDONLY, &log->rtxn));
    if (rc == EVL_OK && (rc = evl__lmdb_err(mdb_cursor_open(log->rtxn, log->db_streams, &g->c_streams)))) {
        mdb_txn_abort(log->rtxn);
        log->rtxn = NULL;
    }
    mark start;
    set_mark(log, g, &start);
    for (size_t i = 0; i < n; i++) {
        if (rc) reqs[i]->res.err = rc;
        else apply_req(log, g, reqs[i]);
    }
    if (log->rtxn) {
        mdb_cursor_close(g->c_streams);
        mdb_txn_abort(log->rtxn);
        log->rtxn = NULL;
    }
    if (b->n == 0) { /* every batch refused or a repeat */
        evl_free(b);
        return;
    }
    b->last = log->next_pos - 1;
    b->need = g->need;
    if ((rc = journal(log, b, g))) {
        rollback(log, g, &start);
        evl_free(b);
        for (size_t i = 0; i < n; i++)
            if (reqs[i]->res.err == EVL_OK && !reqs[i]->res.idempotent) reqs[i]->res.err = rc;
        return;
    }
    log->last_time = g->time_ns;
    log->pend_bytes += b->cap;
    log->pend_need += b->need;
    pthread_mutex_lock(&log->mu);
    if (log->jb_last) log->jb_last->next = b;
    else log->jb_first = b;
    log->jb_last = b;
    if (!log->jb_apply) log->jb_apply = b;
    if (log->opt.sync == EVL_SYNC_NONE) {
        atomic_store(&log->durable, b->last);
        pthread_cond_signal(&log->apply_cv);
    }
    pthread_mutex_unlock(&log->mu);
    g->last = b->last;
    if (log->opt.sync == EVL_SYNC_NONE) evl__commit_timed(log, g->t0);
}

/* Answer the group: in EVL_SYNC_FULL once its frame and every one before
 * it is durable.  The syncer takes a big group and this thread goes on
 * with the next one meanwhile; a small one this thread syncs itself, once
 * the syncer is idle (sync.c says why). */
static void hand_off(evl_log *log, evl_req **reqs, size_t n, size_t events, group_ctx *g) {
    if (!g->wg || g->wg_cap < n || log->opt.sync != EVL_SYNC_FULL) {
        evl__complete(log, reqs, n, EVL_OK); /* nothing written, or nothing to sync */
        return;
    }
    evl_wgroup *w = g->wg;
    g->wg = NULL;
    g->wg_cap = 0;
    w->next = NULL;
    w->last = g->last;
    w->file = g->file;
    w->off = g->off;
    w->t0 = g->t0;
    w->n = n;
    memcpy(w->reqs, reqs, n * sizeof *reqs);
    pthread_mutex_lock(&log->mu);
    int idle = evl__sync_idle(log);
    pthread_mutex_unlock(&log->mu);
    if (idle && events < EVL_PIPE_MIN_EVENTS) evl__sync_run(log, w);
    else evl__sync_submit(log, w);
}

/* The commit watchers: called from this thread once the applier has
 * published a new head (see apply.c for why not from the applier). */
static void notify(evl_log *log, uint64_t head) {
    pthread_mutex_lock(&log->watch_mu);
    for (evl_watcher *w = log->watchers; w; w = w->next) w->cb(w->arg, head);
    pthread_mutex_unlock(&log->watch_mu);
}

/* Answer every req: async ones by callback, sync ones through their own
 * semaphore (waking exactly the appenders that are done, not all of them). */
void evl__complete(evl_log *log, evl_req **reqs, size_t n, int fail) {
    for (size_t i = 0; i < n; i++) {
        evl_req *r = reqs[i];
        if (fail && r->res.err == EVL_OK) {
            r->res.err = fail;
            r->res.idempotent = 0;
        }
        if (r->res.err == EVL_OK && !r->res.idempotent) {
            atomic_fetch_add(&log->n_appends, 1);
            atomic_fetch_add(&log->n_events, r->n_events);
            atomic_fetch_add(&log->n_bytes, r->bytes);
        }
    }
    /* Synchronous appenders wake each other in a binary tree: the writer
     * posts the first, each woken appender posts the next two (see
     * evl_log_append).  A futex wake costs microseconds, and fifty of them
     * in a row on this thread would delay the next group by that much. */
    evl_req *first = NULL, **tree = NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        evl_req *r = reqs[i];
        if (r->cb) {
            r->cb(r->arg, &r->res);
            free_req(r);
            continue;
        }
        r->wake[0] = r->wake[1] = NULL;
        reqs[m++] = r; /* the sync ones, in order, over the slots already read */
    }
    tree = reqs;
    for (size_t i = 0; i < m; i++) {
        if (2 * i + 1 < m) tree[i]->wake[0] = tree[2 * i + 1];
        if (2 * i + 2 < m) tree[i]->wake[1] = tree[2 * i + 2];
    }
    if (m) first = tree[0];
    if (first) sem_post(&first->done); /* the appenders free their reqs: none is touched after this */
}

/* A reader process that dies inside a read transaction (kill -9 of an
 * `evlog read`, an OOM kill) leaves its LMDB reader slot behind, and the
 * snapshot that slot names keeps every page freed since from being reused:
 * data.mdb would grow for as long as the writer runs.  LMDB frees such slots
 * only when asked (mdb_reader_check, at open and here): at most once a
 * second, it is one F_GETLK per foreign slot. */
#define READER_CHECK_NS 1000000000LL

static void check_readers(evl_log *log) {
    int64_t now = evl__mono_ns();
    if (now < log->next_reader_check) return;
    log->next_reader_check = now + READER_CHECK_NS;
    int dead = 0;
    if (mdb_reader_check(log->env, &dead) == 0 && dead > 0)
        atomic_fetch_add(&log->n_stale_readers, (uint64_t)dead);
}

static void *writer_main(void *arg) {
    evl_log *log = arg;
    /* Every appender waits for this one thread: when it wakes a group of
     * appenders it must not then queue behind them for a CPU.  Raising its
     * priority needs CAP_SYS_NICE; without it we simply run at the default. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -10);
    pthread_setname_np(pthread_self(), "evl-writer"); /* for top -H and perf --comm */
    group_ctx g = {0};
    msgpack_sbuffer_init(&g.rec);
    size_t cap = 64;
    evl_req **reqs = evl_malloc(cap * sizeof *reqs);
    evl_assert(reqs);
    uint64_t notified = atomic_load(&log->head);
    pthread_mutex_lock(&log->mu);
    for (;;) {
        uint64_t head = atomic_load(&log->head);
        if (head > notified || (log->jb_first && log->jb_first->last <= head)) {
            pthread_mutex_unlock(&log->mu);
            if (head > notified) notify(log, head);
            notified = head;
            reclaim(log);
            pthread_mutex_lock(&log->mu);
            continue;
        }
        if (!log->q_head && !log->stopping) {
            pthread_cond_wait(&log->queue_cv, &log->mu);
            continue;
        }
        if (!log->q_head) break; /* stopping, queue drained */
        /* While a sync is under way, a few appends wait for more to join
         * them rather than pay a frame, a write and a read transaction each
         * (a sync ends in a burst of answers and so of appends). */
        if (!log->stopping && !evl__sync_idle(log) && log->q_events < EVL_PIPE_MIN_EVENTS) {
            pthread_cond_wait(&log->queue_cv, &log->mu);
            continue;
        }
        size_t n = 0, events = 0;
        while (log->q_head && (n == 0 || events + log->q_head->n_events <= log->opt.max_group_events)) {
            if (n == cap) {
                evl_req **bigger = evl_realloc(reqs, 2 * cap * sizeof *reqs);
                if (!bigger) break;
                reqs = bigger;
                cap *= 2;
            }
            evl_req *r = log->q_head;
            log->q_head = r->next;
            reqs[n++] = r;
            events += r->n_events;
        }
        if (!log->q_head) log->q_tail = NULL;
        log->q_events -= events;
        pthread_mutex_unlock(&log->mu);
        check_readers(log);
        process_group(log, reqs, n, &g);
        /* readers see the events once the applier has put them in LMDB */
        hand_off(log, reqs, n, events, &g);
        pthread_mutex_lock(&log->mu);
    }
    pthread_mutex_unlock(&log->mu);
    evl_free(g.undo);
    evl_free(g.wg);
    evl_free(reqs);
    msgpack_sbuffer_destroy(&g.rec);
    return NULL;
}

int evl__writer_start(evl_log *log) {
    uint8_t u[16];
    evl_uuid_v7(u); /* its last bytes are random */
    memcpy(log->gen_mark, u + 14, 2);
    int rc = evl__sha256_new(&log->hasher);
    if (rc) return rc; /* evl_log_close() frees what was made */
    /* the journal's tail first: the chain and the clock resume after it */
    rc = evl__jnl_recover(log);
    evl__applier_free(log); /* a whole journal's groups: the applier's own are smaller */
    if (rc || (rc = evl__chain_load(log)) || (rc = evl__jnl_open(log))) return rc;
    if ((rc = evl__applier_start(log))) return rc;
    if (log->opt.sync == EVL_SYNC_FULL && (rc = evl__syncer_start(log))) return rc;
    int e = pthread_create(&log->writer, NULL, writer_main, log);
    if (e) return EVL_ESYS(e);
    log->writer_started = 1;
    return EVL_OK;
}

void evl__writer_stop(evl_log *log) {
    if (log->writer_started) {
        pthread_mutex_lock(&log->mu);
        log->stopping = 1;
        pthread_cond_broadcast(&log->queue_cv);
        pthread_cond_broadcast(&log->head_cv);
        pthread_mutex_unlock(&log->mu);
        pthread_join(log->writer, NULL);
        log->writer_started = 0;
    }
    evl__syncer_stop(log); /* answers what the writer left it */
    /* then the applier empties the queue (or gives up on a full disk: the
     * journal keeps the rest for the next open) */
    if (log->applier_started) evl__applier_stop(log);
    while (log->jb_first) {
        evl_jbatch *b = log->jb_first;
        log->jb_first = b->next;
        evl_free(b);
    }
    log->jb_last = log->jb_apply = NULL;
    evl__pend_free(&log->pm_ids);
    evl__pend_free(&log->pm_streams);
    for (int i = 0; i < EVL_JNL_FILES; i++) {
        if (log->jfd[i] >= 0) {
            if (log->opt.sync == EVL_SYNC_NONE) (void)fdatasync(log->jfd[i]);
            close(log->jfd[i]);
        }
        log->jfd[i] = -1;
    }
}

/* Queue r; fails when the log is closing or read-only. */
static int enqueue(evl_log *log, evl_req *r) {
    pthread_mutex_lock(&log->mu);
    int rc = log->stopping ? EVL_ECLOSED : log->ro_error ? EVL_EREADONLY : EVL_OK;
    if (!rc) {
        r->next = NULL;
        if (log->q_tail) log->q_tail->next = r;
        else log->q_head = r;
        log->q_tail = r;
        log->q_events += r->n_events;
        pthread_cond_signal(&log->queue_cv);
    }
    pthread_mutex_unlock(&log->mu);
    return rc;
}

int evl_log_append(evl_log *log, const evl_stream_in *streams, size_t n_streams,
                   evl_append_result *res) {
    evl_req *r;
    if (log->opt.read_only) {
        memset(res, 0, sizeof *res);
        return res->err = EVL_ERDONLY;
    }
    int rc = build_req(log, streams, n_streams, 0, res, &r);
    if (rc) return rc;
    sem_init(&r->done, 0, 0);
    if ((rc = enqueue(log, r))) {
        sem_destroy(&r->done);
        free_req(r);
        return res->err = rc;
    }
    while (sem_wait(&r->done) != 0) {} /* EINTR */
    for (int i = 0; i < 2; i++) /* pass the wake-up on (complete()) */
        if (r->wake[i]) sem_post(&r->wake[i]->done);
    sem_destroy(&r->done);
    *res = r->res;
    r->res.acks = NULL; /* handed to the caller */
    free_req(r);
    return res->err;
}

int evl_log_append_async(evl_log *log, const evl_stream_in *streams, size_t n_streams,
                         evl_append_cb cb, void *arg) {
    evl_req *r;
    evl_append_result res;
    if (log->opt.read_only) return EVL_ERDONLY;
    int rc = build_req(log, streams, n_streams, 1, &res, &r);
    if (rc) return rc;
    r->cb = cb;
    r->arg = arg;
    if ((rc = enqueue(log, r))) free_req(r);
    return rc;
}

int evl_log_watch(evl_log *log, evl_commit_cb cb, void *arg) {
    evl_watcher *w = evl_malloc(sizeof *w);
    if (!w) return EVL_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    pthread_mutex_lock(&log->watch_mu);
    w->next = log->watchers;
    log->watchers = w;
    atomic_fetch_add(&log->n_watchers, 1);
    pthread_mutex_unlock(&log->watch_mu);
    pthread_mutex_lock(&log->mu);
    pthread_cond_signal(&log->apply_cv); /* a lingering applier stops lingering (apply.c) */
    pthread_mutex_unlock(&log->mu);
    return EVL_OK;
}

void evl_log_unwatch(evl_log *log, evl_commit_cb cb, void *arg) {
    pthread_mutex_lock(&log->watch_mu);
    for (evl_watcher **p = &log->watchers; *p; p = &(*p)->next)
        if ((*p)->cb == cb && (*p)->arg == arg) {
            evl_watcher *w = *p;
            *p = w->next;
            evl_free(w);
            atomic_fetch_sub(&log->n_watchers, 1);
            break;
        }
    pthread_mutex_unlock(&log->watch_mu);
}
