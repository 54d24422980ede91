/* SQLite plumbing shared by the projector, the spec checker and queries:
 * opening with the PRAGMAs that matter on Debian's build, the authorizer,
 * the checkpoint row, and binding msgpack values. */
#include <jansson.h>
#include <pthread.h>

#include "evlog/json.h"
#include "evlog/mp.h"
#include "projections/proj_int.h"

int evl__proj_sqlite_err(int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK: return EVL_OK;
    case SQLITE_NOMEM: return EVL_ENOMEM;
    case SQLITE_FULL: return EVL_EFULL;
    case SQLITE_CANTOPEN: return EVL_ENOTFOUND;
    case SQLITE_IOERR: return EVL_EIO;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return EVL_ECORRUPT;
    default: return EVL_ESQL;
    }
}

/* SQLite's memory statistics take one process-wide mutex around every
 * sqlite3_malloc/sqlite3_free.  With several projector and rebuild threads
 * that mutex was ~20% of their CPU (futex waits included, see
 * bench/REBUILD.md); evlog never reads the statistics.  The setting is only
 * accepted before SQLite initialises, hence once, before our first open; if
 * the embedding program initialised SQLite first, sqlite3_config answers
 * SQLITE_MISUSE and its choice stands. */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void sqlite_configure(void) {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)sqlite3_initialize();
}

int evl__proj_sqlite_open(const char *path, int flags, sqlite3 **db) {
    pthread_once(&sqlite_once, sqlite_configure);
    return sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX, NULL);
}

int evl__proj_authorizer(void *arg, int action, const char *a, const char *b, const char *c,
                         const char *d) {
    (void)arg; (void)b; (void)c; (void)d;
    switch (action) {
    case SQLITE_ATTACH: case SQLITE_DETACH: case SQLITE_PRAGMA: case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
        return SQLITE_DENY;
    case SQLITE_FUNCTION:
        /* files, extensions, and fts3_tokenizer (whose one-argument form
         * answers a pointer into the process: an address-layout leak) */
        return b && (!strcmp(b, "load_extension") || !strcmp(b, "readfile") || !strcmp(b, "writefile") ||
                     !strcmp(b, "fts3_tokenizer"))
                   ? SQLITE_DENY : SQLITE_OK;
    default:
        return SQLITE_OK;
    }
}

/* The writer connection of a projection.  Debian's SQLite is built with
 * SECURE_DELETE (every freed page zeroed: pure cost for a derived table)
 * and synchronous=FULL by default; WAL with synchronous=NORMAL keeps each
 * commit atomic and consistent — a power cut may lose the last batches,
 * which the checkpoint in the same transaction makes harmless: they are
 * applied again from the log. */
int evl__proj_open_writer(const char *path, sqlite3 **out, char *err, size_t errlen) {
    sqlite3 *db = NULL;
    int rc = evl__proj_sqlite_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return evl__proj_sqlite_err(rc);
    }
    /* first, so that even the PRAGMAs wait for a reader that is recovering the WAL */
    sqlite3_busy_timeout(db, 10000);
    char *msg = NULL;
    rc = sqlite3_exec(db,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA secure_delete=OFF;"
                      "PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=ON;"
                      "",
                      NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        sqlite3_close(db);
        return evl__proj_sqlite_err(rc);
    }
    *out = db;
    return EVL_OK;
}

int evl__proj_read_checkpoint(sqlite3 *db, uint64_t *pos, char hash[17], uint64_t *applied) {
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT position, spec_hash, events_applied FROM _evl_checkpoint WHERE id = 1",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return EVL_ENOTFOUND; /* no such table: a new file */
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *pos = (uint64_t)sqlite3_column_int64(st, 0);
        const char *h = (const char *)sqlite3_column_text(st, 1);
        snprintf(hash, 17, "%s", h ? h : "");
        if (applied) *applied = (uint64_t)sqlite3_column_int64(st, 2);
        rc = EVL_OK;
    } else {
        rc = EVL_ENOTFOUND;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Bind the msgpack value starting at p.  Strings and blobs point into the
 * log's map (SQLITE_STATIC): the projector rebinds every parameter before
 * each step and steps while its read transaction is open. */
int evl__proj_bind_mp(sqlite3_stmt *st, int i, const uint8_t *p, const uint8_t *end) {
    evl_mp m = {p, end};
    evl_mp_val v;
    if (evl_mp_read(&m, &v)) return sqlite3_bind_null(st, i);
    switch (v.kind) {
    case EVL_MP_NIL: return sqlite3_bind_null(st, i);
    case EVL_MP_BOOL: return sqlite3_bind_int(st, i, v.v.b);
    case EVL_MP_UINT:
        return v.v.u <= INT64_MAX ? sqlite3_bind_int64(st, i, (sqlite3_int64)v.v.u)
                                  : sqlite3_bind_double(st, i, (double)v.v.u);
    case EVL_MP_INT: return sqlite3_bind_int64(st, i, v.v.i);
    case EVL_MP_FLOAT: return sqlite3_bind_double(st, i, v.v.f);
    case EVL_MP_STR: return sqlite3_bind_text(st, i, v.v.s.ptr, (int)v.v.s.len, SQLITE_STATIC);
    case EVL_MP_BIN: return sqlite3_bind_blob(st, i, v.v.s.ptr, (int)v.v.s.len, SQLITE_STATIC);
    case EVL_MP_EXT: return sqlite3_bind_blob(st, i, v.v.ext.ptr, (int)v.v.ext.len, SQLITE_STATIC);
    case EVL_MP_ARRAY: case EVL_MP_MAP: {
        /* maps and arrays bind as JSON text so json_extract() and ->> work */
        evl_mp whole = {p, end};
        if (evl_mp_skip(&whole, 64)) return sqlite3_bind_null(st, i);
        json_t *j;
        if (evl_json_from_msgpack(p, (size_t)(whole.p - p), &j)) return sqlite3_bind_null(st, i);
        char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        if (!text) return SQLITE_NOMEM;
        return sqlite3_bind_text(st, i, text, -1, free);
    }
    }
    return sqlite3_bind_null(st, i);
}
