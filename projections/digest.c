/* evl_proj_digest_file(): a content hash of a projection's tables, so that
 * two machines that replayed the same log can show they derived the same
 * tables (and a rebuild, that it derived them again).
 *
 * It hashes the rows and nothing about how SQLite stores them (pages,
 * rowids of tables with no INTEGER PRIMARY KEY, free space, the WAL), with
 * SHA-256 over this byte stream (docs/audit.md has it for auditors):
 *
 *   for each table, by name in byte order, except sqlite_* and evlog's own
 *   _evl_* bookkeeping (checkpoint: it says when, not what):
 *     'T' str(name) u32(n_cols) str(col)...      columns in declared order
 *     for each row, ordered by the primary key columns, then every other
 *     column (declared order), each compared with COLLATE BINARY:
 *       'R' value...
 *     'E' u64(rows)
 *   value: 0x00 NULL | 0x01 i64 INTEGER | 0x02 f64 bits REAL
 *          | 0x03 str TEXT | 0x04 str BLOB
 *   str(x) = u32(byte length) bytes; integers big-endian.
 *
 * Ordering by every column makes the order canonical even for a table
 * with no primary key (equal rows are equal bytes, whichever comes first).
 * All of it is read in one read transaction, with the checkpoint: the
 * digest is the one of the tables at that position. */
#include "projections/proj_int.h"

typedef struct dctx {
    evl_sha256 *h;
    int rc;
} dctx;

static void put(dctx *d, const void *p, size_t n) {
    if (!d->rc) d->rc = evl__sha256_add(d->h, p, n);
}
static void put_u8(dctx *d, uint8_t v) { put(d, &v, 1); }
static void put_u32(dctx *d, uint32_t v) {
    uint8_t b[4];
    evl__put_be32(b, v);
    put(d, b, 4);
}
static void put_u64(dctx *d, uint64_t v) {
    uint8_t b[8];
    evl__put_be64(b, v);
    put(d, b, 8);
}
static void put_str(dctx *d, const void *p, size_t n) {
    put_u32(d, (uint32_t)n);
    put(d, p, n);
}

/* "a"."b" quoting for an identifier that comes from the file itself. */
static char *quote_ident(const char *s) { return sqlite3_mprintf("\"%w\"", s); }

/* Hash table @p name: its columns, then its rows in canonical order. */
static int digest_table(sqlite3 *db, dctx *d, const char *name, uint64_t *rows, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    sqlite3_str *order = sqlite3_str_new(db), *cols = sqlite3_str_new(db);
    char *sql = NULL, *q;
    int rc = EVL_OK, n_cols = 0;
    /* the primary key columns first, in key order (pk = 1, 2, ...), then the others */
    if (sqlite3_prepare_v2(db, "SELECT name, pk FROM pragma_table_info(?1) ORDER BY pk = 0, pk, cid",
                           -1, &st, NULL) != SQLITE_OK)
        goto sql_fail;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        q = quote_ident((const char *)sqlite3_column_text(st, 0));
        sqlite3_str_appendf(order, "%s%s COLLATE BINARY", n_cols ? ", " : "", q ? q : "");
        sqlite3_free(q);
        n_cols++;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* the column list in declared order, for SELECT and for the header */
    if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info(?1) ORDER BY cid", -1, &st, NULL) != SQLITE_OK)
        goto sql_fail;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    put_u8(d, 'T');
    put_str(d, name, strlen(name));
    put_u32(d, (uint32_t)n_cols);
    for (int i = 0; sqlite3_step(st) == SQLITE_ROW; i++) {
        const char *c = (const char *)sqlite3_column_text(st, 0);
        put_str(d, c, (size_t)sqlite3_column_bytes(st, 0));
        q = quote_ident(c);
        sqlite3_str_appendf(cols, "%s%s", i ? ", " : "", q ? q : "");
        sqlite3_free(q);
    }
    sqlite3_finalize(st);
    st = NULL;
    char *o = sqlite3_str_finish(order), *cl = sqlite3_str_finish(cols);
    order = cols = NULL;
    q = quote_ident(name);
    sql = o && cl && q ? sqlite3_mprintf("SELECT %s FROM %s ORDER BY %s", cl, q, o) : NULL;
    sqlite3_free(o);
    sqlite3_free(cl);
    sqlite3_free(q);
    if (!sql) { rc = EVL_ENOMEM; goto out; }
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) goto sql_fail;
    uint64_t n = 0;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        put_u8(d, 'R');
        for (int c = 0; c < n_cols; c++) {
            switch (sqlite3_column_type(st, c)) {
            case SQLITE_INTEGER:
                put_u8(d, 1);
                put_u64(d, (uint64_t)sqlite3_column_int64(st, c));
                break;
            case SQLITE_FLOAT: {
                double v = sqlite3_column_double(st, c);
                uint64_t bits;
                memcpy(&bits, &v, 8);
                put_u8(d, 2);
                put_u64(d, bits);
                break;
            }
            case SQLITE_TEXT: {
                const unsigned char *t = sqlite3_column_text(st, c);
                put_u8(d, 3);
                put_str(d, t, (size_t)sqlite3_column_bytes(st, c));
                break;
            }
            case SQLITE_BLOB: {
                const void *b = sqlite3_column_blob(st, c);
                put_u8(d, 4);
                put_str(d, b, (size_t)sqlite3_column_bytes(st, c));
                break;
            }
            default: put_u8(d, 0);
            }
        }
        n++;
    }
    if (src != SQLITE_DONE) goto sql_fail;
    put_u8(d, 'E');
    put_u64(d, n);
    *rows += n;
    rc = d->rc;
    goto out;
