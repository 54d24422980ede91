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

/* Tuning of the journal and the applier (journal.c, apply.c, writer.c). */
#define EVL_JNL_HDR 32                      /* frame header bytes */
#define EVL_JNL_FILES 2                     /* the journal's files, written in turn */
#define EVL_DEFAULT_JOURNAL_LAP (16u << 20) /* past this, on in the other file */
#define EVL_JNL_EARLY_WRAP (1u << 20)       /* ... or past this when LMDB holds all of it */
#define EVL_JNL_EXTEND (1u << 20)           /* a journal file grows by zeros, at most this much at a time */
#define EVL_PENDING_MAX_BYTES (64u << 20)   /* journaled, not applied: the writer waits past this */
#define EVL_PIPE_MIN_EVENTS 64              /* queued events the writer takes during a sync */
#define EVL_APPLY_MAX_EVENTS 65536          /* events per applier transaction at most */
#define EVL_LINGER_MAX_EVENTS 16384         /* a lingering applier commits once this many wait */
#define EVL_APPLY_RETRY_NS 250000000LL      /* a commit that found no room is retried after this */
#define EVL_MAP_SLACK_PAGES 32              /* map pages kept free by the room estimate */
#define EVL_GROUP_SLACK_PAGES 8             /* pages a group may copy on write besides its own */
#define EVL_LOW_SPACE_BYTES (8u << 20)      /* EIO with less free space than this means "full" */

typedef struct evl_req evl_req;
typedef struct evl_ixg evl_ixg;
typedef struct evl_idbuf evl_idbuf;
/* The applier's grouped indexes: streams, types, categories, then the
 * EVL_META_KEYS meta indexes (asserted below). */
#define EVL_IX_GROUPS 5

/* One group, journaled: its frame (header, then per record be32 length and
 * the record) and, for the pending tables, per event its id (16 bytes),
 * flags (1 byte: SIDE_GENERATED), its stream name's length (1 byte) and
 * name.  One allocation. */
#define EVL_SIDE_HDR 18
#define SIDE_GENERATED 1 /* the id was generated here, not the client's */
typedef struct evl_jbatch {
    struct evl_jbatch *next;  /* under log->mu */
    uint64_t first, last;     /* positions */
    uint32_t n;
    size_t len;               /* frame bytes */
    size_t cap;               /* bytes of the allocation */
    uint8_t *buf;
    uint8_t *side;
    size_t side_len;
    uint64_t need;            /* LMDB map bytes reserved for it */
} evl_jbatch;

/* A group the writer has written to the journal but not yet synced, with
 * the appends it answers (sync.c).  Groups are answered in the order they
 * were written, each once every frame up to its own is durable. */
typedef struct evl_wgroup {
    struct evl_wgroup *next;  /* under log->mu */
    uint64_t last;            /* its frame's last position, 0: it wrote none */
    int file;                 /* its frame's file and offset */
    uint64_t off;
    int64_t t0;               /* monotonic ns when its write began */
    size_t n;
    evl_req *reqs[];
} evl_wgroup;

/* pend.c: the writer's tables of journaled events LMDB does not hold yet. */
typedef struct evl_pent {
    uint64_t hash;
    const uint8_t *key;       /* in a batch's side area */
    uint32_t len;
    uint64_t pos, rev;
    const uint8_t *rec;       /* ids: the record, in the batch's frame */
    uint32_t rlen;
} evl_pent;
typedef struct evl_pmap {
    evl_pent *slot;
    size_t cap, n;
} evl_pmap;
uint64_t evl__pend_hash(const void *key, size_t len);
evl_pent *evl__pend_get(evl_pmap *m, const void *key, size_t len, uint64_t h);
int evl__pend_put(evl_pmap *m, const evl_pent *e);
void evl__pend_del(evl_pmap *m, const void *key, size_t len, uint64_t h, uint64_t pos);
void evl__pend_del_entry(evl_pmap *m, evl_pent *e);
void evl__pend_free(evl_pmap *m);

/* journal.c: reading the journal from offset 0. */
typedef struct evl_jscan {
    int fd;
    uint64_t size, off, epoch, next, frames;
    uint64_t first;
    uint32_t n;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t *buf;
    size_t cap;
} evl_jscan;
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
    uint64_t psize;             /* LMDB page size */
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
    size_t q_events;          /* events queued */
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
    uint8_t gen_mark[2];      /* in every id generated since the open (writer.c find_id) */
    evl_rndpool rnd;          /* random bits of generated ids (any appending thread) */
    int64_t next_reader_check; /* monotonic ns: when to look for dead readers' slots next */
    MDB_txn *rtxn;            /* the checks' read transaction, one per group */
    evl_pmap pm_streams, pm_ids;
    uint64_t pend_bytes;      /* bytes of batches not yet freed */
    uint64_t pend_need;       /* LMDB map bytes reserved by them */
    int jfd[EVL_JNL_FILES];   /* the journal's files, -1 when closed */
    int jcur;                 /* the file frames go to now, at joff */
    uint64_t joff, jepoch;
    uint64_t jlast[EVL_JNL_FILES]; /* last position in each file's run (0: none) */
    uint64_t jsize[EVL_JNL_FILES]; /* bytes each file is known to have (journal.c: extend) */

    /* The syncer (sync.c, EVL_SYNC_FULL), under mu: groups written, not
     * yet synced, and whether it is syncing some now. */
    evl_wgroup *sq_head, *sq_tail;
    int s_busy, s_stop;
    pthread_cond_t sync_cv;   /* the syncer sleeps here */
    pthread_t syncer;
    int syncer_started;

    /* Journaled groups, under mu: every batch not yet freed, in position
     * order; jb_apply is the first the applier has not put in LMDB.  A
     * batch is linked once written; the applier takes it once durable.  The
     * writer links and frees them, the applier only reads them. */
    evl_jbatch *jb_first, *jb_last, *jb_apply;
    _Atomic uint64_t durable;  /* last acknowledged position; head trails it */
    pthread_cond_t apply_cv;  /* the applier sleeps here */
    int apply_err;            /* under mu: EVL_EFULL while the applier finds no room */
    int a_kick;               /* under mu: commit now (a retry, a reader, the writer waits) */
    int a_waiters;            /* under mu: threads in evl_log_wait() */
    int a_lingering;          /* under mu: the applier waits out its linger (no need to wake it) */
    int64_t a_next_at;        /* applier-private: a lingering applier's next commit (apply.c) */
    uint64_t a_tries;         /* under mu: commit attempts that found no room */
    int a_stop;
    int a_dead;               /* under mu: the applier's commit or flush failed */
    pthread_t applier;
    int applier_started;
    /* Applier-thread private (and recovery's, before the applier starts). */
    evl_ixg *a_ix[EVL_IX_GROUPS]; /* streams, types, categories, meta indexes */
    evl_idbuf *a_ids;
    int64_t a_last_time;      /* the last time put in the times index */
    int a_unflushed;          /* EVL_SYNC_NONE: commits since the last flush */

    pthread_mutex_t watch_mu;
    evl_watcher *watchers;
    _Atomic int n_watchers;   /* the list's length, for the applier, which takes no watch_mu */

    /* Counters (writer writes, anyone reads). */
    _Atomic uint64_t n_groups;
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

