/* The applier: puts journaled groups into LMDB, many per transaction.
 *
 * The writer (writer.c) hands over each group as a sealed journal frame
 * once appenders were acknowledged; this thread commits every frame waiting
 * in one LMDB transaction, then publishes the new head: only then do readers
 * see the events (evl__read_barrier() makes a reader that comes after an
 * acknowledgement wait for it, so read-your-writes holds).  Commits are
 * large, so LMDB writes each touched index page once for many events.
 *
 * A commit that fails for want of space (map full, ENOSPC) or of memory
 * leaves the frames queued and is retried on a clock (EVL_APPLY_RETRY_NS),
 * and at once when an append comes in: the writer refuses that append with
 * EVL_EFULL (EVL_ENOMEM) only if the retry it asked for failed too, so the
 * first append after space or memory is freed succeeds.  Nothing acknowledged is lost: the frames are
 * durable in the journal and a later open applies them.  Any other failure
 * makes the log read-only, as a failed commit always did.
 *
 * The same code applies the journal's tail at open (evl__jnl_recover).
 */
#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log/log_int.h"

/* One cursor per table for a whole transaction.  mdb_put opens a cursor
 * and searches from the root for every entry; a kept cursor that sits on
 * the page the next key goes to skips that search (mdb_cursor_set checks
 * the current page first), which is the common case: positions are
 * appended, ids from the writer are UUIDv7 (ascending by millisecond), and
 * the DUPSORT indexes are put in key order at the end (ixgroup.c).
 * ix[] are the cursors of log->a_ix[], in the same order. */
typedef struct cursors {
    MDB_cursor *ev, *ids;
    MDB_cursor *ix[EVL_IX_GROUPS];
} cursors;

/* A position only grows, so under any key of a DUPSORT index the new
 * entries are the last: MDB_APPENDDUP walks down the rightmost edge of the
 * key's sub-tree instead of searching it (it fails with MDB_KEYEXIST if
 * they are not the last, which would mean a corrupt log), and MDB_MULTIPLE
 * puts a key's entries with one search for the key instead of one each. */
static int groups_flush(evl_log *log, cursors *c) {
    int rc = evl__ids_flush(log->a_ids, c->ids);
    for (size_t i = 0; i < EVL_IX_GROUPS; i++) {
        int r = evl__ixg_flush(log->a_ix[i], c->ix[i]);
        if (!rc) rc = r;
    }
    return rc;
}

static void groups_reset(evl_log *log) {
    if (log->a_ids) evl__ids_reset(log->a_ids);
    for (size_t i = 0; i < EVL_IX_GROUPS; i++)
        if (log->a_ix[i]) evl__ixg_reset(log->a_ix[i]);
}

void evl__applier_free(evl_log *log) {
    evl__ids_free(log->a_ids);
    log->a_ids = NULL;
    for (size_t i = 0; i < EVL_IX_GROUPS; i++) {
        evl__ixg_free(log->a_ix[i]);
        log->a_ix[i] = NULL;
    }
}

/* Put one record; its index entries wait in the groups until the commit. */
static int put_record(evl_log *log, cursors *c, const uint8_t *rec, size_t len) {
    evl_event ev;
    int mrc, rc = evl_log_decode(rec, len, &ev);
    if (rc) return EVL_ECORRUPT;
    uint8_t pkey[8], sent[16];
    evl__put_be64(pkey, ev.position);
    MDB_val k = {8, pkey}, v = {len, (void *)rec};
    if ((mrc = mdb_cursor_put(c->ev, &k, &v, MDB_APPEND))) return evl__lmdb_err(mrc);
    evl__stream_entry(sent, ev.revision, ev.position);
    evl_ixg **g = log->a_ix;
    if ((rc = evl__ids_add(log->a_ids, ev.id, pkey)) || (rc = evl__ixg_add(g[0], ev.stream, ev.stream_len, sent)) ||
        (rc = evl__ixg_add(g[1], ev.type, ev.type_len, pkey)) ||
        (rc = evl__ixg_add(g[2], ev.stream, evl_stream_category(ev.stream, ev.stream_len), pkey)))
        return rc;
    for (size_t i = 0; i < EVL_META_KEYS; i++) {
        const char *s;
        size_t n;
        if (evl__meta_indexed(ev.meta, ev.meta_len, evl__meta_keys[i].key, evl__meta_keys[i].len, &s, &n) &&
            (rc = evl__ixg_add(g[3 + i], s, n, pkey)))
            return rc;
    }
    return EVL_OK;
}

