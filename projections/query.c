/* Read-only queries against a projection file.
 *
 * Layers of refusal, so a query can never write or escape: the connection
 * is opened read-only; the authorizer denies ATTACH, PRAGMA, transactions
 * and file/extension functions; sqlite3_stmt_readonly() refuses anything
 * that would write before it runs; one statement per query; and a progress
 * handler stops it at its deadline.  The checkpoint is read in the same
 * read transaction as the rows, so "position" says exactly what the answer
 * reflects. */
#include "projections/proj_int.h"

/* The longest string or blob a query may make: 4 MiB, well above any
 * value an event (1 MiB encoded at most by default) can put in a table. */
#define EVL_PROJ_MAX_VALUE (4 << 20)

typedef struct deadline { int64_t at; int hit; } deadline;

static int progress(void *arg) {
    deadline *d = arg;
    if (evl__mono_ns() > d->at) { d->hit = 1; return 1; }
    return 0;
}

static int bind_json_value(sqlite3_stmt *st, int i, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_NULL: return sqlite3_bind_null(st, i);
    case JSON_TRUE: return sqlite3_bind_int(st, i, 1);
    case JSON_FALSE: return sqlite3_bind_int(st, i, 0);
    case JSON_INTEGER: return sqlite3_bind_int64(st, i, json_integer_value(v));
    case JSON_REAL: return sqlite3_bind_double(st, i, json_real_value(v));
    case JSON_STRING: return sqlite3_bind_text(st, i, json_string_value(v), (int)json_string_length(v), SQLITE_TRANSIENT);
    default: {
        char *text = json_dumps(v, JSON_COMPACT);
        return text ? sqlite3_bind_text(st, i, text, -1, free) : SQLITE_NOMEM;
    }
    }
}

static int bind_params(sqlite3_stmt *st, const json_t *params, char *err, size_t errlen) {
    int n = sqlite3_bind_parameter_count(st);
    for (int i = 1; i <= n; i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        const json_t *v = NULL;
        if (json_is_array(params)) {
            v = json_array_get(params, (size_t)i - 1);
        } else if (json_is_object(params) && name) {
            v = json_object_get(params, name);
            if (!v && name[0] != '?') v = json_object_get(params, name + 1);
        }
        if (!v) {
            snprintf(err, errlen, "no value for parameter %s", name ? name : "?");
            return EVL_EINVAL;
        }
        if (bind_json_value(st, i, v) != SQLITE_OK) return EVL_ENOMEM;
    }
    return EVL_OK;
}

static json_t *column_value(sqlite3_stmt *st, int c) {
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(st, c));
    case SQLITE_FLOAT: return json_real(sqlite3_column_double(st, c));
    case SQLITE_TEXT:
        return json_stringn_nocheck((const char *)sqlite3_column_text(st, c), (size_t)sqlite3_column_bytes(st, c));
    case SQLITE_BLOB: {
        /* blobs are rare in projections; show them as hex */
        const uint8_t *b = sqlite3_column_blob(st, c);
        int n = sqlite3_column_bytes(st, c);
        char *hex = evl_malloc((size_t)n * 2 + 1);
        if (!hex) return NULL;
        for (int i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", b[i]);
        json_t *j = json_string(hex);
        evl_free(hex);
        return j;
    }
    default: return json_null();
    }
}

int evl_proj_query_file(const char *db_path, const char *sql, const json_t *params,
                        const evl_proj_query_opts *opts, json_t **result, char *err,
                        size_t errlen) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL, *cp = NULL;
    json_t *res = NULL, *rows = NULL, *cols = NULL;
    size_t max_rows = opts && opts->max_rows ? opts->max_rows : 10000;
    int timeout = opts && opts->timeout_ms ? opts->timeout_ms : 5000;
    deadline dl = {evl__mono_ns() + (int64_t)timeout * 1000000, 0};
    int rc;
    *result = NULL;
    err[0] = 0;
    int orc = evl__proj_sqlite_open(db_path, SQLITE_OPEN_READONLY, &db);
    if (orc == SQLITE_CANTOPEN) {
        /* SQLite resolves a symlink before it opens the target: a rebuild's
         * swap in between leaves it with a name just deleted.  Once more
         * finds the new target. */
        sqlite3_close(db);
        db = NULL;
        orc = evl__proj_sqlite_open(db_path, SQLITE_OPEN_READONLY, &db);
    }
    if (orc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", db_path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return EVL_ENOTFOUND;
    }
    sqlite3_busy_timeout(db, timeout);
    sqlite3_progress_handler(db, 1000, progress, &dl);
    /* No value bigger than an event could carry: zeroblob(1e9) or
     * printf('%.*c', 1e9, 'x') would otherwise cost a GiB each. */
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, EVL_PROJ_MAX_VALUE);
    /* read the checkpoint and the rows in one snapshot */
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        rc = EVL_ESQL;
        goto out;
    }
    sqlite3_set_authorizer(db, evl__proj_authorizer, NULL);
    const char *tail;
    if (sqlite3_prepare_v2(db, sql, -1, &st, &tail) != SQLITE_OK || !st) {
        snprintf(err, errlen, "%s", st ? sqlite3_errmsg(db) : (*sqlite3_errmsg(db) && sqlite3_errcode(db) ? sqlite3_errmsg(db) : "empty SQL"));
        rc = EVL_ESQL;
        goto out;
    }
    while (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';') tail++;
    if (*tail) {
        snprintf(err, errlen, "one statement per query (extra text: %.40s)", tail);
        rc = EVL_ESQL;
        goto out;
    }
    if (!sqlite3_stmt_readonly(st)) {
        snprintf(err, errlen, "statement would write; queries are read-only");
        rc = EVL_EWRITESQL;
        goto out;
    }
    if ((rc = bind_params(st, params, err, errlen))) goto out;
    res = json_object();
    cols = json_array();
    rows = json_array();
    if (!res || !cols || !rows) { rc = EVL_ENOMEM; goto out; }
    int nc = sqlite3_column_count(st);
    for (int c = 0; c < nc; c++) json_array_append_new(cols, json_string(sqlite3_column_name(st, c)));
    size_t n = 0;
    int truncated = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == max_rows) { truncated = 1; break; }
        json_t *row = json_array();
        if (!row) { rc = EVL_ENOMEM; goto out; }
        for (int c = 0; c < nc; c++) json_array_append_new(row, column_value(st, c));
        json_array_append_new(rows, row);
        n++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        if (dl.hit) {
            snprintf(err, errlen, "query ran past its time limit (%d ms)", timeout);
            rc = EVL_ELIMIT;
        } else {
            snprintf(err, errlen, "%s", sqlite3_errmsg(db));
            rc = EVL_ESQL;
        }
        goto out;
    }
    sqlite3_set_authorizer(db, NULL, NULL);
    json_int_t position = 0;
    if (sqlite3_prepare_v2(db, "SELECT position FROM _evl_checkpoint WHERE id = 1", -1, &cp, NULL) == SQLITE_OK &&
        sqlite3_step(cp) == SQLITE_ROW)
        position = sqlite3_column_int64(cp, 0);
    json_object_set_new(res, "columns", cols);
    json_object_set_new(res, "rows", rows);
    json_object_set_new(res, "position", json_integer(position));
    json_object_set_new(res, "truncated", json_boolean(truncated));
    cols = rows = NULL;
    *result = res;
    res = NULL;
    rc = EVL_OK;
out:
    json_decref(res);
    json_decref(cols);
    json_decref(rows);
    sqlite3_finalize(cp);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
