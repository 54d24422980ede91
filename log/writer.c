/* Appends and group commit.
 *
 * DESIGN.  Appenders validate and pre-encode their batch in their own thread
 * (build_req), then queue it.  One writer thread owns every write
 * transaction: it takes everything queued (up to max_group_events), applies
 * each batch in turn inside one LMDB transaction, commits once (one fsync
 * for the whole group in EVL_SYNC_FULL), and only then completes the
 * appenders.  A batch is checked completely (idempotency, expected
 * revisions) before any of its writes, and the checks read through the same
 * transaction, so they see the batches applied before it in the group: a
 * refused batch writes nothing and its neighbours are untouched.
 *
 * If a write itself fails in the middle of a group (map full, disk full),
 * the whole transaction is aborted and the group is replayed one batch per
 * transaction, so the batch that does not fit fails alone.
 *
 * A failed commit or flush is never retried: the kernel may have dropped the
 * dirty pages already (fsyncgate), so a later "successful" fsync proves
 * nothing.  The log turns read-only until it is reopened — except for
 * ENOSPC/map-full, which LMDB reports before the meta page is written and
 * leaves the environment intact.
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
    /* generated ids: a few random reads for the whole request, not one each */
    uint8_t gen[32][16];
    size_t n_gen = sizeof gen / sizeof gen[0];
    for (size_t e = 0; e < n_events; e++) {
        req_event *re = &r->events[e];
        if (!re->client_id) {
            if (n_gen == sizeof gen / sizeof gen[0]) {
                size_t left = 0;
                for (size_t j = e; j < n_events && left < n_gen; j++) left += !r->events[j].client_id;
                evl_uuid_v7_n(gen + (n_gen - left), left);
                n_gen -= left;
            }
            memcpy(re->id, gen[n_gen++], 16);
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

typedef struct group_ctx {
    MDB_txn *txn;
    MDB_cursor *c_events;
    MDB_cursor *c_streams;
    msgpack_sbuffer rec;
    int64_t time_ns;
} group_ctx;

/* Is the stream's current state compatible with the expectation? */
static int expectation_ok(uint64_t expected, int exists, uint64_t cur) {
    if (expected == EVL_REV_ANY) return 1;
    if (expected == EVL_REV_NO_STREAM) return !exists;
    if (expected == EVL_REV_EXISTS) return exists;
    return exists && cur == expected;
}

/* All ids already in the log: answer with the originals. */
static int answer_idempotent(evl_log *log, group_ctx *g, evl_req *r, const uint64_t *positions) {
    for (size_t e = 0; e < r->n_events; e++) {
        req_event *re = &r->events[e];
        uint8_t key[8];
        evl__put_be64(key, positions[e]);
        MDB_val k = {8, key}, v;
        evl_event ev;
        if (mdb_get(g->txn, log->db_events, &k, &v) || evl_log_decode(v.mv_data, v.mv_size, &ev))
            return EVL_ECORRUPT;
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

/* Checks that decide whether the batch is accepted.  Writes nothing. */
static int check_req(evl_log *log, group_ctx *g, evl_req *r, uint64_t *cur, int *exists) {
    size_t seen = 0;
    uint64_t *positions = NULL;
    int rc = EVL_OK;
    for (size_t e = 0; e < r->n_events; e++) {
        if (!r->events[e].client_id) continue;
        MDB_val k = {16, r->events[e].id}, v;
        int mrc = mdb_get(g->txn, log->db_ids, &k, &v);
        if (mrc == MDB_NOTFOUND) continue;
        if (mrc) return evl__lmdb_err(mrc);
        if (!positions && !(positions = evl_calloc(r->n_events, sizeof *positions))) return EVL_ENOMEM;
        positions[e] = evl__get_be64(v.mv_data);
        seen++;
    }
    if (seen) {
        rc = seen == r->n_events ? answer_idempotent(log, g, r, positions) : EVL_EIDMIX;
        evl_free(positions);
        return rc == EVL_OK ? -1 : rc; /* -1: accepted, nothing to write */
    }
    for (size_t s = 0; s < r->n_streams; s++) {
        req_stream *rs = &r->streams[s];
        int hrc = evl__stream_head(g->c_streams, rs->name, rs->len, &cur[s], NULL);
        if (hrc && hrc != EVL_ENOTFOUND) return hrc;
        exists[s] = hrc == EVL_OK;
        if (!exists[s]) cur[s] = 0;
        if (!expectation_ok(rs->expected, exists[s], cur[s])) {
            r->res.stream_index = s;
            r->res.current_revision = exists[s] ? cur[s] : EVL_REV_NONE;
            return EVL_ECONFLICT;
        }
    }
    return EVL_OK;
}

/* Write an accepted batch.  Any error here is a write error: the caller
 * aborts the transaction. */
static int write_req(evl_log *log, group_ctx *g, evl_req *r, uint64_t *cur, int *exists) {
    int mrc;
    uint8_t sent[16], pkey[8];
    for (size_t s = 0; s < r->n_streams; s++) {
        req_stream *rs = &r->streams[s];
        size_t cat_len = evl_stream_category(rs->name, rs->len);
        uint64_t rev = exists[s] ? cur[s] + 1 : 0, pos;
        for (size_t e = rs->first; e < rs->first + rs->n; e++, rev++) {
            req_event *re = &r->events[e];
            pos = log->next_pos++;
            int rc = evl__fmt_encode(&g->rec, log->hasher, log->chain, log->chain, pos, rs->name,
                                     rs->len, rev, re->id, re->type, re->type_len, g->time_ns,
                                     re->data, re->data_len, re->meta, re->meta_len);
            if (rc) return rc;
            evl__put_be64(pkey, pos);
            MDB_val k = {8, pkey}, v = {g->rec.size, g->rec.data}, pv = {8, pkey};
            if ((mrc = mdb_cursor_put(g->c_events, &k, &v, MDB_APPEND))) return evl__lmdb_err(mrc);
            evl__stream_entry(sent, rev, pos);
            MDB_val sk = {rs->len, (void *)rs->name}, sv = {16, sent};
            if ((mrc = mdb_cursor_put(g->c_streams, &sk, &sv, 0))) return evl__lmdb_err(mrc);
            MDB_val ik = {16, re->id};
            if ((mrc = mdb_put(g->txn, log->db_ids, &ik, &pv, MDB_NOOVERWRITE)))
                return mrc == MDB_KEYEXIST ? EVL_EIDREUSE : evl__lmdb_err(mrc);
            MDB_val tk = {re->type_len, (void *)re->type};
            if ((mrc = mdb_put(g->txn, log->db_types, &tk, &pv, 0))) return evl__lmdb_err(mrc);
            MDB_val ck = {cat_len, (void *)rs->name};
            if ((mrc = mdb_put(g->txn, log->db_cats, &ck, &pv, 0))) return evl__lmdb_err(mrc);
            if ((rc = evl__meta_index_put(log, g->txn, re->meta, re->meta_len, pkey))) return rc;
            r->res.acks[e].position = pos;
            r->res.acks[e].revision = rev;
        }
    }
    return EVL_OK;
}

/* Apply one batch; a refused batch gets its error in r->res.err.
 * Returns non-zero only for a write error that spoils the transaction. */
static int apply_req(evl_log *log, group_ctx *g, evl_req *r) {
    uint64_t cur_small[8];
    int exists_small[8];
    uint64_t *cur = cur_small;
    int *exists = exists_small;
    int rc;
    if (r->n_streams > 8) {
        cur = evl_malloc(r->n_streams * sizeof *cur);
        exists = evl_malloc(r->n_streams * sizeof *exists);
        if (!cur || !exists) { rc = r->res.err = EVL_ENOMEM; goto out; }
    }
    rc = check_req(log, g, r, cur, exists);
    if (rc == -1) { r->res.err = EVL_OK; rc = EVL_OK; goto out; }
    if (rc) {
        r->res.err = rc;
        if (rc == EVL_ECONFLICT) atomic_fetch_add(&log->n_conflicts, 1);
        rc = (rc == EVL_ECONFLICT || rc == EVL_EIDMIX || rc == EVL_EIDREUSE || rc == EVL_ENOMEM) ? EVL_OK : rc;
        goto out;
    }
    rc = write_req(log, g, r, cur, exists);
    r->res.err = rc;
out:
    if (cur != cur_small) { evl_free(cur); evl_free(exists); }
    return rc;
}

static int64_t commit_time(evl_log *log) {
    int64_t now = evl__now_ns();
    return now > log->last_time ? now : log->last_time;
}

/* LMDB reports a short write as EIO (mdb_page_flush), and a filesystem that
 * is almost full gives short writes before it gives ENOSPC: a commit that
 * failed with EIO while the log's filesystem has less room than the group
 * needed (with a margin) failed for want of space.  Those pages belong to no
 * meta page yet, so the environment is intact, as with ENOSPC. */
static int out_of_space(evl_log *log, uint64_t group_bytes) {
    struct statvfs vs;
    if (statvfs(log->dir, &vs) != 0) return 0;
    uint64_t avail = (uint64_t)vs.f_bavail * vs.f_frsize;
    return avail < 2 * group_bytes + ((uint64_t)1 << 20);
}

/* One transaction over reqs[0..n).  Returns EVL_OK when committed (each
 * req's own result is in its res.err), or the error that sank it all. */
static int run_txn(evl_log *log, evl_req **reqs, size_t n, msgpack_sbuffer *rec, int *write_failed) {
    group_ctx g = {0};
    uint64_t start_pos = log->next_pos;
    uint8_t start_chain[EVL_CHAIN_LEN]; /* the chain goes back with next_pos when nothing commits */
    memcpy(start_chain, log->chain, EVL_CHAIN_LEN);
    int rc = evl__lmdb_err(mdb_txn_begin(log->env, NULL, 0, &g.txn));
    *write_failed = 0;
    if (rc) return rc;
    if ((rc = evl__lmdb_err(mdb_cursor_open(g.txn, log->db_events, &g.c_events))) ||
        (rc = evl__lmdb_err(mdb_cursor_open(g.txn, log->db_streams, &g.c_streams)))) {
        mdb_txn_abort(g.txn);
        return rc;
    }
    g.rec = *rec;
    g.time_ns = commit_time(log);
    for (size_t i = 0; i < n && !rc; i++) rc = apply_req(log, &g, reqs[i]);
    if (!rc && log->next_pos != start_pos && g.time_ns > log->last_indexed_time) {
        uint8_t tk[8], tv[8];
        evl__put_be64(tk, (uint64_t)g.time_ns);
        evl__put_be64(tv, start_pos);
        MDB_val k = {8, tk}, v = {8, tv};
        rc = evl__lmdb_err(mdb_put(g.txn, log->db_times, &k, &v, MDB_APPEND));
    }
    *rec = g.rec;
    if (rc) {
        *write_failed = 1;
        mdb_txn_abort(g.txn);
        log->next_pos = start_pos;
        memcpy(log->chain, start_chain, EVL_CHAIN_LEN);
        return rc;
    }
    if (log->next_pos == start_pos) { /* nothing to write: every batch refused or a repeat */
        mdb_txn_abort(g.txn);
        return EVL_OK;
    }
    int64_t t0 = evl__mono_ns();
    rc = mdb_txn_commit(g.txn);
    uint64_t us = (uint64_t)(evl__mono_ns() - t0) / 1000;
    static const uint64_t bounds[EVL_COMMIT_BUCKETS] = EVL_COMMIT_BOUNDS_US;
    int b = 0;
    while (b < EVL_COMMIT_BUCKETS && us > bounds[b]) b++;
    atomic_fetch_add(&log->commit_us[b], 1);
    atomic_fetch_add(&log->commit_us_sum, us);
    atomic_fetch_add(&log->n_commits, 1);
    if (log->opt.sync == EVL_SYNC_FULL) atomic_fetch_add(&log->n_syncs, 1);
    if (rc) {
        log->next_pos = start_pos;
        memcpy(log->chain, start_chain, EVL_CHAIN_LEN);
        int err = evl__lmdb_err(rc);
        if (rc == EIO) {
            uint64_t group_bytes = 0;
            for (size_t i = 0; i < n; i++)
                group_bytes += reqs[i]->bytes + reqs[i]->n_events * (uint64_t)EVL_RECORD_OVERHEAD;
            if (out_of_space(log, group_bytes)) err = EVL_EFULL;
        }
        if (err != EVL_EFULL) {
            pthread_mutex_lock(&log->mu);
            log->ro_error = err;
            pthread_mutex_unlock(&log->mu);
        }
        return err;
    }
    log->last_time = g.time_ns;
    if (g.time_ns > log->last_indexed_time) log->last_indexed_time = g.time_ns;
    log->unflushed = 1;
    return EVL_OK;
}

static void notify(evl_log *log, uint64_t head) {
    pthread_mutex_lock(&log->watch_mu);
    for (evl_watcher *w = log->watchers; w; w = w->next) w->cb(w->arg, head);
    pthread_mutex_unlock(&log->watch_mu);
}

/* Answer every req: async ones by callback, sync ones through their own
 * semaphore (waking exactly the appenders that are done, not all of them).
 * @p head is the durable head to publish. */
static void complete(evl_log *log, evl_req **reqs, size_t n, uint64_t head) {
    for (size_t i = 0; i < n; i++) {
        evl_req *r = reqs[i];
        if (r->res.err == EVL_OK && !r->res.idempotent) {
            atomic_fetch_add(&log->n_appends, 1);
            atomic_fetch_add(&log->n_events, r->n_events);
            atomic_fetch_add(&log->n_bytes, r->bytes);
        }
    }
    pthread_mutex_lock(&log->mu);
    int advanced = head > atomic_load(&log->head);
    if (advanced) {
        atomic_store(&log->head, head);
        pthread_cond_broadcast(&log->head_cv);
    }
    pthread_mutex_unlock(&log->mu);
    if (advanced) notify(log, head);
    for (size_t i = 0; i < n; i++) {
        evl_req *r = reqs[i];
        if (r->cb) {
            r->cb(r->arg, &r->res);
            free_req(r);
        } else {
            sem_post(&r->done); /* the appender frees r: do not touch it after this */
        }
    }
}

static int read_only_error(evl_log *log) {
    pthread_mutex_lock(&log->mu);
    int ro = log->ro_error;
    pthread_mutex_unlock(&log->mu);
    return ro;
}

/* Apply a group; every req gets its result in res.err. */
static void process_group(evl_log *log, evl_req **reqs, size_t n, msgpack_sbuffer *rec) {
    int ro = read_only_error(log), write_failed;
    if (ro) {
        for (size_t i = 0; i < n; i++) reqs[i]->res.err = EVL_EREADONLY;
        return;
    }
    int rc = run_txn(log, reqs, n, rec, &write_failed);
    if (rc && write_failed && n > 1) {
        /* Find the batch that does not fit: one transaction each. */
        for (size_t i = 0; i < n; i++) {
            ro = read_only_error(log);
            int rc1 = ro ? EVL_EREADONLY : run_txn(log, &reqs[i], 1, rec, &write_failed);
            if (rc1) reqs[i]->res.err = rc1;
        }
    } else if (rc) {
        for (size_t i = 0; i < n; i++)
            if (reqs[i]->res.err == EVL_OK && !reqs[i]->res.idempotent) reqs[i]->res.err = rc;
    }
}

static int flush(evl_log *log) {
    if (!log->unflushed) return EVL_OK;
    log->unflushed = 0;
    int rc = mdb_env_sync(log->env, 1);
    atomic_fetch_add(&log->n_syncs, 1);
    if (rc) {
        pthread_mutex_lock(&log->mu);
        if (!log->ro_error) log->ro_error = evl__lmdb_err(rc);
        pthread_mutex_unlock(&log->mu);
        return evl__lmdb_err(rc);
    }
    return EVL_OK;
}

/* A reader process that dies inside a read transaction (kill -9 of an
 * `evlog read`, an OOM kill) leaves its LMDB reader slot behind, and the
 * snapshot that slot names keeps every page freed since from being reused:
 * data.mdb would grow for as long as the writer runs.  LMDB frees such slots
 * only when asked (mdb_reader_check, at open and here).  Asked before a
 * commit, when freed pages matter, at most once a second: it is one
 * F_GETLK per foreign slot. */
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
    msgpack_sbuffer rec;
    msgpack_sbuffer_init(&rec);
    size_t cap = 64;
    evl_req **reqs = evl_malloc(cap * sizeof *reqs);
    evl_assert(reqs);
    int64_t flush_ns = (int64_t)log->opt.flush_interval_ms * 1000000;
    int64_t next_flush = evl__mono_ns() + flush_ns;
    pthread_mutex_lock(&log->mu);
    for (;;) {
        while (!log->q_head && !log->stopping) {
            if (log->opt.sync == EVL_SYNC_NONE && log->unflushed) {
                struct timespec ts = {next_flush / 1000000000, next_flush % 1000000000};
                if (pthread_cond_timedwait(&log->queue_cv, &log->mu, &ts) == ETIMEDOUT) {
                    pthread_mutex_unlock(&log->mu);
                    flush(log);
                    next_flush = evl__mono_ns() + flush_ns;
                    pthread_mutex_lock(&log->mu);
                }
            } else {
                pthread_cond_wait(&log->queue_cv, &log->mu);
            }
        }
        if (!log->q_head) break; /* stopping, queue drained */
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
        pthread_mutex_unlock(&log->mu);
        check_readers(log);
        process_group(log, reqs, n, &rec);
        /* in sync full the commit has synced: the group is durable */
        complete(log, reqs, n, log->next_pos - 1);
        if (log->opt.sync == EVL_SYNC_NONE && evl__mono_ns() >= next_flush) {
            flush(log);
            next_flush = evl__mono_ns() + flush_ns;
        }
        pthread_mutex_lock(&log->mu);
    }
    pthread_mutex_unlock(&log->mu);
    if (log->opt.sync == EVL_SYNC_NONE) flush(log);
    evl_free(reqs);
    msgpack_sbuffer_destroy(&rec);
    return NULL;
}

int evl__writer_start(evl_log *log) {
    int rc = evl__sha256_new(&log->hasher);
    if (rc || (rc = evl__chain_load(log))) return rc; /* evl_log_close() frees the hasher */
    int e = pthread_create(&log->writer, NULL, writer_main, log);
    if (e) return EVL_ESYS(e);
    log->writer_started = 1;
    return EVL_OK;
}

void evl__writer_stop(evl_log *log) {
    pthread_mutex_lock(&log->mu);
    log->stopping = 1;
    pthread_cond_broadcast(&log->queue_cv);
    pthread_cond_broadcast(&log->head_cv);
    pthread_mutex_unlock(&log->mu);
    pthread_join(log->writer, NULL);
    log->writer_started = 0;
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
    pthread_mutex_unlock(&log->watch_mu);
    return EVL_OK;
}

void evl_log_unwatch(evl_log *log, evl_commit_cb cb, void *arg) {
    pthread_mutex_lock(&log->watch_mu);
    for (evl_watcher **p = &log->watchers; *p; p = &(*p)->next)
        if ((*p)->cb == cb && (*p)->arg == arg) {
            evl_watcher *w = *p;
            *p = w->next;
            evl_free(w);
            break;
        }
    pthread_mutex_unlock(&log->watch_mu);
}