/* Put the records of a frame payload with positions after @p head; the
 * frame's first applied position is indexed under its time when that time
 * is later than any indexed before (*last_time). */
static int put_frame(evl_log *log, MDB_txn *txn, cursors *c, const uint8_t *p, size_t len,
                     uint64_t first, uint64_t head, int64_t *last_time) {
    const uint8_t *end = p + len;
    uint64_t pos = first;
    int indexed = 0;
    while (p < end) {
        if (end - p < 4) return EVL_ECORRUPT;
        uint32_t n = evl__get_be32(p);
        p += 4;
        if (n > (size_t)(end - p)) return EVL_ECORRUPT;
        if (pos > head) {
            if (!indexed) {
                evl_event ev;
                if (evl_log_decode(p, n, &ev) || ev.position != pos) return EVL_ECORRUPT;
                if (ev.time_ns > *last_time) {
                    uint8_t tk[8], tv[8];
                    evl__put_be64(tk, (uint64_t)ev.time_ns);
                    evl__put_be64(tv, pos);
                    MDB_val k = {8, tk}, v = {8, tv};
                    int mrc = mdb_put(txn, log->db_times, &k, &v, MDB_APPEND);
                    if (mrc) return evl__lmdb_err(mrc);
                    *last_time = ev.time_ns;
                }
                indexed = 1;
            }
            int rc = put_record(log, c, p, n);
            if (rc) return rc;
        }
        p += n;
        pos++;
    }
    return EVL_OK;
}

/* A transaction and its cursors (closed by the commit or the abort: LMDB
 * frees a write transaction's cursors with it). */
static int begin(evl_log *log, MDB_txn **txn, cursors *c) {
    for (size_t i = 0; i < EVL_IX_GROUPS; i++)
        if (!log->a_ix[i] && !(log->a_ix[i] = evl__ixg_new(i == 0 ? 16 : 8))) return EVL_ENOMEM;
    if (!log->a_ids && !(log->a_ids = evl__ids_new())) return EVL_ENOMEM;
    int rc = mdb_txn_begin(log->env, NULL, 0, txn);
    if (rc) return evl__lmdb_err(rc);
    MDB_dbi dbi[2 + EVL_IX_GROUPS] = {log->db_events, log->db_ids, log->db_streams, log->db_types, log->db_cats};
    MDB_cursor **out[2 + EVL_IX_GROUPS] = {&c->ev, &c->ids};
    for (size_t i = 0; i < EVL_IX_GROUPS; i++) out[2 + i] = &c->ix[i];
    for (size_t i = 0; i < EVL_META_KEYS; i++) dbi[5 + i] = evl__meta_dbi(log, i);
    for (size_t i = 0; i < 2 + EVL_IX_GROUPS && !rc; i++) rc = mdb_cursor_open(*txn, dbi[i], out[i]);
    if (rc) {
        mdb_txn_abort(*txn);
        return evl__lmdb_err(rc);
    }
    return EVL_OK;
}

/* Abort: the groups forget what this transaction gathered. */
static void abort_txn(evl_log *log, MDB_txn *txn) {
    groups_reset(log);
    mdb_txn_abort(txn);
}

/* LMDB reports a short write as EIO (mdb_page_flush), and a file system
 * that is almost full gives short writes before ENOSPC: a commit that failed
 * with EIO while the file system is almost full failed for want of space. */
static int commit(evl_log *log, MDB_txn *txn) {
    int rc = mdb_txn_commit(txn);
    if (rc == 0) return EVL_OK;
    int err = evl__lmdb_err(rc);
    if (rc == EIO && evl__low_space(log)) err = EVL_EFULL;
    return err;
}

/* ------------------------------------------------------------ recovery */

/* The journal's files, each a run of frames from offset 0 (journal.c),
 * read side by side: the frames that join the head are taken from either
 * file in turn, so the order the files were written in does not matter. */
typedef struct jruns {
    evl_jscan s[EVL_JNL_FILES];
    int open[EVL_JNL_FILES], have[EVL_JNL_FILES]; /* have: s[i] holds a frame */
} jruns;

