/* evl_log_verify(): check the whole log and name the first problem.
 *
 * Pass 1 walks the records in position order: keys gap-free from 1, every
 * record decodes and passes its CRC, its hash-chain value is the one
 * recomputed from the records before it and its own bytes (format.c; so a
 * record edited in place, even with its CRC redone, is named by its own
 * position), its position field equals its key,
 * times never decrease, and every index has the entry that points at it
 * (the audit indexes only for events whose meta has an indexable value).
 * Pass 2 walks the streams index: each stream's revisions contiguous from 0
 * with increasing positions (its last entry is its head).  Entry counts
 * then show that the indexes hold nothing more than pass 1 found, so index
 * and records correspond one to one.  All of it in one read transaction: a
 * consistent snapshot even while the writer runs. */
#include <stdarg.h>

#include "log/log_int.h"

typedef struct vctx {
    evl_log *log;
    MDB_txn *txn;
    char *problem;
    size_t problem_len;
} vctx;

__attribute__((format(printf, 2, 3))) static int fail(vctx *v, const char *fmt, ...) {
    if (v->problem && v->problem_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->problem, v->problem_len, fmt, ap);
        va_end(ap);
    }
    return EVL_ECORRUPT;
}

static int expect_pos(vctx *v, MDB_dbi dbi, MDB_val *k, uint64_t pos) {
    MDB_val val;
    int rc = mdb_get(v->txn, dbi, k, &val);
    if (rc) return rc;
    return val.mv_size == 8 && evl__get_be64(val.mv_data) == pos ? 0 : MDB_NOTFOUND;
}

static int has_dup(vctx *v, MDB_cursor *c, const void *key, size_t klen, uint64_t pos) {
    uint8_t pk[8];
    evl__put_be64(pk, pos);
    MDB_val k = {klen, (void *)key}, val = {8, pk};
    return mdb_cursor_get(c, &k, &val, MDB_GET_BOTH);
}

static uint64_t entries(vctx *v, MDB_dbi dbi) {
    MDB_stat st;
    return mdb_stat(v->txn, dbi, &st) ? 0 : st.ms_entries;
}

/* The audit indexes (meta_idx.c): the entry for each indexable meta value
 * of @p ev, counted in @p n so that extra entries show up at the end. */
#define AUDIT evl__meta_keys

static int check_audit(vctx *v, MDB_cursor *const ca[EVL_META_KEYS], const evl_event *ev,
                       uint64_t n[EVL_META_KEYS]) {
    for (int i = 0; i < EVL_META_KEYS && ca[0]; i++) {
        const char *s;
        size_t len;
        if (!evl__meta_indexed(ev->meta, ev->meta_len, AUDIT[i].key, AUDIT[i].len, &s, &len)) continue;
        n[i]++;
        if (has_dup(v, ca[i], s, len, ev->position))
            return fail(v, "position %llu: %s index lacks it (%s %.*s)", (unsigned long long)ev->position,
                        AUDIT[i].db, AUDIT[i].key, (int)len, s);
    }
    return EVL_OK;
}

/* The chain at record @p ev: @p chain holds h of the record before, and
 * becomes this one's.  Checked before the record's other fields, so that a
 * record edited in place is reported as such whatever was edited.
 * Unchained records may only come before the first chained one. */
static int check_chain(vctx *v, evl_sha256 *hasher, const evl_event *ev,
                       uint8_t chain[EVL_CHAIN_LEN], uint64_t *chained_from) {
    unsigned long long pos = (unsigned long long)ev->position;
    if (!ev->chain) {
        if (*chained_from)
            return fail(v, "position %llu: hash chain broken: the record has no chain value "
                           "(the chain starts at position %llu)", pos, (unsigned long long)*chained_from);
        return EVL_OK; /* from before the chain: the next one starts from zeros */
    }
    if (!*chained_from) *chained_from = ev->position;
    uint8_t h[EVL_CHAIN_LEN];
    int rc = evl__fmt_chain(hasher, chain, ev->raw, ev->raw_len, h);
    if (rc == EVL_ECORRUPT)
        return fail(v, "position %llu: hash chain broken: the chain value is not where the format puts it", pos);
    if (rc) return rc;
    if (memcmp(h, ev->chain, EVL_CHAIN_LEN))
        return fail(v, "position %llu: hash chain broken: the record does not hash to its chain "
                       "value (its bytes or an earlier record's were changed)", pos);
    memcpy(chain, h, EVL_CHAIN_LEN);
    return EVL_OK;
}

