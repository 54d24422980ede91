/* Opening and closing the log: the data-dir lock, the LMDB environment and
 * its named databases, the format check, and the statistics. */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log_int.h"

void evl_log_options_init(evl_log_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->sync = EVL_SYNC_FULL;
    opt->flush_interval_ms = 100;
    opt->map_size = (uint64_t)256 << 30;
    opt->max_event_size = EVL_DEFAULT_MAX_EVENT;
    opt->max_readers = 1024;
    opt->max_group_events = 8192;
    opt->journal_lap = EVL_DEFAULT_JOURNAL_LAP;
    opt->applier_nice = 10;
    opt->apply_linger_ms = 100;
}

static int mkdir_p(const char *path) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return EVL_OK;
    return EVL_ESYS(errno);
}

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = evl_malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

/* One writer per data dir: an advisory lock that the kernel drops when the
 * process dies, so a crash never leaves a stale lock behind. */
static int take_lock(evl_log *log) {
    char *path = join(log->dir, "LOCK");
    if (!path) return EVL_ENOMEM;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    evl_free(path);
    if (fd < 0) return EVL_ESYS(errno);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? EVL_EBUSY : EVL_ESYS(e);
    }
    /* Who holds it, for the message a second writer prints: written only
     * once the lock is ours, so a refused opener never touches the file. */
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) { /* advisory only */ }
    log->lock_fd = fd;
    return EVL_OK;
}

static int open_dbs(evl_log *log) {
    MDB_txn *txn;
    unsigned create = log->opt.read_only ? 0 : MDB_CREATE;
    int rc = mdb_txn_begin(log->env, NULL, log->opt.read_only ? MDB_RDONLY : 0, &txn);
    if (rc) return evl__lmdb_err(rc);
    struct { const char *name; MDB_dbi *dbi; unsigned flags; } dbs[] = {
        {"events", &log->db_events, 0},
        {"streams", &log->db_streams, MDB_DUPSORT | MDB_DUPFIXED},
        {"ids", &log->db_ids, 0},
        {"types", &log->db_types, MDB_DUPSORT | MDB_DUPFIXED},
        {"categories", &log->db_cats, MDB_DUPSORT | MDB_DUPFIXED},
        {"times", &log->db_times, 0},
        {"info", &log->db_info, 0},
    };
    for (size_t i = 0; i < EVL_ARRAY_LEN(dbs) && !rc; i++)
        rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | create, dbs[i].dbi);
    if (rc) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? EVL_ENOTFOUND : evl__lmdb_err(rc);
    }
    MDB_val k = {6, "format"}, v;
    rc = mdb_get(txn, log->db_info, &k, &v);
    if (rc == MDB_NOTFOUND && !log->opt.read_only) {
        v.mv_data = "1";
        v.mv_size = 1;
        rc = mdb_put(txn, log->db_info, &k, &v, 0);
    } else if (rc == 0 && !(v.mv_size == 1 && *(char *)v.mv_data == '0' + EVL_FORMAT_VERSION)) {
        mdb_txn_abort(txn);
        return EVL_EVERSION;
    } else if (rc == MDB_NOTFOUND) {
        rc = 0; /* read-only view of a log still being created */
    }
    rc = evl__lmdb_err(rc);
    if (rc == EVL_OK) rc = evl__meta_open(log, txn); /* after the format check: it reads records */
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    uint64_t head = evl__head_from_txn(log, txn);
    atomic_store(&log->head, head);
    atomic_store(&log->durable, head);
    log->next_pos = head + 1;
    /* Resume the clock where the log left it, so time stays non-decreasing
     * across restarts even if the wall clock went back meanwhile. */
    MDB_cursor *c;
    if (mdb_cursor_open(txn, log->db_times, &c) == 0) {
        MDB_val tk, tv;
        if (mdb_cursor_get(c, &tk, &tv, MDB_LAST) == 0 && tk.mv_size == 8)
            log->last_time = log->last_indexed_time = (int64_t)evl__get_be64(tk.mv_data);
        mdb_cursor_close(c);
    }
    /* Commit even a read-only txn: LMDB closes the DBI handles opened in a
     * txn that is aborted, and every later read would fail with EINVAL. */
    if ((rc = mdb_txn_commit(txn))) return evl__lmdb_err(rc);
    return EVL_OK;
}

