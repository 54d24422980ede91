/* The projection engine: one thread per projection.
 *
 * Each projector owns one SQLite connection and its prepared statements.
 * It sleeps on the engine's condition variable, which the log's commit
 * notification signals; it then reads the events after its checkpoint and
 * applies them in one SQLite transaction that also moves the checkpoint, so
 * a crash anywhere leaves rows and checkpoint in agreement.  A failing
 * statement rolls the batch back, re-applies the events before the failing
 * one, and leaves the projection faulted at that event; the others go on.
 *
 * Per event the engine should add little to SQLite's own work (bench/project
 * measures it against the same statements run straight into SQLite): the
 * spec is compiled into lookup tables once ("the plan"), maps and arrays are
 * written as JSON text without building a tree, nothing is allocated per
 * event, and events no handler wants are skipped through the log's type
 * index when they are most of the log ("reading the log").  Long batches
 * (a rebuild, a catch-up) have the reading, the handler lookups and the
 * JSON text done by a reader thread ahead of the projector (source.c). */
#include <dirent.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evlog/json.h"
#include "evlog/mp.h"
#include "projections/proj_int.h"

void evl__proj_report(evl_proj_engine *e, const char *fmt, ...) {
    if (!e->opt.report) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    e->opt.report(e->opt.report_arg, line);
}

/* Run every handler that matches; on failure fill err with "file:line: message". */
static int apply_event(proj *p, const src_ev *se, int *matched, char *err, size_t errlen) {
    const evl_proj_spec *sp = p->spec;
    const evl_event *ev = &se->ev;
    plan *pl = &p->plan;
    ev_ctx c = {.ev = ev, .dval = pl->dval, .mval = pl->mval};
    int data_done = 0, meta_done = 0;
    uint32_t nh;
    const uint32_t *hl;
    uint64_t dwant = 0, mwant = 0;
    if (se->prepared) { /* the reader thread did the lookups */
        hl = se->hl;
        nh = se->nh;
        c.dval = se->dval;
        c.mval = se->mval;
        c.djson = se->djson;
        c.djson_len = se->djson_len;
        data_done = meta_done = 1;
    } else {
        hl = evl__proj_handlers_for(pl, ev->type, ev->type_len, &nh);
        /* the slots this event's handlers bind, so the walk of its map can stop early */
        for (uint32_t x = 0; x < nh; x++) {
            dwant |= pl->dmask[hl[x]];
            mwant |= pl->mmask[hl[x]];
        }
        if (pl->data.n > 64) dwant = 0;
        if (pl->meta.n > 64) mwant = 0;
    }
    *matched = nh > 0;
    if (p->hist && nh) evl__proj_hist_begin(p->hist, ev->position);
    for (uint32_t x = 0; x < nh; x++) {
        uint32_t h = hl[x];
        const spec_handler *hd = &sp->handlers[h];
        if (pl->need_data[h] && !data_done) {
            evl__proj_index_map(&pl->data, pl->dval, ev->data, ev->data_len, dwant);
            data_done = 1;
        }
        if (pl->need_meta[h] && !meta_done) {
            evl__proj_index_map(&pl->meta, pl->mval, ev->meta, ev->meta_len, mwant);
            meta_done = 1;
        }
        for (size_t s = 0; s < hd->n_stmts; s++) {
            sqlite3_stmt *st = p->stmts[h][s];
            int rc = evl__proj_bind_all(pl, st, &hd->stmts[s], pl->slot[h][s], &c);
            if (rc == SQLITE_OK) {
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
                if (rc == SQLITE_DONE) rc = SQLITE_OK;
            }
            if (rc != SQLITE_OK) {
                snprintf(err, errlen, "%s:%d: %s", sp->file, hd->stmts[s].line, sqlite3_errmsg(p->db));
                sqlite3_reset(st);
                if (p->hist) evl__proj_hist_clear(p->hist);
                return rc;
            }
            sqlite3_reset(st);
            if (p->hist && (rc = evl__proj_hist_flush(p->hist, p->db, err, errlen)) != SQLITE_OK) return rc;
        }
    }
    return SQLITE_OK;
}

int evl__proj_exec(sqlite3 *db, const char *sql, char *err, size_t errlen) {
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK && err) snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

