/* Field-level history of the `-- @history TABLE` tables.
 *
 * SQLite's pre-update hook sees every row an event's statements insert,
 * update or delete (REPLACE and upsert conflicts included, which triggers
 * would miss without recursive triggers), with the old and the new values.
 * A hook may not write to its connection, so the changes are copied into a
 * buffer (one arena, no allocation per value once it has grown) and written
 * to `_evl_history` right after the statement that made them, in the
 * batch's transaction: rows, history and checkpoint commit together.
 *
 * One history row per column changed: an insert records each non-NULL
 * column (old NULL), a delete each non-NULL column (new NULL), an update
 * each column whose value changed (an update that changes nothing records
 * nothing).  The line's EXCEPT columns are never looked at: an update that
 * changes only them records nothing, and takes no `seq`, so the entries are
 * those of a spec whose table lacked those columns.  An update of the key
 * itself is recorded as a delete of the old key and an insert of the new
 * one, so each key's list is complete; a row
 * whose key is NULL has no history (nothing could look it up).  `seq`
 * numbers the row changes of one event, so entries group by
 * (position, seq), and `col` is the column's number.  Everything depends
 * only on the events, so a rebuild writes the same rows.
 *
 * The table is clustered on (table_name, pk, position, seq, col) (WITHOUT
 * ROWID): a row's history is one range of one b-tree, read in order, and
 * each change costs one b-tree insert instead of a row plus an index entry
 * (bench/history: 30% smaller, and faster to write).
 *
 * The hook is installed only when the spec asks for history; then other
 * tables cost one call and a few string compares per changed row. */
/* Debian's libsqlite3 is built with the hook; its header declares it only on request. */
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "projections/proj_int.h"

typedef struct hval {
    int type;                   /* SQLITE_INTEGER ... SQLITE_NULL */
    sqlite3_int64 i;
    double d;
    size_t off, len;            /* text / blob bytes in the arena */
} hval;

typedef struct hrec {
    uint32_t table;             /* index in spec->hist */
    uint32_t seq;
    int op;                     /* SQLITE_INSERT / _UPDATE / _DELETE */
    int col;                    /* -1: the whole row (an insert or delete of a row of NULLs) */
    hval pk, old, new;
} hrec;

struct proj_hist {
    const evl_proj_spec *spec;
    sqlite3_stmt *ins;
    uint64_t position;
    uint32_t seq;
    hrec *rec;
    size_t n, cap;
    char *arena;
    size_t used, acap;
    int oom;
};

static int arena_put(proj_hist *h, const void *p, size_t n, size_t *off) {
    if (h->used + n > h->acap) {
        size_t cap = h->acap ? h->acap : 4096;
        while (cap < h->used + n) cap *= 2;
        char *g = evl_realloc(h->arena, cap);
        if (!g) return -1;
        h->arena = g;
        h->acap = cap;
    }
    if (n) memcpy(h->arena + h->used, p, n);
    *off = h->used;
    h->used += n;
    return 0;
}

static int copy_value(proj_hist *h, sqlite3_value *v, hval *out) {
    memset(out, 0, sizeof *out);
    out->type = v ? sqlite3_value_type(v) : SQLITE_NULL;
    switch (out->type) {
    case SQLITE_INTEGER: out->i = sqlite3_value_int64(v); return 0;
    case SQLITE_FLOAT: out->d = sqlite3_value_double(v); return 0;
    case SQLITE_TEXT: {
        const unsigned char *t = sqlite3_value_text(v);
        out->len = (size_t)sqlite3_value_bytes(v);
        return t ? arena_put(h, t, out->len, &out->off) : -1;
    }
    case SQLITE_BLOB: {
        const void *b = sqlite3_value_blob(v);
        out->len = (size_t)sqlite3_value_bytes(v);
        return arena_put(h, b ? b : "", out->len, &out->off);
    }
    default: out->type = SQLITE_NULL; return 0;
    }
}