/* A new log is made in DATA/log.new and renamed to DATA/log once its
 * first meta pages are on disk.  LMDB writes them at creation without a
 * sync, and it refuses an environment whose meta page is torn: a power cut
 * while a log was being created would leave a log that never opens again
 * (the power-loss test found it).  Whatever is in log.new, or a log/ with
 * no data.mdb, is a creation that did not finish: nothing was ever
 * acknowledged from it. */
static int remove_dir(const char *path) {
    static const char *const files[] = {"data.mdb", "lock.mdb", "data.mdb-journal", "data.mdb-journal-1"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *f = join(path, files[i]);
        if (!f) return EVL_ENOMEM;
        int bad = unlink(f) != 0 && errno != ENOENT;
        evl_free(f);
        if (bad) return EVL_ESYS(errno);
    }
    return rmdir(path) != 0 && errno != ENOENT ? EVL_ESYS(errno) : EVL_OK;
}

static int fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return EVL_ESYS(errno);
    int rc = fsync(fd) != 0 ? EVL_ESYS(errno) : EVL_OK;
    close(fd);
    return rc;
}

static int create_log(const char *dir, const char *logdir, size_t map_size) {
    char *tmp = join(dir, "log.new");
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    int rc = tmp ? EVL_OK : EVL_ENOMEM;
    if (rc == EVL_OK) rc = remove_dir(tmp);
    if (rc == EVL_OK && mkdir(tmp, 0755) != 0) rc = EVL_ESYS(errno);
    if (rc == EVL_OK) rc = evl__lmdb_err(mdb_env_create(&env));
    if (rc == EVL_OK) rc = evl__lmdb_err(mdb_env_set_mapsize(env, map_size));
    if (rc == EVL_OK) rc = evl__lmdb_err(mdb_env_open(env, tmp, MDB_NOTLS, 0644));
    /* one synced commit: both meta pages written, and flushed */
    if (rc == EVL_OK) rc = evl__lmdb_err(mdb_txn_begin(env, NULL, 0, &txn));
    if (rc == EVL_OK) {
        rc = evl__lmdb_err(mdb_txn_commit(txn));
        txn = NULL;
    }
    if (rc == EVL_OK) rc = evl__lmdb_err(mdb_env_sync(env, 1));
    if (txn) mdb_txn_abort(txn);
    if (env) mdb_env_close(env);
    if (rc == EVL_OK) rc = remove_dir(logdir);
    if (rc == EVL_OK && rename(tmp, logdir) != 0) rc = EVL_ESYS(errno);
    if (rc == EVL_OK) rc = fsync_dir(dir);
    evl_free(tmp);
    return rc;
}

