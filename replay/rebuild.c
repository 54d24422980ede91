/* Rebuilds: a projection built again from position 1 beside the table that
 * serves, then swapped in.
 *
 * The projector thread owns every rebuild of its projection.  It starts the
 * rebuild's thread; when that thread says its shadow has reached the head
 * (or failed), the projector, between two of its own batches, catches the
 * shadow up to the head once more and swaps it in (or cleans up).  From
 * then on it feeds the new file with the same connection, so across the
 * swap no event is applied twice or skipped, with appends arriving
 * throughout.
 *
 * Files: DATA/projections/NAME.db is the name every reader opens.  After
 * the first rebuild it is a symlink to the served generation NAME.db.gN.  A
 * rebuild builds NAME.db.g(N+1) with neither journal nor syncs (it is
 * rebuilt rather than recovered), makes it durable, and renames a new
 * symlink over NAME.db: atomic, so a query opens the old file or the new
 * one, never a half-built one.  SQLite resolves the symlink, so -wal and
 * -shm are named after the generation.  The old generation is unlinked
 * after the swap; a reader still in it keeps its descriptors until it
 * closes.  A generation that is not the target at start-up is a rebuild
 * cut short: it is removed and the rebuild starts again. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include "projections/proj_int.h"

/* Events per shadow transaction: with no journal a commit costs little, so
 * large batches only bound how stale the progress figures get. */
#define REBUILD_BATCH 100000

struct rebuild {
    proj *owner;
    shadow sh;
    int opened;                 /* sh is initialised (the thread ran) */
    evl_proj_spec *spec;        /* owned until the swap hands it to the projection */
    char *path;                 /* the generation being built */
    pthread_t thread;
    int started;
    int64_t t0;
    /* Under owner->eng->mu. */
    int cancel, ready, failed;
    uint64_t position, applied, start_head;
    uint64_t reading;           /* atomic, not under the lock: the batch in progress */
    char error[1600];
};

/* The served generation's file name (no directory), or "" when NAME.db is
 * a plain file or absent. */
static void served_target(const proj *p, char out[NAME_MAX + 1]) {
    char buf[PATH_MAX];
    ssize_t n = readlink(p->path, buf, sizeof buf - 1);
    out[0] = 0;
    if (n <= 0) return;
    buf[n] = 0;
    const char *base = strrchr(buf, '/');
    base = base ? base + 1 : buf;
    size_t len = strlen(base);
    if (len > NAME_MAX) return;
    memcpy(out, base, len + 1);
}

static int is_db_suffix(const char *s) {
    return !*s || !strcmp(s, "-wal") || !strcmp(s, "-shm") || !strcmp(s, "-journal");
}

int evl__proj_gc_files(proj *p) {
    evl_proj_engine *e = p->eng;
    char target[NAME_MAX + 1], prefix[NAME_MAX + 1], path[PATH_MAX];
    served_target(p, target);
    int plen = snprintf(prefix, sizeof prefix, "%s.db.", p->name);
    size_t tlen = strlen(target);
    int cut_short = 0;
    DIR *d = opendir(e->dir);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *f = de->d_name;
        if (strncmp(f, prefix, (size_t)plen)) continue;
        if (tlen && !strncmp(f, target, tlen) && is_db_suffix(f + tlen)) continue;
        snprintf(path, sizeof path, "%s/%s", e->dir, f);
        if (unlink(path) == 0 && f[plen] == 'g' && !strchr(f + plen, '-')) cut_short = 1;
    }
    closedir(d);
    if (tlen) { /* a plain file's journal, left from before the first swap */
        snprintf(path, sizeof path, "%s-wal", p->path);
        unlink(path);
        snprintf(path, sizeof path, "%s-shm", p->path);
        unlink(path);
    }
    return cut_short;
}

static int fsync_path(const char *path, int dir) {
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0) | O_CLOEXEC);
    if (fd < 0) return EVL_ESYS(errno);
    int rc = fsync(fd) == 0 ? EVL_OK : EVL_ESYS(errno);
    close(fd);
    return rc;
}

/* Point NAME.db at the generation at gen (a path in the same directory). */
static int publish(proj *p, const char *gen) {
    char link[PATH_MAX];
    const char *base = strrchr(gen, '/');
    snprintf(link, sizeof link, "%s.link", p->path);
    unlink(link);
    if (symlink(base ? base + 1 : gen, link) != 0) return EVL_ESYS(errno);
    if (rename(link, p->path) != 0) {
        int err = errno;
        unlink(link);
        return EVL_ESYS(err);
    }
    return fsync_path(p->eng->dir, 1);
}