int evl_log_verify(evl_log *log, char *problem, size_t problem_len, uint64_t *n_events,
                   evl_verify_progress progress, void *arg) {
    vctx v = {log, NULL, problem, problem_len};
    MDB_cursor *c = NULL, *ct = NULL, *cc = NULL, *cs = NULL, *ca[EVL_META_KEYS] = {NULL, NULL};
    uint64_t expect = 1, n_audit[EVL_META_KEYS] = {0, 0}, chained_from = 0;
    uint8_t chain[EVL_CHAIN_LEN] = {0};
    evl_sha256 *hasher = NULL;
    int64_t last_time = INT64_MIN;
    int rc;
    if (problem && problem_len) problem[0] = 0;
    if (n_events) *n_events = 0;
    evl__read_barrier(log);
    if ((rc = evl__sha256_new(&hasher))) return rc;
    if ((rc = mdb_txn_begin(log->env, NULL, MDB_RDONLY, &v.txn))) {
        evl__sha256_free(hasher);
        return evl__lmdb_err(rc);
    }
    uint64_t total = evl__head_from_txn(log, v.txn);
    if ((rc = mdb_cursor_open(v.txn, log->db_events, &c)) ||
        (rc = mdb_cursor_open(v.txn, log->db_types, &ct)) ||
        (rc = mdb_cursor_open(v.txn, log->db_cats, &cc)) ||
        (rc = mdb_cursor_open(v.txn, log->db_streams, &cs)) ||
        /* a read-only handle on a log from before the audit indexes has none */
        (log->has_meta_idx && ((rc = mdb_cursor_open(v.txn, evl__meta_dbi(log, 0), &ca[0])) ||
                               (rc = mdb_cursor_open(v.txn, evl__meta_dbi(log, 1), &ca[1]))))) {
        rc = evl__lmdb_err(rc);
        goto out;
    }
    MDB_val k, val;
    for (int mrc = mdb_cursor_get(c, &k, &val, MDB_FIRST); mrc != MDB_NOTFOUND;
         mrc = mdb_cursor_get(c, &k, &val, MDB_NEXT), expect++) {
        evl_event ev;
        if (mrc) { rc = evl__lmdb_err(mrc); goto out; }
        if (k.mv_size != 8) { rc = fail(&v, "events: a key of %zu bytes after position %llu", k.mv_size, (unsigned long long)(expect - 1)); goto out; }
        uint64_t pos = evl__get_be64(k.mv_data);
        if (pos != expect) { rc = fail(&v, "position %llu is missing (next record is %llu)", (unsigned long long)expect, (unsigned long long)pos); goto out; }
        if (evl_log_decode(val.mv_data, val.mv_size, &ev)) { rc = fail(&v, "position %llu: record does not decode or fails its CRC", (unsigned long long)pos); goto out; }
        if ((rc = check_chain(&v, hasher, &ev, chain, &chained_from))) goto out;
        if (ev.position != pos) { rc = fail(&v, "position %llu: record says position %llu", (unsigned long long)pos, (unsigned long long)ev.position); goto out; }
        if (evl_name_check(ev.stream, ev.stream_len) || evl_name_check(ev.type, ev.type_len)) { rc = fail(&v, "position %llu: invalid stream or type name", (unsigned long long)pos); goto out; }
        if (ev.time_ns < last_time) { rc = fail(&v, "position %llu: time goes back", (unsigned long long)pos); goto out; }
        last_time = ev.time_ns;
        uint8_t sent[16];
        evl__stream_entry(sent, ev.revision, pos);
        MDB_val sk = {ev.stream_len, (void *)ev.stream}, sv = {16, sent};
        if (mdb_cursor_get(cs, &sk, &sv, MDB_GET_BOTH)) { rc = fail(&v, "position %llu: streams index has no entry (%.*s, revision %llu) pointing at it", (unsigned long long)pos, (int)ev.stream_len, ev.stream, (unsigned long long)ev.revision); goto out; }
        MDB_val ik = {16, ev.id};
        if (expect_pos(&v, log->db_ids, &ik, pos)) { rc = fail(&v, "position %llu: ids index does not map its id to it", (unsigned long long)pos); goto out; }
        if (has_dup(&v, ct, ev.type, ev.type_len, pos)) { rc = fail(&v, "position %llu: types index lacks it", (unsigned long long)pos); goto out; }
        if (has_dup(&v, cc, ev.stream, evl_stream_category(ev.stream, ev.stream_len), pos)) { rc = fail(&v, "position %llu: categories index lacks it", (unsigned long long)pos); goto out; }
        if ((rc = check_audit(&v, ca, &ev, n_audit))) goto out;
        if (progress && (pos & 0xffff) == 0 && progress(arg, pos, total)) { rc = EVL_ETIMEDOUT; goto out; }
    }
    uint64_t n = expect - 1;
    if (entries(&v, log->db_ids) != n) { rc = fail(&v, "ids index has %llu entries for %llu events", (unsigned long long)entries(&v, log->db_ids), (unsigned long long)n); goto out; }
    if (entries(&v, log->db_types) != n) { rc = fail(&v, "types index has %llu entries for %llu events", (unsigned long long)entries(&v, log->db_types), (unsigned long long)n); goto out; }
    if (entries(&v, log->db_cats) != n) { rc = fail(&v, "categories index has %llu entries for %llu events", (unsigned long long)entries(&v, log->db_cats), (unsigned long long)n); goto out; }
    for (int i = 0; i < EVL_META_KEYS && ca[0]; i++) {
        MDB_dbi dbi = evl__meta_dbi(log, i);
        if (entries(&v, dbi) != n_audit[i]) { rc = fail(&v, "%s index has %llu entries for %llu events with an indexable %s", AUDIT[i].db, (unsigned long long)entries(&v, dbi), (unsigned long long)n_audit[i], AUDIT[i].key); goto out; }
    }
    if (entries(&v, log->db_streams) != n) { rc = fail(&v, "streams index has %llu entries for %llu events", (unsigned long long)entries(&v, log->db_streams), (unsigned long long)n); goto out; }

    /* Pass 2: per stream, revisions 0..last with increasing positions. */
    for (int mrc = mdb_cursor_get(cs, &k, &val, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cs, &k, &val, MDB_NEXT_NODUP)) {
        uint64_t next_rev = 0, last_pos = 0;

        for (int d = 0; d == 0; d = mdb_cursor_get(cs, &k, &val, MDB_NEXT_DUP)) {
            uint64_t rev = evl__get_be64(val.mv_data), p = evl__get_be64((uint8_t *)val.mv_data + 8);
            if (rev != next_rev || p <= last_pos) {
                rc = fail(&v, "stream %.*s: revision %llu at position %llu follows revision %llu at position %llu",
                          (int)k.mv_size, (char *)k.mv_data, (unsigned long long)rev, (unsigned long long)p,
                          (unsigned long long)next_rev - 1, (unsigned long long)last_pos);
                goto out;
            }
            next_rev++;
            last_pos = p;
        }
    }

    /* Pass 3: each time entry names the first position of its time. */
    mdb_cursor_close(c);
    c = NULL;
    if ((rc = evl__lmdb_err(mdb_cursor_open(v.txn, log->db_times, &c)))) goto out;
    for (int mrc = mdb_cursor_get(c, &k, &val, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
        int64_t t = (int64_t)evl__get_be64(k.mv_data);
        uint64_t pos = evl__get_be64(val.mv_data);
        uint8_t pk[8];
        evl_event ev;
        evl__put_be64(pk, pos);
        MDB_val ek = {8, pk}, ev_raw;
        int bad = mdb_get(v.txn, log->db_events, &ek, &ev_raw) ||
                  evl_log_decode(ev_raw.mv_data, ev_raw.mv_size, &ev) || ev.time_ns != t;
        if (!bad && pos > 1) {
            evl__put_be64(pk, pos - 1);
            bad = mdb_get(v.txn, log->db_events, &ek, &ev_raw) ||
                  evl_log_decode(ev_raw.mv_data, ev_raw.mv_size, &ev) || ev.time_ns >= t;
        }
        if (bad) { rc = fail(&v, "times index: entry for position %llu does not match the records", (unsigned long long)pos); goto out; }
    }
    if (n_events) *n_events = n;
    rc = EVL_OK;
out:
    if (c) mdb_cursor_close(c);
    if (ct) mdb_cursor_close(ct);
    if (cc) mdb_cursor_close(cc);
    if (cs) mdb_cursor_close(cs);
    for (int i = 0; i < EVL_META_KEYS; i++)
        if (ca[i]) mdb_cursor_close(ca[i]);
    mdb_txn_abort(v.txn);
    evl__sha256_free(hasher);
    return rc;
}
