/* The SQLite baseline: the "events table" the seed services hand-write,
 * in-process like evlog embedded.  WAL, synchronous=FULL (an fsync of the
 * WAL per commit: the same promise as evlog's sync full), one connection per
 * client thread, one transaction per append: read the stream's last
 * revision, check the expectation, insert, commit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

#include "cmp.h"

static const char *DDL =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,"
    " revision INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
    " time TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), data BLOB NOT NULL,"
    " UNIQUE(stream, revision));";

static const char *durability(const cmp_env *env)
{
    (void)env;
    return "WAL, synchronous=FULL (fsync per transaction)";
}

typedef struct state {
    char path[4200];
} state;

static int exec(sqlite3 *db, const char *sql, char *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cmp_err(err, "sqlite: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static sqlite3 *open_db(const char *path, const char *sync, char *err)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        cmp_err(err, "sqlite open %s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s; PRAGMA busy_timeout=60000;", sync);
    if (exec(db, sql, err) != 0) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static int start(cmp_run *r)
{
    state *s = calloc(1, sizeof *s);
    if (!s || cmp_mkdir(r) != 0) {
        free(s);
        cmp_err(r->err, "out of memory");
        return -1;
    }
    snprintf(s->path, sizeof s->path, "%s/events.db", r->dir);
    r->st = s;
    sqlite3 *db = open_db(s->path, "FULL", r->err);
    int rc = db ? exec(db, DDL, r->err) : -1;
    sqlite3_close(db);
    return rc;
}

typedef struct client {
    sqlite3 *db;
    sqlite3_stmt *begin, *max, *ins, *commit, *rollback;
} client;

static void disconnect(void *cl)
{
    client *c = cl;
    if (!c)
        return;
    sqlite3_finalize(c->begin);
    sqlite3_finalize(c->max);
    sqlite3_finalize(c->ins);
    sqlite3_finalize(c->commit);
    sqlite3_finalize(c->rollback);
    sqlite3_close(c->db);
    free(c);
}

static client *client_open(const char *path, const char *sync, char *err)
{
    client *c = calloc(1, sizeof *c);
    if (!c || !(c->db = open_db(path, sync, err))) {
        free(c);
        return NULL;
    }
    static const char *const sql[] = {
        "BEGIN IMMEDIATE", "SELECT COALESCE(MAX(revision), -1) FROM events WHERE stream = ?1",
        "INSERT INTO events (stream, revision, event_id, type, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        "COMMIT", "ROLLBACK"};
    sqlite3_stmt **st[] = {&c->begin, &c->max, &c->ins, &c->commit, &c->rollback};
    for (int i = 0; i < 5; i++)
        if (sqlite3_prepare_v3(c->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, st[i], NULL) != SQLITE_OK) {
            cmp_err(err, "sqlite prepare: %s", sqlite3_errmsg(c->db));
            disconnect(c);
            return NULL;
        }
    return c;
}

static void *connect_(cmp_run *r, int idx, char *err)
{
    (void)idx;
    return client_open(((state *)r->st)->path, "FULL", err);
}

static int step_done(client *c, sqlite3_stmt *st, char *err)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        cmp_err(err, "sqlite: %s", sqlite3_errmsg(c->db));
        return -1;
    }
    return 0;
}

static int insert(client *c, const char *stream, int64_t rev, const cmp_ev *e, char *err)
{
    char id[37];
    cmp_uuid(id);
    sqlite3_bind_text(c->ins, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(c->ins, 2, rev);
    sqlite3_bind_text(c->ins, 3, id, 36, SQLITE_STATIC);
    sqlite3_bind_text(c->ins, 4, e->type, -1, SQLITE_STATIC);
    sqlite3_bind_blob(c->ins, 5, e->data, (int)e->len, SQLITE_STATIC);
    return step_done(c, c->ins, err);
}

static int append(void *cl, const char *stream, const cmp_ev *evs, size_t n, uint64_t expected,
                  uint64_t *rev, char *err)
{
    client *c = cl;
    if (step_done(c, c->begin, err) != 0)
        return CMP_FAIL;
    sqlite3_bind_text(c->max, 1, stream, -1, SQLITE_STATIC);
    int64_t last = -1;
    if (sqlite3_step(c->max) == SQLITE_ROW)
        last = sqlite3_column_int64(c->max, 0);
    sqlite3_reset(c->max);
    if (expected != CMP_ANY && (last < 0 || (uint64_t)last != expected)) {
        step_done(c, c->rollback, err);
        *rev = last < 0 ? CMP_ANY : (uint64_t)last;
        return CMP_CONFLICT;
    }
    for (size_t i = 0; i < n; i++)
        if (insert(c, stream, last + 1 + (int64_t)i, &evs[i], err) != 0) {
            step_done(c, c->rollback, err);
            return CMP_FAIL;
        }
    if (step_done(c, c->commit, err) != 0) {
        step_done(c, c->rollback, err);
        return CMP_FAIL;
    }
    *rev = (uint64_t)(last + (int64_t)n);
    return CMP_OK;
}

static int count(cmp_run *r, uint64_t *n)
{
    sqlite3 *db = open_db(((state *)r->st)->path, "FULL", r->err);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (db && sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *n = (uint64_t)sqlite3_column_int64(st, 0);
        rc = 0;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

static void stop(cmp_run *r)
{
    free(r->st);
    r->st = NULL;
    bench_rm_rf(r->dir);
}

/* Loading is not measured: big transactions, no fsync. */
static int load(cmp_run *r, uint64_t n, uint64_t seed)
{
    client *c = client_open(((state *)r->st)->path, "OFF", r->err);
    cmp_gen *g = NULL;
    cmp_revmap m = {0};
    int rc = -1;
    if (!c || cmp_gen_open(seed, &g) != 0)
        goto out;
    uint64_t done = 0;
    while (done < n) {
        if (step_done(c, c->begin, r->err) != 0)
            goto out;
        for (uint64_t t = 0; t < 10000 && done < n;) {
            cmp_gen_ev ge[64];
            size_t k = cmp_gen_next(g, ge, n - done < 64 ? (size_t)(n - done) : 64);
            if (!k)
                goto out;
            for (size_t i = 0; i < k; i++)
                if (insert(c, ge[i].stream, (int64_t)cmp_revmap_take(&m, ge[i].stream), ge[i].ev,
                           r->err) != 0)
                    goto out;
            done += k;
            t += k;
        }
        if (step_done(c, c->commit, r->err) != 0)
            goto out;
    }
    rc = 0;
out:
    cmp_revmap_free(&m);
    cmp_gen_close(g);
    disconnect(c);
    return rc;
}