static int same_value(sqlite3_value *a, sqlite3_value *b) {
    int ta = a ? sqlite3_value_type(a) : SQLITE_NULL, tb = b ? sqlite3_value_type(b) : SQLITE_NULL;
    if (ta != tb) return 0;
    switch (ta) {
    case SQLITE_NULL: return 1;
    case SQLITE_INTEGER: return sqlite3_value_int64(a) == sqlite3_value_int64(b);
    case SQLITE_FLOAT: return sqlite3_value_double(a) == sqlite3_value_double(b);
    case SQLITE_TEXT: {
        const unsigned char *x = sqlite3_value_text(a), *y = sqlite3_value_text(b);
        int n = sqlite3_value_bytes(a);
        return n == sqlite3_value_bytes(b) && (n == 0 || !memcmp(x, y, (size_t)n));
    }
    default: {
        int n = sqlite3_value_bytes(a);
        return n == sqlite3_value_bytes(b) && (n == 0 || !memcmp(sqlite3_value_blob(a), sqlite3_value_blob(b), (size_t)n));
    }
    }
}

static hrec *new_rec(proj_hist *h, uint32_t t, int op, int col) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        hrec *g = evl_realloc(h->rec, cap * sizeof *g);
        if (!g) return NULL;
        h->rec = g;
        h->cap = cap;
    }
    hrec *r = &h->rec[h->n++];
    memset(r, 0, sizeof *r);
    r->table = t;
    r->seq = h->seq;
    r->op = op;
    r->col = col;
    return r;
}

typedef int (*getter)(sqlite3 *, int, sqlite3_value **);

/* Every non-NULL column of the row as it is before (delete) or after (insert). */
static int whole_row(proj_hist *h, sqlite3 *db, uint32_t t, int op, getter get, const hval *pk) {
    const spec_history *sh = &h->spec->hist[t];
    size_t before = h->n;
    for (size_t c = 0; c < sh->n_cols; c++) {
        sqlite3_value *v = NULL;
        if (sh->skip && sh->skip[c]) continue;
        if (get(db, (int)c, &v) != SQLITE_OK) return -1;
        if (!v || sqlite3_value_type(v) == SQLITE_NULL) continue;
        hrec *r = new_rec(h, t, op, (int)c);
        if (!r || copy_value(h, v, op == SQLITE_DELETE ? &r->old : &r->new)) return -1;
        r->pk = *pk;
    }
    if (h->n == before) {
        hrec *r = new_rec(h, t, op, -1);
        if (!r) return -1;
        r->pk = *pk;
    }
    h->seq++;
    return 0;
}

static void hook(void *arg, sqlite3 *db, int op, const char *zdb, const char *ztab, sqlite3_int64 k1,
                 sqlite3_int64 k2) {
    proj_hist *h = arg;
    (void)k1; (void)k2;
    const evl_proj_spec *sp = h->spec;
    uint32_t t = 0;
    while (t < sp->n_hist && strcmp(ztab, sp->hist[t].table)) t++;
    if (t == sp->n_hist || strcmp(zdb, "main") || h->oom) return;
    const spec_history *sh = &sp->hist[t];
    sqlite3_value *opk = NULL, *npk = NULL;
    hval pk;
    int bad = 0;
    if (op == SQLITE_INSERT) {
        bad = sqlite3_preupdate_new(db, sh->pk, &npk) != SQLITE_OK || copy_value(h, npk, &pk) ||
              whole_row(h, db, t, op, sqlite3_preupdate_new, &pk);
    } else if (op == SQLITE_DELETE) {
        bad = sqlite3_preupdate_old(db, sh->pk, &opk) != SQLITE_OK || copy_value(h, opk, &pk) ||
              whole_row(h, db, t, op, sqlite3_preupdate_old, &pk);
    } else if (op == SQLITE_UPDATE) {
        bad = sqlite3_preupdate_old(db, sh->pk, &opk) != SQLITE_OK ||
              sqlite3_preupdate_new(db, sh->pk, &npk) != SQLITE_OK;
        if (!bad && !same_value(opk, npk)) {
            hval npkv;
            bad = copy_value(h, opk, &pk) || whole_row(h, db, t, SQLITE_DELETE, sqlite3_preupdate_old, &pk) ||
                  copy_value(h, npk, &npkv) || whole_row(h, db, t, SQLITE_INSERT, sqlite3_preupdate_new, &npkv);
        } else if (!bad) {
            int changed = 0;
            bad = copy_value(h, opk, &pk);
            for (size_t c = 0; c < sh->n_cols && !bad; c++) {
                sqlite3_value *o = NULL, *n = NULL;
                if (sh->skip && sh->skip[c]) continue;
                if (sqlite3_preupdate_old(db, (int)c, &o) != SQLITE_OK || sqlite3_preupdate_new(db, (int)c, &n) != SQLITE_OK) {
                    bad = 1;
                    break;
                }
                if (same_value(o, n)) continue;
                hrec *r = new_rec(h, t, op, (int)c);
                bad = !r || copy_value(h, o, &r->old) || copy_value(h, n, &r->new);
                if (!bad) r->pk = pk;
                changed = 1;
            }
            if (changed) h->seq++;
        }
    }
    if (bad) h->oom = 1;
}

