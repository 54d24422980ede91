/* Status of the projections, read-your-writes waits, and queries by name. */
#include <errno.h>
#include <time.h>

#include "projections/proj_int.h"

/* ------------------------------------------------------------ status */

const char *evl_proj_state_name(evl_proj_state s) {
    switch (s) {
    case EVL_PROJ_LIVE: return "live";
    case EVL_PROJ_CATCHING_UP: return "catching_up";
    case EVL_PROJ_REBUILDING: return "rebuilding";
    case EVL_PROJ_FAULTED: return "faulted";
    }
    return "?";
}

/* Projections are added under the lock (a reload) and never removed
 * before the engine closes, so the pointer stays good. */
proj *evl__proj_find(evl_proj_engine *e, const char *name) {
    proj *p = NULL;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n && !p; i++)
        if (!strcmp(e->projs[i]->name, name)) p = e->projs[i];
    pthread_mutex_unlock(&e->mu);
    return p;
}

#define find evl__proj_find

const char *evl_proj_db_path(evl_proj_engine *e, const char *name) {
    proj *p = find(e, name);
    return p ? p->path : NULL;
}

/* Readers are counted by generation, so that a generation swapped out by a
 * rebuild is deleted only when the queries that may have opened it are done
 * (a query may open the main file before the swap and its -wal/-shm after). */
static unsigned reader_enter(proj *p) {
    pthread_mutex_lock(&p->eng->mu);
    unsigned g = (unsigned)(p->generation & 1);
    p->readers[g]++;
    pthread_mutex_unlock(&p->eng->mu);
    return g;
}

static void reader_leave(proj *p, unsigned g) {
    char old[sizeof p->old_target];
    int drop = 0;
    pthread_mutex_lock(&p->eng->mu);
    if (--p->readers[g] == 0 && p->old_pending && (p->old_gen & 1) == g) {
        memcpy(old, p->old_target, sizeof old);
        p->old_pending = 0;
        drop = 1;
    }
    pthread_mutex_unlock(&p->eng->mu);
    if (drop) evl__proj_remove_generation(p, old);
}

