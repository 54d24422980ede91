/* Reading a row's history: the `_evl_history` rows of one key, grouped into
 * entries (one per row change: position, seq), each joined with the event at
 * its position in the log for its time, type, stream and meta.actor.
 *
 * The history and the checkpoint are read in one SQLite snapshot, so
 * "position" says exactly which events the list covers. */
#include "evlog/json.h"
#include "projections/proj_int.h"

static json_t *value_json(sqlite3_stmt *st, int c) {
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(st, c));
    case SQLITE_FLOAT: return json_real(sqlite3_column_double(st, c));
    case SQLITE_TEXT:
        return json_stringn_nocheck((const char *)sqlite3_column_text(st, c), (size_t)sqlite3_column_bytes(st, c));
    case SQLITE_BLOB: {
        const uint8_t *b = sqlite3_column_blob(st, c);
        int n = sqlite3_column_bytes(st, c);
        char *hex = evl_malloc((size_t)n * 2 + 1);
        if (!hex) return NULL;
        hex[0] = 0;
        for (int i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", b[i]);
        json_t *j = json_string(hex);
        evl_free(hex);
        return j;
    }
    default: return json_null();
    }
}

/* The event's time, type, stream and actor into entry @p e. */
static int add_event(evl_log *log, uint64_t pos, json_t *e) {
    uint8_t *raw = NULL;
    size_t len;
    evl_event ev;
    int rc = evl_log_get(log, pos, &raw, &len);
    if (rc == EVL_OK) rc = evl_log_decode(raw, len, &ev);
    if (rc) {
        evl_free(raw);
        return rc;
    }
    char tm[40];
    size_t tl = evl_time_format(ev.time_ns, 9, tm);
    json_t *actor = NULL;
    evl_mp v;
    if (ev.meta_len && evl_mp_map_find(ev.meta, ev.meta_len, "actor", 5, &v) == EVL_OK) {
        evl_mp_val x;
        if (evl_mp_read(&v, &x) == EVL_OK && x.kind == EVL_MP_STR) actor = json_stringn(x.v.s.ptr, x.v.s.len);
    }
    json_object_set_new(e, "time", json_stringn(tm, tl));
    json_object_set_new(e, "type", json_stringn(ev.type, ev.type_len));
    json_object_set_new(e, "stream", json_stringn(ev.stream, ev.stream_len));
    json_object_set_new(e, "actor", actor ? actor : json_null());
    evl_free(raw);
    return EVL_OK;
}

/* Is @p table kept with history in this file, and is @p column one of its recorded columns? */
static int check_table(sqlite3 *db, const char *table, const char *column, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM _evl_history_tables WHERE table_name = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    if (!found) {
        snprintf(err, errlen, "table %s has no history in this projection (its spec needs '-- @history %s')", table,
                 table);
        return EVL_ENOTFOUND;
    }
    if (!column) return EVL_OK;
    found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    if (!found) {
        snprintf(err, errlen, "table %s has no column %s", table, column);
        return EVL_EINVAL;
    }
    /* an EXCEPT column would answer an empty list, which reads as "never changed" */
    found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM _evl_history_except WHERE table_name = ?1 AND column_name = ?2", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    if (found) {
        snprintf(err, errlen, "column %s of table %s is not recorded (its @history line excludes it: EXCEPT %s)",
                 column, table, column);
        return EVL_EINVAL;
    }
    return EVL_OK;
}

int evl_proj_history_file(evl_log *log, const char *db_path, const char *table, const char *key,
                          const char *column, json_t **out, char *err, size_t errlen) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    json_t *res = NULL, *entries = NULL, *cur = NULL, *changes = NULL;
    int rc;
    *out = NULL;
    err[0] = 0;
    int orc = evl__proj_sqlite_open(db_path, SQLITE_OPEN_READONLY, &db);
    if (orc == SQLITE_CANTOPEN) { /* a rebuild's swap between resolving the symlink and opening: once more */
        sqlite3_close(db);
        db = NULL;
        orc = evl__proj_sqlite_open(db_path, SQLITE_OPEN_READONLY, &db);
    }
    if (orc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", db_path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return EVL_ENOTFOUND;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        rc = EVL_ESQL;
        goto out;
    }
    if ((rc = check_table(db, table, column, err, errlen))) goto out;
    json_int_t checkpoint = 0;
    if (sqlite3_prepare_v2(db, "SELECT position FROM _evl_checkpoint WHERE id = 1", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        checkpoint = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT position, seq, op, column_name, old, new FROM _evl_history"
                               " WHERE table_name = ?1 AND pk = ?2 AND (?3 IS NULL OR column_name = ?3)"
                               " ORDER BY position, seq, col", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        rc = EVL_ESQL;
        goto out;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    if (column) sqlite3_bind_text(st, 3, column, -1, SQLITE_STATIC);
    if (!(res = json_object()) || !(entries = json_array())) { rc = EVL_ENOMEM; goto out; }
    sqlite3_int64 last_pos = -1, last_seq = -1;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 pos = sqlite3_column_int64(st, 0), seq = sqlite3_column_int64(st, 1);
        if (pos != last_pos || seq != last_seq) {
            cur = json_pack("{s:I,s:s}", "position", (json_int_t)pos, "op", (const char *)sqlite3_column_text(st, 2));
            int lost = !cur || json_array_append_new(entries, cur); /* takes cur, even when it fails */
            cur = NULL;
            if (lost) { rc = EVL_ENOMEM; goto out; }
            /* entries holds the entry (and the entry its changes): both stay usable while they are filled */
            json_t *e = json_array_get(entries, json_array_size(entries) - 1);
            if ((rc = add_event(log, (uint64_t)pos, e))) {
                snprintf(err, errlen, "reading the event at position %lld: %s", (long long)pos, evl_strerror(rc));
                goto out;
            }
            if (!(changes = json_array()) || json_object_set_new(e, "changes", changes)) { rc = EVL_ENOMEM; goto out; }
            last_pos = pos;
            last_seq = seq;
        }
        if (sqlite3_column_type(st, 3) == SQLITE_NULL) continue; /* a row of NULLs: nothing to show */
        json_t *c = json_object();
        if (!c) { rc = EVL_ENOMEM; goto out; }
        json_object_set_new(c, "column", value_json(st, 3));
        json_object_set_new(c, "old", value_json(st, 4));
        json_object_set_new(c, "new", value_json(st, 5));
        json_array_append_new(changes, c);
    }
    if (step != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        rc = EVL_ESQL;
        goto out;
    }
    json_object_set_new(res, "table", json_string(table));
    json_object_set_new(res, "key", json_string(key));
    if (column) json_object_set_new(res, "column", json_string(column));
    json_object_set_new(res, "position", json_integer(checkpoint));
    json_object_set_new(res, "entries", entries);
    entries = NULL;
    *out = res;
    res = NULL;
    rc = EVL_OK;
out:
    json_decref(cur);
    json_decref(entries);
    json_decref(res);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