sql_fail:
    snprintf(err, errlen, "table %s: %s", name, sqlite3_errmsg(db));
    rc = evl__proj_sqlite_err(sqlite3_errcode(db));
    if (!rc) rc = EVL_ESQL;
out:
    sqlite3_free(sqlite3_str_finish(order));
    sqlite3_free(sqlite3_str_finish(cols));
    sqlite3_free(sql);
    sqlite3_finalize(st);
    return rc;
}

int evl_proj_digest_file(const char *db_path, evl_proj_digest *out, char *err, size_t errlen) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    dctx d = {NULL, EVL_OK};
    int rc;
    memset(out, 0, sizeof *out);
    err[0] = 0;
    if ((rc = evl__sha256_new(&d.h)) || (rc = evl__sha256_begin(d.h))) {
        snprintf(err, errlen, "out of memory");
        evl__sha256_free(d.h);
        return rc;
    }
    int orc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (orc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", db_path, db ? sqlite3_errmsg(db) : "out of memory");
        rc = EVL_ENOTFOUND;
        goto out;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) goto sql_fail;
    if (sqlite3_prepare_v2(db, "SELECT position FROM _evl_checkpoint WHERE id = 1", -1, &st, NULL) != SQLITE_OK)
        goto sql_fail;
    if (sqlite3_step(st) == SQLITE_ROW) out->position = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND "
                               "substr(name, 1, 7) <> 'sqlite_' AND substr(name, 1, 5) <> '_evl_' "
                               "ORDER BY name COLLATE BINARY", -1, &st, NULL) != SQLITE_OK)
        goto sql_fail;
    int src;
    while (rc == EVL_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        rc = digest_table(db, &d, (const char *)sqlite3_column_text(st, 0), &out->rows, err, errlen);
        out->tables++;
    }
    if (rc) goto out;
    if (src != SQLITE_DONE) goto sql_fail;
    if ((rc = evl__sha256_end(d.h, out->hash))) snprintf(err, errlen, "out of memory");
    goto out;
sql_fail:
    snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    rc = evl__proj_sqlite_err(sqlite3_errcode(db));
    if (!rc) rc = EVL_ESQL;
out:
    sqlite3_finalize(st);
    sqlite3_close(db); /* ends the read transaction */
    evl__sha256_free(d.h);
    return rc;
}