/* The replay a service would write against its events table. */
static int scan(cmp_run *r, uint64_t *n, uint64_t *bytes)
{
    sqlite3 *db = open_db(((state *)r->st)->path, "FULL", r->err);
    sqlite3_stmt *st = NULL;
    if (!db || sqlite3_prepare_v2(db,
                                  "SELECT id, stream, revision, event_id, type, time, data "
                                  "FROM events ORDER BY id",
                                  -1, &st, NULL) != SQLITE_OK) {
        cmp_err(r->err, "sqlite scan: %s", db ? sqlite3_errmsg(db) : "open");
        sqlite3_close(db);
        return -1;
    }
    uint64_t k = 0, b = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        k++;
        (void)sqlite3_column_blob(st, 6);
        (void)sqlite3_column_text(st, 1);
        (void)sqlite3_column_text(st, 4);
        b += (uint64_t)sqlite3_column_bytes(st, 6) + (uint64_t)sqlite3_column_bytes(st, 1) +
             (uint64_t)sqlite3_column_bytes(st, 4);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (rc != SQLITE_DONE) {
        cmp_err(r->err, "sqlite scan failed");
        return -1;
    }
    *n = k;
    *bytes = b;
    return 0;
}

const cmp_sys cmp_sqlite = {
    .name = "sqlite",
    .durability = durability,
    .start = start,
    .connect = connect_,
    .append = append,
    .disconnect = disconnect,
    .count = count,
    .stop = stop,
    .load = load,
    .scan = scan,
};