static void set_fault(proj *p, uint64_t pos, const char *type, const char *msg) {
    evl_proj_engine *e = p->eng;
    /* Report and record first: whoever a waiter wakes (evl_proj_wait returns
     * EVL_EFAULTED) finds the fault already said and in the file. */
    evl__proj_report(e, "projection %s faulted at position %llu (%s): %s", p->name,
           (unsigned long long)pos, type && *type ? type : "?", msg);
    /* In the file too, so that other processes (evlog projections beside a
     * running evlogd) see why the projection stopped. */
    sqlite3_stmt *st;
    if (p->db && sqlite3_prepare_v2(p->db, "UPDATE _evl_checkpoint SET fault_position = ?1, fault_type = ?2,"
                                           " error = ?3 WHERE id = 1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)pos);
        if (type && *type) sqlite3_bind_text(st, 2, type, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, msg, -1, SQLITE_TRANSIENT);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    pthread_mutex_lock(&e->mu);
    p->state = EVL_PROJ_FAULTED;
    p->fault_pos = pos;
    evl_free(p->fault_type);
    evl_free(p->error);
    p->fault_type = type && *type ? evl__proj_strdup(type) : NULL;
    p->error = evl__proj_strdup(msg);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------------ reading the log
 *
 * A batch reads the events after the checkpoint in one of two ways:
 * - sequential: one iterator over every position (the cheapest way to see
 *   every event);
 * - typed: one iterator per handled type over the log's type index, merged
 *   by position.  Events no handler wants are then never read or decoded:
 *   a projection fed by a log where most events are someone else's (nodes
 *   among task events, every projection of a server that runs several)
 *   pays only for its own.  It costs one index lookup per event, so it pays
 *   only when most events are skipped.  Not with an `@on *` handler.
 * The choice is made per batch from the share of events that matched
 * handlers in the batches before (a moving average); the checkpoint means
 * the same either way: every position up to it has been considered. */

#define TYPED_MIN_SPAN 256     /* a batch this small is cheaper read sequentially */

/* Can this projection read typed at all?  Not with a wildcard, not with
 * too many types. */
static int typed_possible(const proj *p) {
    const plan *pl = &p->plan;
    return pl->wn == 0 && pl->types.n > 0 && pl->types.n <= TYPED_MAX_TYPES;
}

/* Read this batch typed?  When it is worth it, and recent batches skipped
 * most events. */
static int want_typed(const proj *p, uint64_t span) {
    return typed_possible(p) && span >= TYPED_MIN_SPAN && p->seen_span > 0 && p->seen_matched * 2 < p->seen_span;
}

static int step_txn(proj *p, sqlite3_stmt *st, char *err, size_t errlen) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) return SQLITE_OK;
    if (err) snprintf(err, errlen, "%s", sqlite3_errmsg(p->db));
    return rc;
}

/* SQLite says "disk I/O error" and no more: name the file, the extended
 * code and the errno behind an I/O-class failure. */
static void describe_io(proj *p, char *err, size_t errlen) {
    if (!p->db) return;
    int x = sqlite3_extended_errcode(p->db), primary = x & 0xff;
    if (primary != SQLITE_IOERR && primary != SQLITE_FULL && primary != SQLITE_READONLY &&
        primary != SQLITE_CANTOPEN && primary != SQLITE_CORRUPT && primary != SQLITE_NOTADB)
        return;
    static const struct { int code; const char *name; } names[] = {
        {SQLITE_IOERR_READ, "a read failed"}, {SQLITE_IOERR_SHORT_READ, "a read came short"},
        {SQLITE_IOERR_WRITE, "a write failed"}, {SQLITE_IOERR_FSYNC, "a sync failed"},
        {SQLITE_IOERR_DIR_FSYNC, "a directory sync failed"}, {SQLITE_IOERR_TRUNCATE, "a truncate failed"},
        {SQLITE_IOERR_FSTAT, "fstat failed"}, {SQLITE_IOERR_SHMOPEN, "the -shm file does not open"},
        {SQLITE_IOERR_SHMSIZE, "the -shm file cannot grow"}, {SQLITE_IOERR_SHMMAP, "the -shm file cannot map"},
        {SQLITE_IOERR_DELETE, "a delete failed"}, {SQLITE_READONLY_DBMOVED, "the file was moved"},
    };
    const char *what = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].code == x) what = names[i].name;
    size_t n = strlen(err);
    int sys = sqlite3_system_errno(p->db);
    if (n < errlen)
        snprintf(err + n, errlen - n, " (%s: %s%sSQLite code %d%s%s)", p->path, what ? what : "",
                 what ? ", " : "", x, sys ? ", errno " : "", sys ? strerror(sys) : "");
}

/* Did the statement fail for want of disk space?  Then the event is fine
 * and the batch can be applied again once there is room: a full disk is
 * not a fault of the projection. */
static int out_of_space(proj *p) {
    if (!p->db) return 0;
    int x = sqlite3_extended_errcode(p->db), sys = sqlite3_system_errno(p->db);
    return (x & 0xff) == SQLITE_FULL || ((x & 0xff) == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT));
}