static void *rebuild_main(void *arg) {
    rebuild *rb = arg;
    proj *p = rb->owner;
    evl_proj_engine *e = p->eng;
    char err[1536] = "", type[EVL_MAX_NAME + 1] = "", tname[16];
    snprintf(tname, sizeof tname, "rebuild-%s", p->name);
    pthread_setname_np(pthread_self(), tname);
    uint64_t failed = 0;
    int done = 0;
    rb->opened = 1;
    int rc = evl__proj_shadow_open(&rb->sh, e->log, rb->spec, rb->path, REBUILD_BATCH, err, sizeof err);
    rb->sh.p.progress = &rb->reading;
    while (rc == EVL_OK) {
        pthread_mutex_lock(&e->mu);
        int stop = rb->cancel || e->stop;
        pthread_mutex_unlock(&e->mu);
        if (stop) break;
        uint64_t cp = rb->sh.p.checkpoint;
        int full;
        char why[768];
        rc = evl__proj_apply_batch(&rb->sh.p, 0, 0, &cp, &failed, type, why, sizeof why, &full);
        if (rc) {
            snprintf(err, sizeof err, "position %llu (%s): %s", (unsigned long long)failed, type, why);
            break;
        }
        rb->sh.p.checkpoint = cp;
        pthread_mutex_lock(&e->mu);
        rb->position = cp;
        rb->applied = rb->sh.p.applied;
        pthread_mutex_unlock(&e->mu);
        if (!full) { done = 1; break; } /* at the head (as it was when the batch began) */
    }
    /* the indexes the bulk load went without, before anyone may read the file */
    if (rc == EVL_OK && done) rc = evl__proj_defer_restore(&rb->sh, err, sizeof err);
    pthread_mutex_lock(&e->mu);
    if (rc) {
        rb->failed = 1;
        snprintf(rb->error, sizeof rb->error, "%s", err[0] ? err : evl_strerror(rc));
    } else if (done) {
        rb->ready = 1;
    }
    pthread_cond_broadcast(&e->wake); /* the projector takes it from here */
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void rebuild_free(rebuild *rb) {
    if (rb->opened) evl__proj_shadow_close(&rb->sh);
    evl_proj_spec_free(rb->spec);
    evl_free(rb->path);
    evl_free(rb);
}

void evl__proj_rebuild_start(proj *p, evl_proj_spec *spec) {
    evl_proj_engine *e = p->eng;
    char target[NAME_MAX + 1];
    served_target(p, target);
    /* the next generation after the served one */
    unsigned long g = 0;
    size_t nlen = strlen(p->name);
    if (!strncmp(target, p->name, nlen) && !strncmp(target + nlen, ".db.g", 5)) g = strtoul(target + nlen + 5, NULL, 10);
    rebuild *rb = evl_calloc(1, sizeof *rb);
    size_t n = strlen(p->path) + 24;
    if (!rb || !(rb->path = evl_malloc(n))) {
        evl_free(rb);
        evl_proj_spec_free(spec);
        pthread_mutex_lock(&e->mu);
        p->starting = 0;
        evl_free(p->rb_error);
        p->rb_error = evl__proj_strdup("out of memory");
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&e->mu);
        return;
    }
    snprintf(rb->path, n, "%s.g%lu", p->path, g + 1);
    rb->owner = p;
    rb->spec = spec;
    rb->t0 = evl__mono_ns();
    rb->start_head = evl_log_head(e->log);
    pthread_mutex_lock(&e->mu);
    p->rb = rb;
    p->starting = 0;
    evl_free(p->rb_error);
    p->rb_error = NULL;
    pthread_mutex_unlock(&e->mu);
    evl__proj_report(e, "projection %s: rebuilding from position 1 (spec %s) into %s", p->name, spec->hash,
                     strrchr(rb->path, '/') + 1);
    int err = pthread_create(&rb->thread, NULL, rebuild_main, rb);
    if (err) {
        pthread_mutex_lock(&e->mu);
        rb->failed = 1;
        snprintf(rb->error, sizeof rb->error, "cannot start a thread: %s", strerror(err));
        pthread_mutex_unlock(&e->mu);
    } else {
        rb->started = 1;
    }
}

int evl__proj_rebuild_pending(const proj *p) {
    return p->rb && (p->rb->ready || p->rb->failed);
}

const char *evl__proj_rebuild_hash(const proj *p) {
    return p->rb ? p->rb->spec->hash : NULL;
}

