/* Private layout of the log handle, shared by the files of log/. */
#ifndef EVL_LOG_INT_H
#define EVL_LOG_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "common/common_int.h"
#include "evlog/log.h"
#include "evlog/mp.h"

/* The on-disk format version stored in the `info` database. */
#define EVL_FORMAT_VERSION 1

/* Upper bound of the envelope's bytes around stream, type, data and meta
 * (keys, headers, fixed-width numbers, CRC); see format.c. */
#define EVL_RECORD_OVERHEAD 192

typedef struct evl_req evl_req;
typedef struct evl_watcher {
    struct evl_watcher *next;
    evl_commit_cb cb;
    void *arg;
} evl_watcher;

struct evl_log {
    char *dir;
    evl_log_options opt;
    MDB_env *env;
    size_t os_page;             /* sysconf(_SC_PAGESIZE), for the iterators' madvise */
    /* Named databases (see format.c for their keys and values). */
    MDB_dbi db_events, db_streams, db_ids, db_types, db_cats, db_times, db_info;
    /* Audit indexes (meta.actor, meta.correlation_id).  They came after
     * format 1 was in use: a read-only handle on a log that no writer has
     * opened since has neither, and then has_meta_idx is 0 and queries on
     * them scan instead (see read.c). */
    MDB_dbi db_actors, db_corrs;
    int has_meta_idx;
    int lock_fd;        /* flock on DIR/LOCK, -1 when read-only */
    int ino_fd;         /* read-only waits: inotify on data.mdb, -1 until first wait */
    pthread_mutex_t ino_mu;

    /* Writer state shared with appenders, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t queue_cv;  /* the writer sleeps here */
    pthread_cond_t head_cv;   /* evl_log_wait() sleeps here */
    evl_req *q_head, *q_tail;
    int stopping;
    int ro_error;             /* non-zero: the failure that made the log read-only */
    _Atomic uint64_t head;
    pthread_t writer;
    int writer_started;

    /* Writer-thread private. */
    uint64_t next_pos;
    int64_t last_time;        /* time of the last commit: times never go back */
    int64_t last_indexed_time;
    evl_sha256 *hasher;
    uint8_t chain[EVL_CHAIN_LEN]; /* h of the last record committed */
    int unflushed;            /* EVL_SYNC_NONE: commits since the last flush */
    int64_t next_reader_check; /* monotonic ns: when to look for dead readers' slots next */

    pthread_mutex_t watch_mu;
    evl_watcher *watchers;

    /* Counters (writer writes, anyone reads). */
    _Atomic uint64_t n_commits, n_appends, n_events, n_bytes, n_conflicts, n_syncs;
    _Atomic uint64_t n_stale_readers;
    _Atomic uint64_t commit_us[EVL_COMMIT_BUCKETS + 1], commit_us_sum;
};

/* format.c */
/* The chain slot: every chained record starts with these 9 bytes (a map of
 * 10, "chain", bin8 of 32) and its hash is raw[EVL_CHAIN_AT .. EVL_CHAIN_END). */
#define EVL_CHAIN_PREFIX "\x8a\xa5" "chain" "\xc4\x20"
#define EVL_CHAIN_AT 9
#define EVL_CHAIN_END (EVL_CHAIN_AT + EVL_CHAIN_LEN)
int evl__fmt_encode(void *sbuf, evl_sha256 *hasher, const uint8_t prev[EVL_CHAIN_LEN],
                    uint8_t hash[EVL_CHAIN_LEN], uint64_t pos, const char *stream,
                    size_t stream_len, uint64_t rev, const uint8_t id[16], const char *type,
                    size_t type_len, int64_t time_ns, const uint8_t *data, size_t data_len,
                    const uint8_t *meta, size_t meta_len);
/* Recompute a chained record's h_n from @p prev and its bytes (it need not
 * match the stored value: that is the caller's check).  EVL_ECORRUPT when
 * the record does not start with the chain slot. */
int evl__fmt_chain(evl_sha256 *hasher, const uint8_t prev[EVL_CHAIN_LEN], const uint8_t *raw,
                   size_t len, uint8_t hash[EVL_CHAIN_LEN]);
/* meta[key] when it is a string that the audit indexes hold (1 ..
 * EVL_MAX_META_INDEXED bytes): 1 with *s, *n set, else 0. */
int evl__meta_indexed(const uint8_t *meta, size_t meta_len, const char *key, size_t key_len,
                      const char **s, size_t *n);
/* mdb rc -> evl code. */
int evl__lmdb_err(int rc);
/* A streams-index entry: be64(revision), be64(position). */
static inline void evl__stream_entry(uint8_t e[16], uint64_t rev, uint64_t pos) {
    evl__put_be64(e, rev);
    evl__put_be64(e + 8, pos);
}
/* The last entry of a stream (its head): EVL_OK, EVL_ENOTFOUND, or an error. */
int evl__stream_head(MDB_cursor *c, const char *stream, size_t len, uint64_t *rev, uint64_t *pos);

/* chain.c: set log->chain to the last record's chain value (zeros when
 * there is none).  Before the writer starts. */
int evl__chain_load(evl_log *log);

/* writer.c */
int evl__writer_start(evl_log *log);
void evl__writer_stop(evl_log *log);

/* meta_idx.c: the actor and correlation indexes.  evl__meta_keys[i] is
 * the meta key that index i (evl__meta_dbi) holds, and the index's name. */
#define EVL_META_KEYS 2
typedef struct evl_meta_key { const char *key; size_t len; const char *db; } evl_meta_key;
extern const evl_meta_key evl__meta_keys[EVL_META_KEYS];
MDB_dbi evl__meta_dbi(const evl_log *log, size_t i);
int evl__meta_index_put(evl_log *log, MDB_txn *txn, const uint8_t *meta, size_t meta_len,
                        uint8_t pkey[8]);
/* Open them in open_dbs()'s transaction; create and fill them when missing
 * and writable.  Sets log->has_meta_idx. */
int evl__meta_open(evl_log *log, MDB_txn *txn);

/* read.c */
uint64_t evl__head_from_txn(evl_log *log, MDB_txn *txn);

#endif