/* Apply events (checkpoint, until] — until = 0: as many as the batch allows.
 * Returns the new checkpoint; *failed_at is set when an event failed.
 * @p timed: also end the batch after 250 ms (not when re-applying the
 * events before a failure: those must all be applied). */
int evl__proj_apply_batch(proj *p, uint64_t until, int timed, uint64_t *new_cp, uint64_t *failed_at,
                          char fault_type[EVL_MAX_NAME + 1], char *err, size_t errlen, int *full) {
    src src;
    const src_ev *se = NULL;
    uint64_t cp = p->checkpoint, n = 0, applied = p->applied, start = cp;
    size_t max = p->eng->opt.batch_events;
    *failed_at = 0;
    *full = 0;
    uint64_t head = until ? until : evl_log_head(p->eng->log);
    int typed = head > cp && want_typed(p, head - cp);
    /* typed iterators must all stop at one head, and the checkpoint may pass
     * the events none of them returns: give them an explicit end */
    int rc = evl__proj_src_open(p, typed, cp + 1, typed ? head : until, head <= cp ? 0 : head - cp < max ? head - cp : max, &src);
    if (rc) { snprintf(err, errlen, "reading the log: %s", evl_strerror(rc)); *failed_at = cp + 1; return rc; }
    if (step_txn(p, p->st_begin, err, errlen) != SQLITE_OK) {
        evl__proj_src_close(&src);
        *failed_at = cp + 1;
        return EVL_ESQL;
    }
    /* n counts the events applied (what the SQLite transaction holds; events
     * no handler wants cost no SQL), read the events looked at */
    int64_t t0 = evl__mono_ns();
    uint64_t read = 0;
    while (n < max) {
        rc = evl__proj_src_next(&src, &se);
        if (rc == EVL_END) {
            rc = EVL_OK;
            if (typed) cp = head; /* every position up to the head has been considered */
            break;
        }
        if (rc) {
            snprintf(err, errlen, "reading position %llu: %s", (unsigned long long)cp + 1, evl_strerror(rc));
            *failed_at = cp + 1;
            break;
        }
        int matched;
        const evl_event *ev = &se->ev;
        if (apply_event(p, se, &matched, err, errlen) != SQLITE_OK) {
            *failed_at = ev->position;
            memcpy(fault_type, ev->type, ev->type_len); /* before the source is closed */
            fault_type[ev->type_len] = 0;
            rc = EVL_ESQL;
            break;
        }
        applied += (uint64_t)matched;
        n += (uint64_t)matched;
        cp = ev->position;
        read++;
        /* a shadow's batches are long: let its progress show inside them */
        if (p->progress && (read & 1023) == 0) __atomic_store_n(p->progress, cp, __ATOMIC_RELAXED);
        if (timed && (read & 255) == 0) {
            /* bound a batch in time too, so read-your-writes waits stay short */
            if (evl__mono_ns() - t0 > 250000000) { *full = 1; break; }
            /* reading sequentially, but most events are someone else's: end
             * the batch so that the next one reads typed */
            if (!typed && (read & 4095) == 0 && n * 2 < read && typed_possible(p)) { *full = 1; break; }
        }
    }
    if (n == max) *full = 1;
    if (rc == EVL_OK) {
        char now[40];
        evl_time_format(evl__now_ns(), 3, now);
        sqlite3_bind_int64(p->cp_update, 1, (sqlite3_int64)cp);
        sqlite3_bind_int64(p->cp_update, 2, (sqlite3_int64)applied);
        sqlite3_bind_text(p->cp_update, 3, now, -1, SQLITE_TRANSIENT);
        int src_rc = sqlite3_step(p->cp_update);
        sqlite3_reset(p->cp_update);
        if (src_rc != SQLITE_DONE || step_txn(p, p->st_commit, err, errlen) != SQLITE_OK) {
            if (src_rc != SQLITE_DONE) snprintf(err, errlen, "checkpoint: %s", sqlite3_errmsg(p->db));
            *failed_at = cp + 1;
            rc = EVL_ESQL;
        }
    }
    if (rc) {
        if (rc == EVL_ESQL && out_of_space(p)) rc = EVL_EFULL;
        if (rc == EVL_ESQL || rc == EVL_EFULL) describe_io(p, err, errlen); /* before the rollback resets the codes */
        step_txn(p, p->st_rollback, NULL, 0);
    } else {
        /* what share of the events matched, lately: decides the next batch's reading */
        p->seen_matched = p->seen_matched * 0.75 + (double)(applied - p->applied);
        p->seen_span = p->seen_span * 0.75 + (double)(cp - start);
        p->applied = applied;
        *new_cp = cp;
    }
    evl__proj_src_close(&src);
    return rc;
}

/* ------------------------------------------------------------ set-up */