void evl__proj_rebuild_progress(const proj *p, evl_proj_status *s) {
    const rebuild *rb = p->rb;
    if (!rb) return;
    s->rebuild_active = 1;
    memcpy(s->rebuild_hash, rb->spec->hash, 17);
    /* the batch in progress has read further than the last commit */
    uint64_t reading = __atomic_load_n(&rb->reading, __ATOMIC_RELAXED);
    s->rebuild_position = reading > rb->position ? reading : rb->position;
    s->rebuild_applied = rb->applied;
    double secs = (double)(evl__mono_ns() - rb->t0) / 1e9;
    s->rebuild_seconds = secs;
    s->rebuild_rate = secs > 0 ? (double)s->rebuild_position / secs : 0;
    uint64_t left = s->head > s->rebuild_position ? s->head - s->rebuild_position : 0;
    s->rebuild_eta = s->rebuild_rate > 0 ? (double)left / s->rebuild_rate : -1;
}

void evl__proj_rebuild_cancel(proj *p) {
    rebuild *rb = p->rb;
    evl_proj_engine *e = p->eng;
    if (!rb) return;
    pthread_mutex_lock(&e->mu);
    rb->cancel = 1;
    pthread_mutex_unlock(&e->mu);
    if (rb->started) pthread_join(rb->thread, NULL);
    /* the shadow file stays: if nothing replaces it, the next start-up
     * finds it and starts the rebuild again */
    pthread_mutex_lock(&e->mu);
    p->rb = NULL;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&e->mu);
    rebuild_free(rb);
}

/* The last catch-up, in the projector's thread, then durability: the
 * generation is synced before the symlink can point at it. */
static int catch_up(rebuild *rb, char *err, size_t errlen) {
    proj *s = &rb->sh.p;
    for (;;) {
        uint64_t cp = s->checkpoint, failed = 0;
        int full;
        char type[EVL_MAX_NAME + 1] = "", why[768];
        int rc = evl__proj_apply_batch(s, 0, 0, &cp, &failed, type, why, sizeof why, &full);
        if (rc) {
            snprintf(err, errlen, "position %llu (%s): %s", (unsigned long long)failed, type, why);
            return rc;
        }
        s->checkpoint = cp;
        if (!full) break;
    }
    if (evl__proj_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", err, errlen) != SQLITE_OK)
        return EVL_ESQL;
    int rc = fsync_path(rb->path, 0);
    if (rc) snprintf(err, errlen, "syncing %s: %s", rb->path, evl_strerror(rc));
    return rc;
}

#define SWAP(T, a, b) do { T t_ = (a); (a) = (b); (b) = t_; } while (0)

void evl__proj_rebuild_finish(proj *p) {
    rebuild *rb = p->rb;
    evl_proj_engine *e = p->eng;
    char err[1600] = "", old[NAME_MAX + 1];
    if (rb->started) pthread_join(rb->thread, NULL);
    rb->started = 0;
    int rc = rb->failed ? EVL_ESQL : catch_up(rb, err, sizeof err);
    if (rc == EVL_OK) {
        served_target(p, old);
        rc = publish(p, rb->path);
        if (rc) snprintf(err, sizeof err, "cannot swap %s in: %s", rb->path, evl_strerror(rc));
    }
    if (rc) {
        if (!err[0]) snprintf(err, sizeof err, "%s", rb->error);
        evl__proj_report(e, "projection %s: rebuild failed at %s; the old table keeps serving", p->name, err);
        if (rb->opened) evl__proj_teardown(&rb->sh.p);
        evl__proj_remove_db_files(rb->path);
        pthread_mutex_lock(&e->mu);
        p->rb = NULL;
        evl_free(p->rb_error);
        p->rb_error = evl__proj_strdup(err);
        int frozen = p->frozen;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&e->mu);
        rebuild_free(rb);
        /* with nothing feeding the old table, the projection has stopped */
        if (frozen) {
            pthread_mutex_lock(&e->mu);
            p->state = EVL_PROJ_FAULTED;
            evl_free(p->error);
            p->error = evl__proj_strdup(err);
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&e->mu);
        }
        return;
    }
    /* the swap: the projection takes the shadow's connection, statements,
     * plan and spec; the shadow takes the old ones, to be closed */
    proj *s = &rb->sh.p;
    uint64_t events = s->applied;
    pthread_mutex_lock(&e->mu);
    SWAP(evl_proj_spec *, p->spec, rb->spec);
    s->spec = rb->spec;
    SWAP(sqlite3 *, p->db, s->db);
    SWAP(sqlite3_stmt ***, p->stmts, s->stmts);
    SWAP(sqlite3_stmt *, p->cp_update, s->cp_update);
    SWAP(sqlite3_stmt *, p->st_begin, s->st_begin);
    SWAP(sqlite3_stmt *, p->st_commit, s->st_commit);
    SWAP(sqlite3_stmt *, p->st_rollback, s->st_rollback);
    SWAP(plan, p->plan, s->plan);
    SWAP(proj_hist *, p->hist, s->hist); /* the recorder is its connection's pre-update hook */
    SWAP(double, p->seen_matched, s->seen_matched);
    SWAP(double, p->seen_span, s->seen_span);
    p->checkpoint = s->checkpoint;
    p->applied = s->applied;
    p->frozen = 0;
    p->state = p->checkpoint >= evl_log_head(e->log) ? EVL_PROJ_LIVE : EVL_PROJ_CATCHING_UP;
    p->fault_pos = 0;
    evl_free(p->fault_type);
    evl_free(p->error);
    p->fault_type = p->error = NULL;
    p->generation++;
    p->rb = NULL;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&e->mu);
    double secs = (double)(evl__mono_ns() - rb->t0) / 1e9;
    evl__proj_report(e, "projection %s: rebuilt to position %llu in %.2f s (%llu events applied, %.0f positions/s); "
                        "now serving %s", p->name, (unsigned long long)p->checkpoint, secs,
                     (unsigned long long)events, secs > 0 ? (double)p->checkpoint / secs : 0.0,
                     strrchr(rb->path, '/') + 1);
    rebuild_free(rb); /* closes the old connection, frees the old spec */
    /* Queries of this process that opened the old file may still be
     * opening its -wal and -shm: the last of them deletes it. */
    char stale[NAME_MAX + 1] = "";
    int now = 0;
    pthread_mutex_lock(&e->mu);
    if (p->old_pending) { /* two swaps within one slow query: let the older one go */
        memcpy(stale, p->old_target, sizeof stale);
        now = 1;
    }
    uint64_t old_gen = p->generation - 1;
    if (p->readers[old_gen & 1] == 0) {
        p->old_pending = 0;
        pthread_mutex_unlock(&e->mu);
        if (now) evl__proj_remove_generation(p, stale);
        evl__proj_remove_generation(p, old);
        return;
    }
    memcpy(p->old_target, old, sizeof p->old_target);
    p->old_pending = 1;
    p->old_gen = old_gen;
    pthread_mutex_unlock(&e->mu);
    if (now) evl__proj_remove_generation(p, stale);
}

