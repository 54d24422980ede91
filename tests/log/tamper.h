/* Edit stored records in place with the LMDB API, the log closed: what
 * someone with write access to data.mdb could do.  Shared by the chain test
 * and the evl-tamper tool that the shell recipes use. */
#ifndef EVL_TEST_TAMPER_H
#define EVL_TEST_TAMPER_H

#include <errno.h>
#include <lmdb.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t evl__crc32c(uint32_t crc, const void *buf, size_t len);

/* Rewrites one record: gets a copy with room to grow by 64 bytes. */
typedef void (*tamper_fn)(uint8_t *rec, size_t *len, void *arg);

static inline void tamper_fix_crc(uint8_t *rec, size_t len) {
    uint32_t c = evl__crc32c(0, rec, len - 9); /* everything before the "crc" key */
    rec[len - 4] = (uint8_t)(c >> 24);
    rec[len - 3] = (uint8_t)(c >> 16);
    rec[len - 2] = (uint8_t)(c >> 8);
    rec[len - 1] = (uint8_t)c;
}

/* Apply @p fn to records @p from..@p to (0: the last) of DIR/log; with
 * @p fix_crc the CRC is recomputed after it, with @p rechain every chain
 * value from @p from to the end is recomputed too (a full rewrite, which
 * only a digest kept elsewhere can reveal).  0 or an LMDB code. */
static inline int tamper_records(const char *dir, uint64_t from, uint64_t to, tamper_fn fn, void *arg,
                                 int fix_crc, int rechain) {
    char path[4096];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    snprintf(path, sizeof path, "%s/log", dir);
    int rc = mdb_env_create(&env);
    if (rc) return rc;
    mdb_env_set_maxdbs(env, 16);
    if ((rc = mdb_env_open(env, path, 0, 0644)) || (rc = mdb_txn_begin(env, NULL, 0, &txn))) {
        mdb_env_close(env);
        return rc;
    }
    if ((rc = mdb_dbi_open(txn, "events", 0, &dbi))) goto out;
    uint8_t key[8], prev[32] = {0};
    if (from > 1) { /* the chain value of the record before */
        uint8_t pk[8];
        for (int i = 0; i < 8; i++) pk[i] = (uint8_t)((from - 1) >> (56 - 8 * i));
        MDB_val k = {8, pk}, v;
        if ((rc = mdb_get(txn, dbi, &k, &v))) goto out;
        if (v.mv_size > 41) memcpy(prev, (uint8_t *)v.mv_data + 9, 32);
    }
    /* by key, one get and one put each: a cursor's key would point into a
     * page that the put may move */
    for (uint64_t pos = from;; pos++) {
        for (int i = 0; i < 8; i++) key[i] = (uint8_t)(pos >> (56 - 8 * i));
        MDB_val k = {8, key}, v;
        if ((rc = mdb_get(txn, dbi, &k, &v))) break;
        int edit = to == 0 || pos <= to;
        if (!edit && !rechain) break;
        size_t len = v.mv_size;
        uint8_t *rec = malloc(len + 64);
        if (!rec) { rc = ENOMEM; break; }
        memcpy(rec, v.mv_data, len);
        if (edit) fn(rec, &len, arg);
        if (rechain && len > 50 && !memcmp(rec, "\x8a\xa5" "chain" "\xc4\x20", 9)) {
            uint8_t *buf = malloc(len);
            memcpy(buf, prev, 32);
            memcpy(buf + 32, rec + 41, len - 9 - 41);
            SHA256(buf, 32 + len - 9 - 41, rec + 9);
            memcpy(prev, rec + 9, 32);
            free(buf);
        }
        if (fix_crc || rechain) tamper_fix_crc(rec, len);
        MDB_val nv = {len, rec};
        rc = mdb_put(txn, dbi, &k, &nv, 0);
        free(rec);
        if (rc) break;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
out:
    if (rc) mdb_txn_abort(txn);
    else rc = mdb_txn_commit(txn);
    mdb_env_close(env);
    return rc;
}

/* XOR byte @p off of the record (negative: counted back from its crc
 * trailer, -1 = the byte just before it) with 1. */
static inline void tamper_flip(uint8_t *rec, size_t *len, void *arg) {
    long off = *(long *)arg;
    size_t at = off >= 0 ? (size_t)off : *len - 9 - (size_t)(-off);
    rec[at] ^= 1;
}

/* Make a record look as it did before the chain: a map of 9 without the
 * "chain" key (the caller fixes the CRC). */
static inline void tamper_unchain(uint8_t *rec, size_t *len, void *arg) {
    (void)arg;
    if (*len < 50 || memcmp(rec, "\x8a\xa5" "chain", 7)) return;
    rec[0] = 0x89;
    memmove(rec + 1, rec + 41, *len - 41);
    *len -= 40;
}

#endif