/* writer.c: start recovers the journal's tail, then starts the writer and
 * the applier; stop drains both and frees what they held (safe after a
 * start that failed half-way). */
int evl__writer_start(evl_log *log);
void evl__writer_stop(evl_log *log);
/* Answer reqs (async ones are freed); with @p fail, those that succeeded fail with it. */
void evl__complete(evl_log *log, evl_req **reqs, size_t n, int fail);
void evl__commit_timed(evl_log *log, int64_t t0); /* a group commit that began at t0, in the stats */

/* sync.c: the syncer thread (EVL_SYNC_FULL) */
int evl__syncer_start(evl_log *log);
void evl__syncer_stop(evl_log *log);  /* after the writer: answers what is queued */
void evl__sync_submit(evl_log *log, evl_wgroup *g); /* takes g */
void evl__sync_run(evl_log *log, evl_wgroup *list); /* sync, then answer; frees the list */
int evl__sync_idle(evl_log *log);     /* under mu: nothing queued or being synced */
/* Less free space on the log's file system than EVL_LOW_SPACE_BYTES. */
int evl__low_space(evl_log *log);

/* journal.c */
char *evl__jnl_path(const char *dir, int i); /* DIR/log/data.mdb-journal[-1]; caller frees */
int evl__jnl_open(evl_log *log);     /* open or create both, empty them, draw a new epoch */
void evl__jnl_seal(evl_jbatch *b, uint64_t epoch); /* fill in the frame header */
int evl__jnl_write(evl_log *log, const evl_jbatch *b, int sync); /* file jcur, at joff */
int evl__jnl_sync(evl_log *log, int i, uint64_t off); /* fdatasync file i; failed: void the frame at off */
void evl__jnl_void(evl_log *log, int i, uint64_t off); /* zero the frame header at off, synced */
int evl__jnl_scan_open(const char *dir, int i, evl_jscan *s); /* EVL_ENOTFOUND: no such file */
int evl__jnl_scan_next(evl_jscan *s);
void evl__jnl_scan_close(evl_jscan *s);

/* apply.c */
int evl__jnl_recover(evl_log *log);  /* apply the journal's tail past LMDB's head */
void evl__applier_free(evl_log *log); /* the applier's buffers, at close */
int evl__jnl_tail(const char *dir, uint64_t head); /* 1: the journal holds events past head */
int evl__applier_start(evl_log *log);
void evl__applier_stop(evl_log *log);
/* Wait until everything acknowledged before the call is readable (or the
 * applier cannot go on): read-your-writes for the reading entry points. */
void evl__read_barrier(evl_log *log);

/* ixgroup.c: one DUPSORT|DUPFIXED index's entries for a whole applier
 * transaction, grouped by key and put at the end (see the file). */
evl_ixg *evl__ixg_new(size_t vsize); /* caller owns; NULL: out of memory */
void evl__ixg_free(evl_ixg *g);
int evl__ixg_add(evl_ixg *g, const void *key, size_t klen, const uint8_t *val);
/* Put every entry through @p c (a cursor on the index) and empty @p g. */
int evl__ixg_flush(evl_ixg *g, MDB_cursor *c);
void evl__ixg_reset(evl_ixg *g); /* forget the entries (the transaction aborted) */
/* The ids index's entries for a whole applier transaction, put sorted. */
evl_idbuf *evl__ids_new(void); /* caller owns; NULL: out of memory */
void evl__ids_free(evl_idbuf *b);
int evl__ids_add(evl_idbuf *b, const uint8_t id[16], const uint8_t pos[8]);
int evl__ids_flush(evl_idbuf *b, MDB_cursor *c); /* put them all through @p c, empty @p b */
void evl__ids_reset(evl_idbuf *b);

/* meta_idx.c: the actor and correlation indexes.  evl__meta_keys[i] is
 * the meta key that index i (evl__meta_dbi) holds, and the index's name. */
#define EVL_META_KEYS 2
_Static_assert(EVL_IX_GROUPS == 3 + EVL_META_KEYS, "the applier groups every DUPSORT index");
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