int evl_log_open(const char *dir, const evl_log_options *opt, evl_log **out) {
    int rc;
    char *logdir = NULL;
    evl_log *log = evl_calloc(1, sizeof *log);
    *out = NULL;
    if (!log) return EVL_ENOMEM;
    if (opt) log->opt = *opt;
    else evl_log_options_init(&log->opt);
    log->lock_fd = -1;
    log->ino_fd = -1;
    log->jfd[0] = log->jfd[1] = -1;
    if (!log->opt.journal_lap) log->opt.journal_lap = EVL_DEFAULT_JOURNAL_LAP;
    pthread_mutex_init(&log->mu, NULL);
    pthread_mutex_init(&log->watch_mu, NULL);
    pthread_mutex_init(&log->ino_mu, NULL);
    evl__rnd_init(&log->rnd);
    pthread_cond_init(&log->queue_cv, NULL);
    pthread_cond_init(&log->sync_cv, NULL);
    {
        /* evl_log_wait() uses timed waits: measure them on the monotonic clock */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&log->head_cv, &ca);
        pthread_cond_destroy(&log->queue_cv);
        pthread_cond_init(&log->queue_cv, &ca);
        pthread_cond_init(&log->apply_cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    log->dir = evl_malloc(strlen(dir) + 1);
    if (!log->dir) { rc = EVL_ENOMEM; goto fail; }
    strcpy(log->dir, dir);
    if (!(logdir = join(dir, "log"))) { rc = EVL_ENOMEM; goto fail; }

    if (log->opt.read_only) {
        struct stat st;
        char *data = join(logdir, "data.mdb");
        int missing = !data || stat(data, &st) != 0;
        evl_free(data);
        if (missing) { rc = EVL_ENOTFOUND; goto fail; }
    } else {
        if ((rc = mkdir_p(dir)) || (rc = take_lock(log))) goto fail;
        struct stat st;
        char *data = join(logdir, "data.mdb");
        if (!data) { rc = EVL_ENOMEM; goto fail; }
        int missing = stat(data, &st) != 0;
        evl_free(data);
        if (missing && (rc = create_log(dir, logdir, (size_t)log->opt.map_size))) goto fail;
    }
    long pg = sysconf(_SC_PAGESIZE);
    log->os_page = pg > 0 ? (size_t)pg : 4096;
    if ((rc = evl__lmdb_err(mdb_env_create(&log->env)))) goto fail;
    mdb_env_set_maxdbs(log->env, 16);
    mdb_env_set_maxreaders(log->env, log->opt.max_readers);
    if ((rc = evl__lmdb_err(mdb_env_set_mapsize(log->env, (size_t)log->opt.map_size)))) goto fail;
    /* MDB_NOTLS: read transactions belong to iterators, not threads, so an
     * event-loop thread may hold several and hand them around. */
    unsigned flags = MDB_NOTLS;
    if (log->opt.read_only) flags |= MDB_RDONLY;
    if (log->opt.sync == EVL_SYNC_NONE) flags |= MDB_NOSYNC;
    if ((rc = evl__lmdb_err(mdb_env_open(log->env, logdir, flags, 0644)))) goto fail;
    int dead = 0;
    mdb_reader_check(log->env, &dead); /* slots of readers that died */
    if ((rc = open_dbs(log))) goto fail;
    {
        MDB_stat ms;
        mdb_env_stat(log->env, &ms);
        log->psize = ms.ms_psize;
    }
    if (log->opt.read_only && evl__jnl_tail(dir, atomic_load(&log->head))) {
        /* A writer stopped before the applier put its last groups in LMDB
         * (a crash; a full disk).  If none runs now, apply them, as the
         * writer's own open would, so this view misses nothing
         * acknowledged; with one running (busy) it is doing just that. */
        evl_log_options wo = log->opt;
        evl_log *w;
        wo.read_only = 0;
        if (evl_log_open(dir, &wo, &w) == EVL_OK) {
            evl_log_close(w);
            mdb_env_close(log->env);
            log->env = NULL;
            evl_free(logdir);
            evl_log_close(log);
            wo.read_only = 1;
            return evl_log_open(dir, &wo, out);
        }
    }
    if (!log->opt.read_only && (rc = evl__writer_start(log))) goto fail;
    evl_free(logdir);
    *out = log;
    return EVL_OK;
fail:
    evl_free(logdir);
    evl_log_close(log);
    return rc;
}

void evl_log_close(evl_log *log) {
    if (!log) return;
    if (!log->opt.read_only) evl__writer_stop(log);
    evl__applier_free(log);
    evl__sha256_free(log->hasher);
    if (log->env) mdb_env_close(log->env);
    if (log->lock_fd >= 0) close(log->lock_fd);
    if (log->ino_fd >= 0) close(log->ino_fd);
    while (log->watchers) {
        evl_watcher *w = log->watchers;
        log->watchers = w->next;
        evl_free(w);
    }
    pthread_mutex_destroy(&log->mu);
    pthread_mutex_destroy(&log->watch_mu);
    pthread_mutex_destroy(&log->ino_mu);
    evl__rnd_destroy(&log->rnd);
    pthread_cond_destroy(&log->queue_cv);
    pthread_cond_destroy(&log->head_cv);
    pthread_cond_destroy(&log->apply_cv);
    pthread_cond_destroy(&log->sync_cv);
    evl_free(log->dir);
    evl_free(log);
}

const char *evl_log_dir(const evl_log *log) { return log->dir; }

/* mdb_reader_list() prints a header, then a line per live slot, or
 * "(no active readers)": count the slot lines. */
static int count_reader(const char *msg, void *ctx) {
    if (!strstr(msg, "txnid") && !strstr(msg, "(no active")) (*(uint64_t *)ctx)++;
    return 0;
}

static uint64_t count_keys(MDB_txn *txn, MDB_dbi dbi) {
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t n = 0;
    if (mdb_cursor_open(txn, dbi, &c)) return 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_NODUP))
        n++;
    mdb_cursor_close(c);
    return n;
}

