/* The log's hash chain: where the writer picks it up, and the digest.
 * The chain itself is defined with the record layout in format.c. */
#include "log/log_int.h"

/* The chain value of record @p pos read through @p txn into @p hash:
 * EVL_ENOTFOUND when there is no such record or it has no chain value. */
static int chain_at(evl_log *log, MDB_txn *txn, uint64_t pos, uint8_t hash[EVL_CHAIN_LEN]) {
    uint8_t key[8];
    evl__put_be64(key, pos);
    MDB_val k = {8, key}, v;
    evl_event ev;
    int rc = mdb_get(txn, log->db_events, &k, &v);
    if (rc) return evl__lmdb_err(rc);
    if (evl_log_decode(v.mv_data, v.mv_size, &ev)) return EVL_ECORRUPT;
    if (!ev.chain) return EVL_ENOTFOUND;
    memcpy(hash, ev.chain, EVL_CHAIN_LEN);
    return EVL_OK;
}

int evl__chain_load(evl_log *log) {
    MDB_txn *txn;
    int rc = evl__lmdb_err(mdb_txn_begin(log->env, NULL, MDB_RDONLY, &txn));
    if (rc) return rc;
    uint64_t head = evl__head_from_txn(log, txn);
    memset(log->chain, 0, EVL_CHAIN_LEN);
    /* an empty log, or one whose last record predates the chain: the chain
     * starts from zeros (format.c) */
    if (head && (rc = chain_at(log, txn, head, log->chain)) == EVL_ENOTFOUND) rc = EVL_OK;
    mdb_txn_abort(txn);
    return rc;
}

int evl_log_digest(evl_log *log, uint64_t at, evl_digest *out) {
    MDB_txn *txn;
    memset(out, 0, sizeof *out);
    evl__read_barrier(log);
    int rc = evl__lmdb_err(mdb_txn_begin(log->env, NULL, MDB_RDONLY, &txn));
    if (rc) return rc;
    uint64_t head = evl__head_from_txn(log, txn);
    if (at == 0) at = head;
    if (at == 0 || at > head) rc = EVL_ENOTFOUND;
    else rc = chain_at(log, txn, at, out->hash);
    if (rc == EVL_OK) out->position = at;
    mdb_txn_abort(txn);
    return rc;
}
