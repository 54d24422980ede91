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

static proj *find(evl_proj_engine *e, const char *name) {
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->projs[i].spec->name, name)) return &e->projs[i];
    return NULL;
}

const char *evl_proj_db_path(evl_proj_engine *e, const char *name) {
    proj *p = find(e, name);
    return p ? p->path : NULL;
}

static void count_rows(const char *path, evl_proj_status *st, const evl_proj_spec *sp) {
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    sqlite3_busy_timeout(db, 2000);
    for (size_t t = 0; t < st->n_tables; t++) {
        char sql[256];
        sqlite3_stmt *s;
        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", sp->tables[t]);
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
            st->tables[t].rows = (uint64_t)sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
}

int evl_proj_status_get(evl_proj_engine *e, const char *name, evl_proj_status **out, size_t *n_out) {
    size_t n = 0;
    *out = NULL;
    *n_out = 0;
    if (name && !find(e, name)) return EVL_ENOTFOUND;
    evl_proj_status *st = evl_calloc(e->n ? e->n : 1, sizeof *st);
    if (!st) return EVL_ENOMEM;
    uint64_t head = evl_log_head(e->log);
    for (size_t i = 0; i < e->n; i++) {
        proj *p = &e->projs[i];
        if (name && strcmp(p->spec->name, name)) continue;
        evl_proj_status *s = &st[n++];
        s->name = evl__proj_strdup(p->spec->name);
        s->file = evl__proj_strdup(p->spec->file);
        memcpy(s->spec_hash, p->spec->hash, 17);
        pthread_mutex_lock(&e->mu);
        s->checkpoint = p->checkpoint;
        s->events_applied = p->applied;
        s->state = p->state == EVL_PROJ_FAULTED ? EVL_PROJ_FAULTED
                   : p->rebuilding ? EVL_PROJ_REBUILDING
                   : p->checkpoint >= head ? EVL_PROJ_LIVE : p->state;
        s->fault_position = p->fault_pos;
        s->fault_type = p->fault_type ? evl__proj_strdup(p->fault_type) : NULL;
        s->error = p->error ? evl__proj_strdup(p->error) : NULL;
        pthread_mutex_unlock(&e->mu);
        s->head = head;
        s->lag = head > s->checkpoint ? head - s->checkpoint : 0;
        s->n_tables = p->spec->n_tables;
        s->tables = evl_calloc(s->n_tables ? s->n_tables : 1, sizeof *s->tables);
        if (!s->name || !s->file || !s->tables) {
            evl_proj_status_free(st, n);
            return EVL_ENOMEM;
        }
        for (size_t t = 0; t < s->n_tables; t++) s->tables[t].name = evl__proj_strdup(p->spec->tables[t]);
        count_rows(p->path, s, p->spec);
    }
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
    for (size_t i = 0; i < e->n; i++) {
        int rc = wait_one(e, &e->projs[i], position, deadline);
        if (rc == EVL_ETIMEDOUT || rc == EVL_ECLOSED) return rc;
    }
    return EVL_OK;
}

int evl_proj_query(evl_proj_engine *e, const char *name, const char *sql, const json_t *params,
                   const evl_proj_query_opts *opts, json_t **result, char *err, size_t errlen) {
    proj *p = find(e, name);
    if (!p) {
        snprintf(err, errlen, "no projection named %s", name);
        return EVL_ENOTFOUND;
    }
    return evl_proj_query_file(p->path, sql, params, opts, result, err, errlen);
}