int evl_log_stats_get(evl_log *log, evl_log_stats *st) {
    MDB_txn *txn;
    MDB_stat ms;
    MDB_envinfo ei;
    memset(st, 0, sizeof *st);
    evl__read_barrier(log);
    int rc = mdb_txn_begin(log->env, NULL, MDB_RDONLY, &txn);
    if (rc) return evl__lmdb_err(rc);
    st->head = evl__head_from_txn(log, txn);
    st->streams = count_keys(txn, log->db_streams);
    st->types = count_keys(txn, log->db_types);
    st->categories = count_keys(txn, log->db_cats);
    MDB_cursor *c;
    if (mdb_cursor_open(txn, log->db_times, &c) == 0) {
        MDB_val k, v;
        if (mdb_cursor_get(c, &k, &v, MDB_FIRST) == 0) st->first_time_ns = (int64_t)evl__get_be64(k.mv_data);
        mdb_cursor_close(c);
    }
    if (st->head) {
        uint8_t *raw;
        size_t len;
        evl_event ev;
        /* the last commit's time may equal an earlier one's and then has no
         * times entry of its own: read it from the record */
        if (evl_log_get(log, st->head, &raw, &len) == EVL_OK) {
            if (evl_log_decode(raw, len, &ev) == EVL_OK) st->last_time_ns = ev.time_ns;
            evl_free(raw);
        }
    }
    mdb_txn_abort(txn);
    mdb_env_stat(log->env, &ms);
    mdb_env_info(log->env, &ei);
    st->map_size = ei.me_mapsize;
    mdb_reader_list(log->env, count_reader, &st->readers);
    st->used_bytes = (uint64_t)(ei.me_last_pgno + 1) * ms.ms_psize;
    char *path = join(log->dir, "log/data.mdb");
    struct stat fs;
    if (path && stat(path, &fs) == 0) st->file_bytes = (uint64_t)fs.st_blocks * 512;
    evl_free(path);
    st->groups = atomic_load(&log->n_groups);
    st->commits = atomic_load(&log->n_commits);
    st->appends = atomic_load(&log->n_appends);
    st->appended_events = atomic_load(&log->n_events);
    st->appended_bytes = atomic_load(&log->n_bytes);
    st->conflicts = atomic_load(&log->n_conflicts);
    st->syncs = atomic_load(&log->n_syncs);
    st->stale_readers_cleared = atomic_load(&log->n_stale_readers);
    for (int b = 0; b <= EVL_COMMIT_BUCKETS; b++) st->commit_us[b] = atomic_load(&log->commit_us[b]);
    st->commit_us_sum = atomic_load(&log->commit_us_sum);
    pthread_mutex_lock(&log->mu);
    st->read_only_error = log->ro_error;
    pthread_mutex_unlock(&log->mu);
    return EVL_OK;
}

int evl_log_backup(evl_log *log, const char *dest, uint64_t *head) {
    int rc;
    char *logdir = join(dest, "log"), *data = logdir ? join(logdir, "data.mdb") : NULL;
    struct stat st;
    if (!logdir || !data) { rc = EVL_ENOMEM; goto out; }
    if (stat(data, &st) == 0) { rc = EVL_EBUSY; goto out; }
    if ((rc = mkdir_p(dest)) || (rc = mkdir_p(logdir))) goto out;
    /* the head of the snapshot the copy is taken from: read it first, the copy
     * sees at least this much (a later head only adds events) */
    if (head) *head = evl_log_head(log); /* after the read barrier: all acknowledged */
    rc = evl__lmdb_err(mdb_env_copy2(log->env, logdir, MDB_CP_COMPACT));
out:
    evl_free(data);
    evl_free(logdir);
    return rc;
}