static void count_rows(const char *path, evl_proj_status *st) {
    sqlite3 *db;
    if (evl__proj_sqlite_open(path, SQLITE_OPEN_READONLY, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    sqlite3_busy_timeout(db, 2000);
    for (size_t t = 0; t < st->n_tables; t++) {
        char sql[256];
        sqlite3_stmt *s;
        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", st->tables[t].name);
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
            st->tables[t].rows = (uint64_t)sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
}

/* One projection's status, taken under the lock (a rebuild may swap the
 * spec); no SQL here. */
static int fill(proj *p, evl_proj_status *s, uint64_t head) {
    const evl_proj_spec *sp = p->spec;
    s->name = evl__proj_strdup(p->name);
    s->file = evl__proj_strdup(sp->file);
    memcpy(s->spec_hash, sp->hash, 17);
    s->checkpoint = p->checkpoint;
    s->events_applied = p->applied;
    s->head = head;
    s->lag = head > s->checkpoint ? head - s->checkpoint : 0;
    s->state = p->rb || p->want || p->starting ? EVL_PROJ_REBUILDING
               : p->state == EVL_PROJ_FAULTED ? EVL_PROJ_FAULTED
               : p->checkpoint >= head ? EVL_PROJ_LIVE : p->state;
    s->fault_position = p->fault_pos;
    s->fault_type = p->fault_type ? evl__proj_strdup(p->fault_type) : NULL;
    s->error = p->error ? evl__proj_strdup(p->error) : NULL;
    s->generation = p->generation;
    s->rebuild_error = p->rb_error ? evl__proj_strdup(p->rb_error) : NULL;
    if ((p->want || p->starting) && !p->rb) {
        s->rebuild_active = 1;
        memcpy(s->rebuild_hash, p->want ? p->want->hash : p->starting_hash, 17);
        s->rebuild_eta = -1;
    }
    evl__proj_rebuild_progress(p, s);
    s->tables = evl_calloc(sp->n_tables ? sp->n_tables : 1, sizeof *s->tables);
    if (s->tables) s->n_tables = sp->n_tables; /* evl_proj_status_free() walks them */
    /* a status that silently lost its error would read as a fault without a reason */
    if (!s->name || !s->file || !s->tables || (p->fault_type && !s->fault_type) ||
        (p->error && !s->error) || (p->rb_error && !s->rebuild_error))
        return EVL_ENOMEM;
    for (size_t t = 0; t < s->n_tables; t++)
        if (!(s->tables[t].name = evl__proj_strdup(sp->tables[t]))) return EVL_ENOMEM;
    return EVL_OK;
}

int evl_proj_status_get(evl_proj_engine *e, const char *name, evl_proj_status **out, size_t *n_out) {
    size_t n = 0;
    *out = NULL;
    *n_out = 0;
    if (name && !find(e, name)) return EVL_ENOTFOUND;
    uint64_t head = evl_log_head(e->log);
    pthread_mutex_lock(&e->mu);
    size_t total = e->n;
    evl_proj_status *st = evl_calloc(total ? total : 1, sizeof *st);
    int rc = st ? EVL_OK : EVL_ENOMEM;
    const char **paths = evl_calloc(total ? total : 1, sizeof *paths);
    if (!paths) rc = EVL_ENOMEM;
    for (size_t i = 0; i < total && !rc; i++) {
        proj *p = e->projs[i];
        if (name && strcmp(p->name, name)) continue;
        paths[n] = p->path;
        rc = fill(p, &st[n++], head);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc) {
        evl_proj_status_free(st, n);
        evl_free(paths);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        proj *p = find(e, st[i].name);
        unsigned g = reader_enter(p);
        count_rows(paths[i], &st[i]);
        reader_leave(p, g);
    }
    evl_free(paths);
    *out = st;
    *n_out = n;
    return EVL_OK;
}

void evl_proj_status_free(evl_proj_status *st, size_t n) {
    if (!st) return;
    for (size_t i = 0; i < n; i++) {
        for (size_t t = 0; t < st[i].n_tables; t++) evl_free(st[i].tables ? st[i].tables[t].name : NULL);
        evl_free(st[i].tables);
        evl_free(st[i].name);
        evl_free(st[i].file);
        evl_free(st[i].fault_type);
        evl_free(st[i].error);
        evl_free(st[i].rebuild_error);
    }
    evl_free(st);
}

/* ------------------------------------------------------------ waiting */

static int wait_one(evl_proj_engine *e, proj *p, uint64_t position, int64_t deadline) {
    struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
    int rc = EVL_OK;
    pthread_mutex_lock(&e->mu);
    while (p->checkpoint < position) {
        if (p->state == EVL_PROJ_FAULTED) { rc = EVL_EFAULTED; break; }
        if (e->stop) { rc = EVL_ECLOSED; break; }
        if (pthread_cond_timedwait(&p->cv, &e->mu, &ts) == ETIMEDOUT && p->checkpoint < position) {
            rc = EVL_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int evl_proj_wait(evl_proj_engine *e, const char *name, uint64_t position, int timeout_ms) {
    proj *p = find(e, name);
    if (!p) return EVL_ENOTFOUND;
    return wait_one(e, p, position, evl__mono_ns() + (int64_t)timeout_ms * 1000000);
}

int evl_proj_wait_all(evl_proj_engine *e, uint64_t position, int timeout_ms) {
    int64_t deadline = evl__mono_ns() + (int64_t)timeout_ms * 1000000;
    pthread_mutex_lock(&e->mu);
    size_t n = e->n;
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&e->mu);
        proj *p = e->projs[i];
        pthread_mutex_unlock(&e->mu);
        int rc = wait_one(e, p, position, deadline);
        if (rc == EVL_ETIMEDOUT || rc == EVL_ECLOSED) return rc;
    }
    return EVL_OK;
}

int evl_proj_digest_get(evl_proj_engine *e, const char *name, evl_proj_digest *out, char *err, size_t errlen) {
    proj *p = find(e, name);
    if (!p) {
        snprintf(err, errlen, "no projection named %s", name);
        return EVL_ENOTFOUND;
    }
    unsigned g = reader_enter(p); /* as a query: a rebuild's swap waits for it */
    int rc = evl_proj_digest_file(p->path, out, err, errlen);
    reader_leave(p, g);
    return rc;
}

int evl_proj_query(evl_proj_engine *e, const char *name, const char *sql, const json_t *params,
                   const evl_proj_query_opts *opts, json_t **result, char *err, size_t errlen) {
    proj *p = find(e, name);
    if (!p) {
        snprintf(err, errlen, "no projection named %s", name);
        return EVL_ENOTFOUND;
    }
    unsigned g = reader_enter(p);
    int rc = evl_proj_query_file(p->path, sql, params, opts, result, err, errlen);
    reader_leave(p, g);
    return rc;
}
int evl_proj_history(evl_proj_engine *e, const char *name, const char *table, const char *key, const char *column,
                     json_t **out, char *err, size_t errlen) {
    proj *p = find(e, name);
    *out = NULL;
    if (!p) {
        snprintf(err, errlen, "no projection named %s", name);
        return EVL_ENOTFOUND;
    }
    unsigned g = reader_enter(p);
    int rc = evl_proj_history_file(e->log, p->path, table, key, column, out, err, errlen);
    reader_leave(p, g);
    return rc;
}