static int runs_open(const char *dir, jruns *r) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < EVL_JNL_FILES; i++) {
        int rc = evl__jnl_scan_open(dir, i, &r->s[i]);
        if (rc == EVL_ENOTFOUND) continue;
        r->open[i] = 1;
        if (rc) return rc;
        r->have[i] = evl__jnl_scan_next(&r->s[i]);
    }
    return EVL_OK;
}

static void runs_close(jruns *r) {
    for (int i = 0; i < EVL_JNL_FILES; i++)
        if (r->open[i]) evl__jnl_scan_close(&r->s[i]);
}

/* The next frame with events after @p applied that joins it (its first
 * position is at most applied + 1), or NULL: the journal ends there. */
static evl_jscan *runs_next(jruns *r, uint64_t applied) {
    for (int i = 0; i < EVL_JNL_FILES; i++) {
        evl_jscan *s = &r->s[i];
        while (r->have[i] && s->first + s->n - 1 <= applied) r->have[i] = evl__jnl_scan_next(s);
        if (r->have[i] && s->first <= applied + 1) return s;
    }
    return NULL;
}

static void runs_advance(jruns *r, evl_jscan *s) {
    int i = (int)(s - r->s);
    r->have[i] = evl__jnl_scan_next(s);
}

int evl__jnl_tail(const char *dir, uint64_t head) {
    jruns r;
    int tail = runs_open(dir, &r) == EVL_OK && runs_next(&r, head) != NULL;
    runs_close(&r);
    return tail;
}

int evl__jnl_recover(evl_log *log) {
    jruns r;
    int rc = runs_open(log->dir, &r);
    MDB_txn *txn = NULL;
    cursors c;
    uint64_t head = atomic_load(&log->head), applied = head;
    int64_t last_time = log->last_indexed_time;
    /* a run that does not join LMDB's head (storage lost more of the log
     * than of the journal, possible only in EVL_SYNC_NONE) ends it */
    for (evl_jscan *s; rc == EVL_OK && (s = runs_next(&r, applied)); runs_advance(&r, s)) {
        uint64_t last = s->first + s->n - 1;
        if (!txn && (rc = begin(log, &txn, &c))) break;
        rc = put_frame(log, txn, &c, s->payload, s->payload_len, s->first, applied, &last_time);
        if (rc == EVL_OK) applied = last;
    }
    runs_close(&r);
    if (!txn) return rc;
    if (!rc) rc = groups_flush(log, &c);
    if (rc) {
        abort_txn(log, txn);
        return rc;
    }
    if ((rc = commit(log, txn))) return rc;
    if (log->opt.sync == EVL_SYNC_NONE && (rc = evl__lmdb_err(mdb_env_sync(log->env, 1)))) return rc;
    atomic_store(&log->head, applied);
    atomic_store(&log->durable, applied);
    log->next_pos = applied + 1;
    log->last_indexed_time = last_time;
    if (last_time > log->last_time) log->last_time = last_time;
    return EVL_OK;
}

/* ------------------------------------------------------------ the thread */

/* Apply frames from log->jb_apply on, up to max_events (whole frames).
 * Returns EVL_OK with *last set, or the error; nothing is published here. */
static int apply_some(evl_log *log, evl_jbatch *from, uint64_t *last) {
    MDB_txn *txn;
    cursors c;
    int rc = begin(log, &txn, &c);
    if (rc) return rc;
    uint64_t head = atomic_load(&log->head), events = 0;
    int64_t last_time = log->a_last_time;
    for (evl_jbatch *b = from; b && rc == EVL_OK; ) {
        rc = put_frame(log, txn, &c, b->buf + EVL_JNL_HDR, b->len - EVL_JNL_HDR, b->first, head, &last_time);
        *last = b->last;
        events += b->n;
        pthread_mutex_lock(&log->mu);
        b = events < EVL_APPLY_MAX_EVENTS ? b->next : NULL;
        if (b && b->last > atomic_load(&log->durable)) b = NULL; /* written, not yet synced */
        pthread_mutex_unlock(&log->mu);
    }
    if (!rc) rc = groups_flush(log, &c);
    if (rc) {
        abort_txn(log, txn);
        return rc;
    }
    rc = commit(log, txn);
    if (rc) return rc;
    atomic_fetch_add(&log->n_commits, 1);
    if (log->opt.sync == EVL_SYNC_FULL) atomic_fetch_add(&log->n_syncs, 1);
    log->a_last_time = last_time;
    log->a_unflushed = 1;
    return EVL_OK;
}