void evl__proj_remove_generation(proj *p, const char *target) {
    char path[PATH_MAX];
    if (target[0]) {
        snprintf(path, sizeof path, "%s/%s", p->eng->dir, target);
        evl__proj_remove_db_files(path);
    } else { /* the rename replaced a plain file: only its journal is left */
        snprintf(path, sizeof path, "%s-wal", p->path);
        unlink(path);
        snprintf(path, sizeof path, "%s-shm", p->path);
        unlink(path);
    }
}

/* ------------------------------------------------------------ the API */

int evl_proj_rebuild(evl_proj_engine *e, const char *name) {
    proj *p = evl__proj_find(e, name);
    if (!p) return EVL_ENOTFOUND;
    pthread_mutex_lock(&e->mu);
    int busy = p->want || p->rb || p->starting;
    pthread_mutex_unlock(&e->mu);
    if (busy) return EVL_OK; /* one is on its way */
    /* The projector swaps specs under the lock: copy the text under it,
     * parse outside it (a parse prepares every statement). */
    pthread_mutex_lock(&e->mu);
    char *text = evl_malloc(p->spec->len + 1), *file = evl__proj_strdup(p->spec->file);
    size_t len = p->spec->len;
    if (text) memcpy(text, p->spec->text, len + 1);
    pthread_mutex_unlock(&e->mu);
    evl_proj_spec *sp = NULL;
    char err[256];
    int rc = text && file ? evl_proj_spec_parse(text, len, file, &sp, err, sizeof err) : EVL_ENOMEM;
    evl_free(text);
    evl_free(file);
    if (rc) return rc;
    pthread_mutex_lock(&e->mu);
    if (!p->want && !p->rb && !p->starting) {
        p->want = sp;
        sp = NULL;
        pthread_cond_broadcast(&e->wake);
    }
    pthread_mutex_unlock(&e->mu);
    evl_proj_spec_free(sp);
    return EVL_OK;
}

int evl_proj_rebuild_wait(evl_proj_engine *e, const char *name, int timeout_ms) {
    proj *p = evl__proj_find(e, name);
    if (!p) return EVL_ENOTFOUND;
    int64_t deadline = evl__mono_ns() + (int64_t)timeout_ms * 1000000;
    struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
    int rc = EVL_OK;
    pthread_mutex_lock(&e->mu);
    while (!p->opened || p->want || p->rb || p->starting) {
        if (e->stop) { rc = EVL_ECLOSED; break; }
        if (pthread_cond_timedwait(&p->cv, &e->mu, &ts) == ETIMEDOUT && (!p->opened || p->want || p->rb || p->starting)) {
            rc = EVL_ETIMEDOUT;
            break;
        }
    }
    if (rc == EVL_OK && p->rb_error) rc = EVL_EFAULTED;
    pthread_mutex_unlock(&e->mu);
    return rc;
}