int evl__proj_hist_setup(proj *p, char *err, size_t errlen) {
    const evl_proj_spec *sp = p->spec;
    if (sp->n_hist == 0) return EVL_OK;
    if (!sqlite3_compileoption_used("ENABLE_PREUPDATE_HOOK")) {
        snprintf(err, errlen, "%s: @history needs a libsqlite3 built with SQLITE_ENABLE_PREUPDATE_HOOK", sp->file);
        return EVL_ESQL;
    }
    proj_hist *h = evl_calloc(1, sizeof *h);
    if (!h) return EVL_ENOMEM;
    h->spec = sp;
    if (sqlite3_prepare_v3(p->db, "INSERT INTO _evl_history (table_name, pk, position, seq, op, column_name, old, new, col)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                           -1, SQLITE_PREPARE_PERSISTENT, &h->ins, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "history: %s", sqlite3_errmsg(p->db));
        evl_free(h);
        return EVL_ESQL;
    }
    p->hist = h;
    sqlite3_preupdate_hook(p->db, hook, h);
    return EVL_OK;
}

/* One row per @history line (its key column), or with @p except one per
 * EXCEPT column, through the two-parameter INSERT @p sql. */
static int insert_rows(sqlite3 *db, const char *sql, const evl_proj_spec *sp, int except, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    for (size_t i = 0; rc == SQLITE_OK && i < sp->n_hist; i++) {
        const spec_history *h = &sp->hist[i];
        for (size_t c = 0; rc == SQLITE_OK && c < (except ? h->n_cols : 1); c++) {
            if (except && !(h->skip && h->skip[c])) continue;
            sqlite3_bind_text(st, 1, h->table, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, h->cols[except ? c : (size_t)h->pk], -1, SQLITE_STATIC);
            rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
            if (rc) snprintf(err, errlen, "%s", sqlite3_errmsg(db));
            sqlite3_reset(st);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* old and new have no declared type: no affinity, each value keeps its own.
 * _evl_history_except lists the EXCEPT columns, so that a question about one
 * is answered "not recorded" rather than with an empty list (files made
 * before it existed have no such table, and no EXCEPT either). */
int evl__proj_hist_create(sqlite3 *db, const evl_proj_spec *sp, char *err, size_t errlen) {
    if (sp->n_hist == 0) return SQLITE_OK;
    int rc = evl__proj_exec(db,
                            "CREATE TABLE _evl_history (table_name TEXT NOT NULL, pk TEXT NOT NULL,"
                            " position INTEGER NOT NULL, seq INTEGER NOT NULL, col INTEGER NOT NULL, op TEXT NOT NULL,"
                            " column_name TEXT, old, new, PRIMARY KEY (table_name, pk, position, seq, col)) WITHOUT ROWID;"
                            "CREATE TABLE _evl_history_tables (table_name TEXT PRIMARY KEY, key_column TEXT NOT NULL);"
                            "CREATE TABLE _evl_history_except (table_name TEXT NOT NULL, column_name TEXT NOT NULL,"
                            " PRIMARY KEY (table_name, column_name)) WITHOUT ROWID;",
                            err, errlen);
    if (rc == SQLITE_OK) rc = insert_rows(db, "INSERT INTO _evl_history_tables VALUES (?1, ?2)", sp, 0, err, errlen);
    if (rc == SQLITE_OK) rc = insert_rows(db, "INSERT INTO _evl_history_except VALUES (?1, ?2)", sp, 1, err, errlen);
    return rc;
}

void evl__proj_hist_teardown(proj *p) {
    proj_hist *h = p->hist;
    if (!h) return;
    if (p->db) sqlite3_preupdate_hook(p->db, NULL, NULL);
    sqlite3_finalize(h->ins);
    evl_free(h->rec);
    evl_free(h->arena);
    evl_free(h);
    p->hist = NULL;
}

void evl__proj_hist_begin(proj_hist *h, uint64_t position) {
    h->position = position;
    h->seq = 0;
    h->n = h->used = 0;
    h->oom = 0;
}

void evl__proj_hist_clear(proj_hist *h) {
    h->n = h->used = 0;
    h->oom = 0;
}

static void bind_hval(proj_hist *h, int i, const hval *v) {
    switch (v->type) {
    case SQLITE_INTEGER: sqlite3_bind_int64(h->ins, i, v->i); break;
    case SQLITE_FLOAT: sqlite3_bind_double(h->ins, i, v->d); break;
    case SQLITE_TEXT: sqlite3_bind_text(h->ins, i, h->arena + v->off, (int)v->len, SQLITE_STATIC); break;
    case SQLITE_BLOB: sqlite3_bind_blob(h->ins, i, h->arena + v->off, (int)v->len, SQLITE_STATIC); break;
    default: sqlite3_bind_null(h->ins, i); break;
    }
}

int evl__proj_hist_flush(proj_hist *h, sqlite3 *db, char *err, size_t errlen) {
    static const char *const ops[] = {[SQLITE_INSERT] = "insert", [SQLITE_UPDATE] = "update", [SQLITE_DELETE] = "delete"};
    if (h->oom) {
        snprintf(err, errlen, "history: out of memory recording a change");
        evl__proj_hist_clear(h);
        return SQLITE_NOMEM;
    }
    for (size_t i = 0; i < h->n; i++) {
        const hrec *r = &h->rec[i];
        if (r->pk.type == SQLITE_NULL) continue; /* a NULL key names no row: nothing to look it up by */
        const spec_history *sh = &h->spec->hist[r->table];
        sqlite3_bind_text(h->ins, 1, sh->table, -1, SQLITE_STATIC);
        bind_hval(h, 2, &r->pk);
        sqlite3_bind_int64(h->ins, 3, (sqlite3_int64)h->position);
        sqlite3_bind_int64(h->ins, 4, (sqlite3_int64)r->seq);
        sqlite3_bind_text(h->ins, 5, ops[r->op], -1, SQLITE_STATIC);
        if (r->col >= 0) sqlite3_bind_text(h->ins, 6, sh->cols[r->col], -1, SQLITE_STATIC);
        else sqlite3_bind_null(h->ins, 6);
        bind_hval(h, 7, &r->old);
        bind_hval(h, 8, &r->new);
        sqlite3_bind_int(h->ins, 9, r->col);
        int rc = sqlite3_step(h->ins);
        sqlite3_reset(h->ins);
        if (rc != SQLITE_DONE) {
            snprintf(err, errlen, "history: %s", sqlite3_errmsg(db));
            evl__proj_hist_clear(h);
            return rc;
        }
    }
    evl__proj_hist_clear(h);
    return SQLITE_OK;
}