static void flush(evl_log *log) {
    if (!log->a_unflushed) return;
    log->a_unflushed = 0;
    int rc = mdb_env_sync(log->env, 1);
    atomic_fetch_add(&log->n_syncs, 1);
    if (rc) {
        pthread_mutex_lock(&log->mu);
        log->a_dead = 1;
        if (!log->ro_error) log->ro_error = evl__lmdb_err(rc);
        pthread_cond_broadcast(&log->head_cv);
        pthread_mutex_unlock(&log->mu);
    }
}

static struct timespec at_ns(int64_t t) {
    struct timespec ts = {t / 1000000000, t % 1000000000};
    return ts;
}

/* WHY nicer: acknowledging an append takes the appender, the writer and
 * (over HTTP) a worker; the applier only has to keep up.  At equal
 * priority on two busy CPUs it held a CPU while the workers of the ack path
 * waited for one: evlogd with 64 clients took 18-21k appends/s with it at
 * nice 0 and 24-29k at nice 10-19 (bench/README.md).  It still gets every
 * idle cycle, and when it falls behind by EVL_PENDING_MAX_BYTES the writer
 * waits for it, which leaves it the CPUs.  On Linux a thread has its own
 * nice value; raising it needs no privilege. */
static void lower_priority(unsigned delta) {
    if (!delta) return;
    id_t tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, tid);
    if (cur == -1 && errno) return;
    int want = cur + (int)(delta > 39 ? 39 : delta);
    (void)setpriority(PRIO_PROCESS, tid, want > 19 ? 19 : want); /* advisory: failing is harmless */
}

/* Under mu: a frame is waiting that is durable (sync.c: frames are linked
 * once written, and a sync may yet fail). */
static int appliable(evl_log *log) {
    return log->jb_apply && log->jb_apply->last <= atomic_load(&log->durable);
}

/* Under mu: whether to hold a durable frame back from LMDB for now.
 * WHY.  64 appenders of single events, one commit per ~1 ms: each commit
 * rewrote ~70 pages of the streams index for ~70 events, and the disk
 * took 200 MB/s (4.4 KiB per 119-byte event) whose flushes the journal's
 * fdatasync queued behind: 43-47k events/s.  Committing at most every
 * apply_linger_ms writes each page once for many more events (10 ms:
 * 1.5 KiB per event, 80-107k events/s).  Where each event goes to a
 * stream of its own page (4096 streams), 10 ms still wrote about a page
 * per event; 100 ms: 13-24x SQLite -> 21-24x in alternated pairs.  Nothing depends on the applier's
 * pace but what reads: acknowledgements come from the journal, a read
 * kicks (evl__read_barrier), and a waiter or a watcher turns lingering off,
 * so feeds and projections still get each event as soon as it is durable.
 * The cap keeps a commit within EVL_APPLY_MAX_EVENTS. */
static int lingering(evl_log *log, int64_t now) {
    return log->opt.apply_linger_ms && log->opt.sync == EVL_SYNC_FULL && now < log->a_next_at && !log->a_kick &&
           !log->a_waiters && !atomic_load(&log->n_watchers) &&
           atomic_load(&log->durable) - atomic_load(&log->head) < EVL_LINGER_MAX_EVENTS;
}

