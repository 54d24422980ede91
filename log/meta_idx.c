/* The audit indexes: events by meta.actor and by meta.correlation_id.
 *
 *   actors        meta.actor -> be64(position), MDB_DUPSORT|MDB_DUPFIXED
 *   correlations  meta.correlation_id -> be64(position), the same
 *
 * An event is indexed under a key only when its meta has that key as a
 * string of 1..EVL_MAX_META_INDEXED bytes: LMDB refuses empty keys and keys
 * over 511 bytes, and an audit key is a name, not a payload.  Anything else
 * under those keys is kept in the record and simply not indexed.
 *
 * Both came after format 1 had shipped, so they do not bump the format: a
 * writer that opens a log without them creates and fills them from the
 * records in the same transaction that creates them (all or nothing: a crash
 * during the fill leaves the log as it was, and the next open fills again).
 * A read-only handle cannot create them; read.c then answers by a scan. */
#include "log/log_int.h"

const evl_meta_key evl__meta_keys[EVL_META_KEYS] = {
    {"actor", 5, "actors"},
    {"correlation_id", 14, "correlations"},
};
#define META evl__meta_keys

int evl__meta_indexed(const uint8_t *meta, size_t meta_len, const char *key, size_t key_len,
                      const char **s, size_t *n) {
    evl_mp m;
    evl_mp_val v;
    if (!meta || evl_mp_map_find(meta, meta_len, key, key_len, &m) || evl_mp_read(&m, &v))
        return 0;
    if (v.kind != EVL_MP_STR || v.v.s.len == 0 || v.v.s.len > EVL_MAX_META_INDEXED) return 0;
    *s = v.v.s.ptr;
    *n = v.v.s.len;
    return 1;
}

static MDB_dbi *meta_dbi(evl_log *log, size_t i) { return i == 0 ? &log->db_actors : &log->db_corrs; }
MDB_dbi evl__meta_dbi(const evl_log *log, size_t i) { return i == 0 ? log->db_actors : log->db_corrs; }

int evl__meta_index_put(evl_log *log, MDB_txn *txn, const uint8_t *meta, size_t meta_len,
                        uint8_t pkey[8]) {
    for (size_t i = 0; i < EVL_META_KEYS; i++) {
        const char *s;
        size_t n;
        if (!evl__meta_indexed(meta, meta_len, META[i].key, META[i].len, &s, &n)) continue;
        MDB_val k = {n, (void *)s}, v = {8, pkey};
        int rc = mdb_put(txn, *meta_dbi(log, i), &k, &v, 0);
        if (rc) return evl__lmdb_err(rc);
    }
    return EVL_OK;
}

/* Index every record already in the log (the indexes were just created). */
static int backfill(evl_log *log, MDB_txn *txn) {
    MDB_cursor *c;
    MDB_val k, v;
    int mrc = mdb_cursor_open(txn, log->db_events, &c), rc = EVL_OK;
    if (mrc) return evl__lmdb_err(mrc);
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0 && rc == EVL_OK;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        evl_event ev;
        /* verify names a bad record; opening must not paper over it */
        if (k.mv_size != 8 || evl_log_decode(v.mv_data, v.mv_size, &ev)) rc = EVL_ECORRUPT;
        else rc = evl__meta_index_put(log, txn, ev.meta, ev.meta_len, k.mv_data);
    }
    mdb_cursor_close(c);
    if (rc) return rc;
    return mrc == MDB_NOTFOUND ? EVL_OK : evl__lmdb_err(mrc);
}

int evl__meta_open(evl_log *log, MDB_txn *txn) {
    int missing = 0, rc;
    for (size_t i = 0; i < EVL_META_KEYS; i++) {
        rc = mdb_dbi_open(txn, META[i].db, MDB_DUPSORT | MDB_DUPFIXED, meta_dbi(log, i));
        if (rc == MDB_NOTFOUND) missing = 1;
        else if (rc) return evl__lmdb_err(rc);
    }
    if (!missing) {
        log->has_meta_idx = 1;
        return EVL_OK;
    }
    if (log->opt.read_only) return EVL_OK; /* has_meta_idx stays 0: queries scan */
    /* One present and one missing cannot come from this code (both are made
     * in one transaction), but rebuild both rather than trust half. */
    for (size_t i = 0; i < EVL_META_KEYS; i++) {
        if ((rc = mdb_dbi_open(txn, META[i].db, MDB_DUPSORT | MDB_DUPFIXED | MDB_CREATE, meta_dbi(log, i))) ||
            (rc = mdb_drop(txn, *meta_dbi(log, i), 0)))
            return evl__lmdb_err(rc);
    }
    if ((rc = backfill(log, txn))) return rc;
    log->has_meta_idx = 1;
    return EVL_OK;
}