void evl__proj_remove_db_files(const char *path) {
    char buf[4096];
    unlink(path);
    snprintf(buf, sizeof buf, "%s-wal", path);
    unlink(buf);
    snprintf(buf, sizeof buf, "%s-shm", path);
    unlink(buf);
}

static int create_schema(proj *p, char *err, size_t errlen) {
    char sql[512];
    sqlite3_stmt *st = NULL;
    if (evl__proj_exec(p->db, "BEGIN IMMEDIATE", err, errlen) != SQLITE_OK) return EVL_ESQL;
    /* The spec's text goes into the file: when the spec changes, the old
     * table keeps being fed by the spec it was built with until the rebuilt
     * one takes over, and a backup can carry the specs in use. */
    snprintf(sql, sizeof sql,
             "CREATE TABLE _evl_checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), projection TEXT NOT NULL,"
             " position INTEGER NOT NULL, spec_hash TEXT NOT NULL, events_applied INTEGER NOT NULL,"
             " updated_at TEXT, fault_position INTEGER, fault_type TEXT, error TEXT, spec_file TEXT, spec TEXT);");
    int ok = evl__proj_exec(p->db, p->spec->ddl, err, errlen) == SQLITE_OK &&
             evl__proj_exec(p->db, sql, err, errlen) == SQLITE_OK &&
             evl__proj_hist_create(p->db, p->spec, err, errlen) == SQLITE_OK &&
             sqlite3_prepare_v2(p->db, "INSERT INTO _evl_checkpoint (id, projection, position, spec_hash, events_applied,"
                                       " spec_file, spec) VALUES (1, ?1, 0, ?2, 0, ?3, ?4)", -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(st, 1, p->spec->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->spec->hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, p->spec->file, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, p->spec->text, (int)p->spec->len, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
        if (!ok) snprintf(err, errlen, "%s", sqlite3_errmsg(p->db));
    }
    sqlite3_finalize(st);
    if (!ok || evl__proj_exec(p->db, "COMMIT", err, errlen) != SQLITE_OK) {
        evl__proj_exec(p->db, "ROLLBACK", NULL, 0);
        return EVL_ESQL;
    }
    return EVL_OK;
}

int evl__proj_setup(proj *p, int how, char *err, size_t errlen) {
    char hash[17];
    uint64_t pos = 0, applied = 0;
    if (how & SETUP_FRESH) evl__proj_remove_db_files(p->path);
    int rc = evl__proj_open_writer(p->path, &p->db, err, errlen);
    if (rc) return rc;
    /* A file being rebuilt is worth nothing after a crash (it is built
     * again), so it needs neither a journal nor a sync until it is served. */
    if ((how & SETUP_BULK) &&
        evl__proj_exec(p->db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", err, errlen) != SQLITE_OK)
        return EVL_ESQL;
    rc = (how & SETUP_FRESH) ? EVL_ENOTFOUND : evl__proj_read_checkpoint(p->db, &pos, hash, &applied);
    if (rc == EVL_ENOTFOUND) {
        pos = applied = 0;
        if ((rc = create_schema(p, err, errlen))) return rc;
    } else if (rc) {
        snprintf(err, errlen, "%s: cannot read the checkpoint: %s", p->path, evl_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&p->eng->mu);
    p->checkpoint = pos;
    p->applied = applied;
    pthread_cond_broadcast(&p->cv); /* a waiter may already want this position */
    pthread_mutex_unlock(&p->eng->mu);
    const evl_proj_spec *sp = p->spec;
    if (!(p->stmts = evl_calloc(sp->n_handlers ? sp->n_handlers : 1, sizeof *p->stmts))) return EVL_ENOMEM;
    for (size_t h = 0; h < sp->n_handlers; h++) {
        if (!(p->stmts[h] = evl_calloc(sp->handlers[h].n_stmts, sizeof **p->stmts))) return EVL_ENOMEM;
        for (size_t s = 0; s < sp->handlers[h].n_stmts; s++)
            if (sqlite3_prepare_v3(p->db, sp->handlers[h].stmts[s].sql, -1, SQLITE_PREPARE_PERSISTENT,
                                   &p->stmts[h][s], NULL) != SQLITE_OK) {
                snprintf(err, errlen, "%s:%d: %s", sp->file, sp->handlers[h].stmts[s].line, sqlite3_errmsg(p->db));
                return EVL_ESQL;
            }
    }
    if ((rc = evl__proj_plan_build(&p->plan, sp))) return rc;
    if ((rc = evl__proj_hist_setup(p, err, errlen))) return rc;
    if (sqlite3_prepare_v3(p->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &p->st_begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(p->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &p->st_commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(p->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &p->st_rollback, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(p->db));
        return EVL_ESQL;
    }
    if (sqlite3_prepare_v3(p->db, "UPDATE _evl_checkpoint SET position = ?1, events_applied = ?2, updated_at = ?3 WHERE id = 1",
                           -1, SQLITE_PREPARE_PERSISTENT, &p->cp_update, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(p->db));
        return EVL_ESQL;
    }
    return EVL_OK;
}

void evl__proj_teardown(proj *p) {
    if (p->stmts) {
        for (size_t h = 0; h < p->spec->n_handlers; h++) {
            if (!p->stmts[h]) continue;
            for (size_t s = 0; s < p->spec->handlers[h].n_stmts; s++) sqlite3_finalize(p->stmts[h][s]);
            evl_free(p->stmts[h]);
        }
        evl_free(p->stmts);
        p->stmts = NULL;
    }
    evl__proj_hist_teardown(p);
    sqlite3_finalize(p->cp_update);
    p->cp_update = NULL;
    sqlite3_finalize(p->st_begin);
    sqlite3_finalize(p->st_commit);
    sqlite3_finalize(p->st_rollback);
    p->st_begin = p->st_commit = p->st_rollback = NULL;
    if (p->spec) evl__proj_plan_free(&p->plan, p->spec);
    sqlite3_close(p->db);
    p->db = NULL;
}

int evl__proj_spec_copy(const evl_proj_spec *sp, evl_proj_spec **out) {
    char err[256];
    return evl_proj_spec_parse(sp->text, sp->len, sp->file, out, err, sizeof err);
}

/* The spec a file was built with, from its checkpoint row: NULL when the
 * file predates stored specs or the text no longer parses. */
static evl_proj_spec *stored_spec(sqlite3 *db, const char *hash) {
    sqlite3_stmt *st;
    evl_proj_spec *sp = NULL;
    if (sqlite3_prepare_v2(db, "SELECT spec_file, spec FROM _evl_checkpoint WHERE id = 1", -1, &st, NULL) != SQLITE_OK)
        return NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 1) == SQLITE_TEXT) {
        const char *file = (const char *)sqlite3_column_text(st, 0);
        char err[256];
        if (evl_proj_spec_parse((const char *)sqlite3_column_text(st, 1), (size_t)sqlite3_column_bytes(st, 1),
                                file ? file : "stored", &sp, err, sizeof err) == EVL_OK &&
            strcmp(sp->hash, hash)) {
            evl_proj_spec_free(sp);
            sp = NULL;
        }
    }
    sqlite3_finalize(st);
    return sp;
}

/* Start-up: serve what the file holds.  When the loaded spec differs from
 * the one the file was built with, the old table keeps serving — fed by its
 * own stored spec, or frozen when that is unknown — while a rebuild with the
 * new spec runs beside it (replay/rebuild.c). */
static int start(proj *p, char *err, size_t errlen) {
    evl_proj_engine *e = p->eng;
    int cut_short = evl__proj_gc_files(p);
    struct stat sb;
    if (stat(p->path, &sb) != 0) return evl__proj_setup(p, SETUP_OPEN, err, errlen); /* a new projection */
    char hash[17];
    uint64_t pos = 0, applied = 0;
    sqlite3 *db;
    int rc = evl__proj_open_writer(p->path, &db, err, errlen);
    if (rc) return rc;
    rc = evl__proj_read_checkpoint(db, &pos, hash, &applied);
    evl_proj_spec *old = rc == EVL_OK && strcmp(hash, p->spec->hash) ? stored_spec(db, hash) : NULL;
    sqlite3_close(db);
    if (rc == EVL_ENOTFOUND || (rc == EVL_OK && !strcmp(hash, p->spec->hash))) {
        if ((rc = evl__proj_setup(p, SETUP_OPEN, err, errlen))) return rc;
        if (rc == EVL_OK && cut_short) {
            evl_proj_spec *copy;
            evl__proj_report(e, "projection %s: a rebuild was cut short; starting it again", p->name);
            if (evl__proj_spec_copy(p->spec, &copy) == EVL_OK) {
                pthread_mutex_lock(&e->mu);
                if (p->want) evl_proj_spec_free(copy); /* one was asked for already */
                else p->want = copy;
                pthread_mutex_unlock(&e->mu);
            }
        }
        return EVL_OK;
    }
    if (rc) {
        snprintf(err, errlen, "%s: cannot read the checkpoint: %s", p->path, evl_strerror(rc));
        return rc;
    }
    evl__proj_report(e, "projection %s: spec changed (%s -> %s); the old table serves while it is rebuilt%s",
                     p->name, hash, p->spec->hash, old ? "" : " (frozen: its spec is not stored in it)");
    evl_proj_spec *copy = NULL;
    if (!old && (rc = evl__proj_spec_copy(p->spec, &copy))) return rc;
    pthread_mutex_lock(&e->mu);
    evl_proj_spec_free(p->want); /* an evl_proj_rebuild() that came first: this one is newer */
    p->want = p->spec;
    p->spec = old ? old : copy;
    pthread_mutex_unlock(&e->mu);
    if (old && evl__proj_setup(p, SETUP_OPEN, err, errlen) == EVL_OK) return EVL_OK;
    evl__proj_teardown(p);
    pthread_mutex_lock(&e->mu);
    p->frozen = 1;
    p->checkpoint = pos;
    p->applied = applied;
    pthread_mutex_unlock(&e->mu);
    return EVL_OK;
}

/* Has the projection's file been removed or replaced under it (its
 * directory deleted, the file renamed)?  SQLite would go on writing to the
 * unlinked inode, the projection would look live, and its work would be
 * gone at the next start: fault it instead, with a message that says so. */
static int file_gone(proj *p, char *err, size_t errlen) {
    int moved = 0;
    if (!p->db || sqlite3_file_control(p->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK || !moved)
        return 0;
    snprintf(err, errlen, "%s: the file was removed or replaced while the projection ran", p->path);
    return 1;
}

static void *projector_main(void *arg) {
    proj *p = arg;
    evl_proj_engine *e = p->eng;
    char err[1024], fault_type[EVL_MAX_NAME + 1];
    /* named, so that top -H and perf tell the projectors apart (15 bytes max) */
    char tname[16];
    snprintf(tname, sizeof tname, "proj-%s", p->name);
    pthread_setname_np(pthread_self(), tname);
    err[0] = 0;
    int rc = start(p, err, sizeof err);
    if (rc && !err[0]) snprintf(err, sizeof err, "%s", evl_strerror(rc)); /* e.g. out of memory */
    if (rc) set_fault(p, 0, NULL, err);
    pthread_mutex_lock(&e->mu);
    p->opened = 1;
    pthread_cond_broadcast(&p->cv);
    while (!e->stop) {
        if (p->want) {
            /* a newer request replaces a rebuild in progress */
            evl_proj_spec *sp = p->want;
            p->want = NULL;
            p->starting = 1;
            memcpy(p->starting_hash, sp->hash, sizeof p->starting_hash);
            pthread_mutex_unlock(&e->mu);
            evl__proj_rebuild_cancel(p);
            evl__proj_rebuild_start(p, sp);
            pthread_mutex_lock(&e->mu);
            continue;
        }
        if (evl__proj_rebuild_pending(p)) {
            pthread_mutex_unlock(&e->mu);
            evl__proj_rebuild_finish(p);
            pthread_mutex_lock(&e->mu);
            continue;
        }
        if (p->frozen || p->state == EVL_PROJ_FAULTED || evl_log_head(e->log) <= p->checkpoint) {
            if (!p->frozen && p->state != EVL_PROJ_FAULTED) p->state = EVL_PROJ_LIVE;
            pthread_cond_wait(&e->wake, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        uint64_t cp = p->checkpoint, failed_at = 0;
        int full;
        fault_type[0] = 0;
        err[0] = 0;
        int gone = file_gone(p, err, sizeof err);
        if (gone) {
            rc = EVL_EIO;
            failed_at = p->checkpoint + 1;
        } else {
            rc = evl__proj_apply_batch(p, 0, 1, &cp, &failed_at, fault_type, err, sizeof err, &full);
        }
        if (rc && !err[0]) snprintf(err, sizeof err, "%s", evl_strerror(rc)); /* e.g. out of memory */
        if (rc == EVL_EFULL) {
            /* nothing of the batch was kept: say why and try again when
             * events arrive or a second has passed */
            pthread_mutex_lock(&e->mu);
            if (!p->error || strncmp(p->error, "disk full", 9)) {
                evl_free(p->error);
                char msg[1100];
                snprintf(msg, sizeof msg, "disk full, retrying: %s", err);
                p->error = evl__proj_strdup(msg);
                pthread_mutex_unlock(&e->mu);
                evl__proj_report(e, "projection %s: %s", p->name, msg);
                pthread_mutex_lock(&e->mu);
            }
            p->state = EVL_PROJ_CATCHING_UP;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            if (!e->stop) pthread_cond_timedwait(&e->wake, &e->mu, &ts);
            continue;
        }
        if (rc && !gone && failed_at > p->checkpoint + 1) {
            /* keep what came before the failing event, so the fault is exact */
            char err2[256];
            uint64_t cp2 = p->checkpoint, f2;
            int full2;
            char t2[EVL_MAX_NAME + 1];
            if (evl__proj_apply_batch(p, failed_at - 1, 0, &cp2, &f2, t2, err2, sizeof err2, &full2) == EVL_OK) cp = cp2;
        }
        pthread_mutex_lock(&e->mu);
        p->checkpoint = cp;
        if (rc) {
            pthread_mutex_unlock(&e->mu);
            set_fault(p, failed_at, fault_type, err);
            pthread_mutex_lock(&e->mu);
        } else if (p->state != EVL_PROJ_FAULTED) {
            p->state = full ? EVL_PROJ_CATCHING_UP : EVL_PROJ_LIVE;
            if (p->error && !strncmp(p->error, "disk full", 9)) { /* there was room after all */
                evl_free(p->error);
                p->error = NULL;
            }
        }
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&e->mu);
    evl__proj_rebuild_cancel(p);
    evl__proj_teardown(p);
    return NULL;
}

static void on_commit(void *arg, uint64_t head) {
    evl_proj_engine *e = arg;
    (void)head;
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------------ loading */

/* Specs are loaded into a list first: the engine's projections at open,
 * and on a reload the versions to compare with the running ones. */
typedef struct speclist {
    evl_proj_spec **v;
    size_t n;
} speclist;

static void speclist_free(speclist *l) {
    for (size_t i = 0; i < l->n; i++) evl_proj_spec_free(l->v[i]);
    evl_free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int add_spec(evl_proj_engine *e, speclist *l, const char *file, const char *text, size_t len) {
    char err[1024];
    evl_proj_spec *sp;
    int rc = evl_proj_spec_parse(text, len, file, &sp, err, sizeof err);
    if (rc == EVL_ENOMEM) return rc;
    if (rc) {
        evl__proj_report(e, "skipping projection file %s", err);
        return EVL_OK;
    }
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i]->name, sp->name)) {
            evl__proj_report(e, "skipping projection file %s: duplicate projection name %s (already defined in %s)",
                             file, sp->name, l->v[i]->file);
            evl_proj_spec_free(sp);
            return EVL_OK;
        }
    evl_proj_spec **grown = evl_realloc(l->v, (l->n + 1) * sizeof *grown);
    if (!grown) {
        evl_proj_spec_free(sp);
        return EVL_ENOMEM;
    }
    l->v = grown;
    l->v[l->n++] = sp;
    return EVL_OK;
}

/* A projection for sp (taken), added to the engine; its thread is not started. */
static int add_proj(evl_proj_engine *e, evl_proj_spec *sp, proj **out) {
    proj *p = evl_calloc(1, sizeof *p);
    size_t n = strlen(e->dir) + strlen(sp->name) + 8;
    if (!p || !(p->path = evl_malloc(n)) || !(p->name = evl__proj_strdup(sp->name))) {
        if (p) evl_free(p->path);
        evl_free(p);
        evl_proj_spec_free(sp);
        return EVL_ENOMEM;
    }
    snprintf(p->path, n, "%s/%s.db", e->dir, sp->name);
    p->eng = e;
    p->spec = sp;
    p->state = EVL_PROJ_CATCHING_UP;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_lock(&e->mu);
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        proj **grown = evl_realloc(e->projs, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&e->mu);
            pthread_cond_destroy(&p->cv);
            evl_free(p->name);
            evl_free(p->path);
            evl_free(p);
            evl_proj_spec_free(sp);
            return EVL_ENOMEM;
        }
        e->projs = grown;
        e->cap = cap;
    }
    e->projs[e->n++] = p;
    pthread_mutex_unlock(&e->mu);
    *out = p;
    return EVL_OK;
}

static int start_thread(proj *p) {
    int err = pthread_create(&p->thread, NULL, projector_main, p);
    if (err) return EVL_ESYS(err);
    p->started = 1;
    return EVL_OK;
}

static int is_sql(const struct dirent *d) {
    size_t n = strlen(d->d_name);
    return n > 4 && !strcmp(d->d_name + n - 4, ".sql") && d->d_name[0] != '.';
}

static int load_dir(evl_proj_engine *e, speclist *l, const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, is_sql, alphasort), rc = EVL_OK;
    if (n < 0) {
        evl__proj_report(e, "cannot read projection directory %s: %s", dir, strerror(errno));
        return EVL_OK;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        FILE *f = rc ? NULL : fopen(path, "rb");
        if (f) {
            char *buf = NULL;
            size_t len = 0, cap = 0, r;
            char chunk[8192];
            while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
                if (len + r > cap) {
                    cap = (len + r) * 2;
                    char *g = evl_realloc(buf, cap);
                    if (!g) { rc = EVL_ENOMEM; break; }
                    buf = g;
                }
                memcpy(buf + len, chunk, r);
                len += r;
            }
            fclose(f);
            if (!rc) rc = add_spec(e, l, path, buf ? buf : "", len);
            evl_free(buf);
        } else if (!rc) {
            evl__proj_report(e, "cannot read projection file %s: %s", path, strerror(errno));
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int load_all(evl_proj_engine *e, speclist *l) {
    int rc = EVL_OK;
    if (!e->opt.no_builtin) {
        size_t nb;
        const evl_proj_builtin *b = evl_proj_builtins(&nb);
        for (size_t i = 0; i < nb && !rc; i++) {
            char file[128];
            snprintf(file, sizeof file, "builtin:%s", b[i].file);
            rc = add_spec(e, l, file, b[i].text, b[i].len);
        }
    }
    for (size_t i = 0; i < e->opt.n_dirs && !rc; i++) rc = load_dir(e, l, e->opt.dirs[i]);
    return rc;
}

int evl_proj_open(evl_log *log, const evl_proj_options *opt, evl_proj_engine **out) {
    int rc = EVL_OK;
    speclist l = {0};
    *out = NULL;
    evl_proj_engine *e = evl_calloc(1, sizeof *e);
    if (!e) return EVL_ENOMEM;
    e->log = log;
    if (opt) e->opt = *opt;
    if (!e->opt.batch_events) e->opt.batch_events = 10000;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    const char *data = evl_log_dir(log);
    size_t n = strlen(data) + 16;
    if (!(e->dir = evl_malloc(n))) { rc = EVL_ENOMEM; goto fail; }
    snprintf(e->dir, n, "%s/projections", data);
    if (mkdir(e->dir, 0755) != 0 && errno != EEXIST) { rc = EVL_ESYS(errno); goto fail; }
    if ((rc = load_all(e, &l))) goto fail;
    for (size_t i = 0; i < l.n && !rc; i++) {
        proj *p;
        rc = add_proj(e, l.v[i], &p);
        l.v[i] = NULL; /* taken, even on failure */
    }
    if (rc) goto fail;
    if ((rc = evl_log_watch(log, on_commit, e))) goto fail;
    for (size_t i = 0; i < e->n; i++)
        if ((rc = start_thread(e->projs[i]))) goto fail;
    speclist_free(&l);
    *out = e;
    return EVL_OK;
fail:
    speclist_free(&l);
    evl_proj_close(e);
    return rc;
}

int evl_proj_reload(evl_proj_engine *e, size_t *changed) {
    speclist l = {0};
    size_t n_changed = 0;
    int rc = load_all(e, &l);
    for (size_t i = 0; i < l.n && !rc; i++) {
        evl_proj_spec *sp = l.v[i];
        proj *p = evl__proj_find(e, sp->name);
        if (!p) {
            evl__proj_report(e, "projection %s: new in %s", sp->name, sp->file);
            l.v[i] = NULL;
            if (!(rc = add_proj(e, sp, &p))) rc = start_thread(p);
            n_changed++;
            continue;
        }
        pthread_mutex_lock(&e->mu);
        /* compare with the newest version asked for: a reload with nothing
         * changed leaves a rebuild in progress alone */
        const char *now = p->want ? p->want->hash : evl__proj_rebuild_hash(p);
        if (!now) now = p->starting ? p->starting_hash : p->spec->hash;
        if (strcmp(now, sp->hash)) {
            evl_proj_spec_free(p->want);
            p->want = sp;
            l.v[i] = NULL;
            n_changed++;
            pthread_cond_broadcast(&e->wake);
        }
        pthread_mutex_unlock(&e->mu);
        if (!l.v[i]) evl__proj_report(e, "projection %s: spec changed in %s; rebuilding", sp->name, sp->file);
    }
    speclist_free(&l);
    if (changed) *changed = n_changed;
    return rc;
}

void evl_proj_close(evl_proj_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_broadcast(&e->wake);
    for (size_t i = 0; i < e->n; i++) pthread_cond_broadcast(&e->projs[i]->cv);
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < e->n; i++)
        if (e->projs[i]->started) pthread_join(e->projs[i]->thread, NULL);
    evl_log_unwatch(e->log, on_commit, e);
    for (size_t i = 0; i < e->n; i++) {
        proj *p = e->projs[i];
        if (p->old_pending) evl__proj_remove_generation(p, p->old_target);
        pthread_cond_destroy(&p->cv);
        evl_proj_spec_free(p->spec);
        evl_proj_spec_free(p->want);
        evl_free(p->name);
        evl_free(p->path);
        evl_free(p->fault_type);
        evl_free(p->error);
        evl_free(p->rb_error);
        evl_free(p);
    }
    evl_free(e->projs);
    evl_free(e->dir);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    evl_free(e);
}