static void *applier_main(void *arg) {
    evl_log *log = arg;
    pthread_setname_np(pthread_self(), "evl-applier");
    lower_priority(log->opt.applier_nice);
    int64_t flush_ns = (int64_t)log->opt.flush_interval_ms * 1000000, next_flush = evl__mono_ns() + flush_ns;
    int64_t retry_at = 0, linger_ns = (int64_t)log->opt.apply_linger_ms * 1000000;
    pthread_mutex_lock(&log->mu);
    for (;;) {
        int none = log->opt.sync == EVL_SYNC_NONE;
        /* sleep while there is nothing to do (or while lingering); a stuck
         * commit retries on its own clock, or at once when the log closes
         * (it then gives up) */
        for (;;) {
            int64_t now = evl__mono_ns();
            int ready = appliable(log) && !log->a_dead;
            int retry_wait = log->apply_err && !log->a_kick && now < retry_at;
            int linger = ready && !retry_wait && lingering(log, now);
            if (log->a_stop || (ready && !retry_wait && !linger)) break;
            int64_t until = log->apply_err ? retry_at : linger ? log->a_next_at : none && log->a_unflushed ? next_flush : 0;
            if (!until) {
                pthread_cond_wait(&log->apply_cv, &log->mu);
                continue;
            }
            struct timespec ts = at_ns(until);
            log->a_lingering = linger;
            int timedout = pthread_cond_timedwait(&log->apply_cv, &log->mu, &ts) == ETIMEDOUT;
            log->a_lingering = 0;
            if (timedout && !log->apply_err && !linger) {
                pthread_mutex_unlock(&log->mu);
                flush(log);
                next_flush = evl__mono_ns() + flush_ns;
                pthread_mutex_lock(&log->mu);
            }
        }
        /* the writer's failed sync does not stop this thread: what was
         * acknowledged before it still goes into LMDB */
        evl_jbatch *from = log->a_dead || !appliable(log) ? NULL : log->jb_apply;
        if (!from || (log->a_stop && log->apply_err)) break; /* closing: what is left stays in the journal */
        log->a_kick = 0;
        pthread_mutex_unlock(&log->mu);
        uint64_t last = 0;
        int rc = apply_some(log, from, &last);
        pthread_mutex_lock(&log->mu);
        if (rc == EVL_OK) {
            while (log->jb_apply && log->jb_apply->last <= last) log->jb_apply = log->jb_apply->next;
            log->apply_err = 0;
            log->a_next_at = evl__mono_ns() + linger_ns;
            atomic_store(&log->head, last);
            pthread_cond_broadcast(&log->head_cv);
            /* the writer frees what is applied and calls the commit
             * watchers: not this thread, which readers may be waiting for
             * while they hold a lock a watcher takes */
            pthread_cond_signal(&log->queue_cv);
            if (none && evl__mono_ns() >= next_flush) {
                pthread_mutex_unlock(&log->mu);
                flush(log);
                next_flush = evl__mono_ns() + flush_ns;
                pthread_mutex_lock(&log->mu);
            }
        } else if (rc == EVL_EFULL || rc == EVL_ENOMEM) {
            /* both pass: space is freed, memory too (the index groups
             * allocate as a transaction grows); retried like a full disk */
            log->apply_err = rc;
            log->a_tries++;
            retry_at = evl__mono_ns() + EVL_APPLY_RETRY_NS;
            pthread_cond_broadcast(&log->head_cv);
        } else {
            /* the applier's own commit failed: never retried (fsyncgate) */
            log->a_dead = 1;
            if (!log->ro_error) log->ro_error = rc;
            pthread_cond_broadcast(&log->head_cv);
        }
    }
    pthread_mutex_unlock(&log->mu);
    if (log->opt.sync == EVL_SYNC_NONE) flush(log);
    return NULL;
}

int evl__applier_start(evl_log *log) {
    log->a_last_time = log->last_indexed_time;
    int e = pthread_create(&log->applier, NULL, applier_main, log);
    if (e) return EVL_ESYS(e);
    log->applier_started = 1;
    return EVL_OK;
}

void evl__applier_stop(evl_log *log) {
    pthread_mutex_lock(&log->mu);
    log->a_stop = 1;
    pthread_cond_broadcast(&log->apply_cv);
    pthread_mutex_unlock(&log->mu);
    pthread_join(log->applier, NULL);
    pthread_mutex_lock(&log->mu);
    log->applier_started = 0;
    pthread_cond_broadcast(&log->head_cv); /* a read barrier waiting out a retry */
    pthread_mutex_unlock(&log->mu);
}

void evl__read_barrier(evl_log *log) {
    if (log->opt.read_only) return;
    uint64_t want = atomic_load(&log->durable);
    if (atomic_load(&log->head) >= want) return;
    /* A transaction that ran out of memory is retried shortly: wait for it,
     * or a read right after an acknowledged append would miss it.  A full
     * disk may last: reads then go on with what LMDB holds. */
    pthread_mutex_lock(&log->mu);
    log->a_kick = 1; /* a lingering applier commits now */
    pthread_cond_signal(&log->apply_cv);
    while (atomic_load(&log->head) < want && (!log->apply_err || log->apply_err == EVL_ENOMEM) &&
           !log->a_dead && log->applier_started)
        pthread_cond_wait(&log->head_cv, &log->mu);
    pthread_mutex_unlock(&log->mu);
}
