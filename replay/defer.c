/* Secondary indexes built after a shadow's bulk load.
 *
 * A shadow applies every event of the log before anyone reads it, so an
 * index that no handler statement uses is pure write cost while it is
 * built: every insert and update of the table also updates the index, in
 * the order events arrive.  Dropped at the start and created again when the
 * shadow reaches the head, such an index is built once from the finished
 * table (SQLite sorts the keys first), and the file served after the swap
 * has exactly the spec's schema.
 *
 * An index is only deferred when nothing can notice its absence:
 * - it is not UNIQUE (a unique index is a constraint, and an upsert's
 *   conflict target);
 * - no handler statement's plan uses it (EXPLAIN QUERY PLAN of each one);
 * - its table has no foreign keys (their checks look up child rows through
 *   indexes no plan shows), and the schema has no triggers (whose
 *   statements are not in the plans either). */
#include "projections/proj_int.h"

/* Does a plan detail ("SEARCH t USING INDEX name (a=?)", "... USING
 * COVERING INDEX name ...") name this index? */
static int names_index(const char *detail, const char *index) {
    size_t n = strlen(index);
    for (const char *at = strstr(detail, "INDEX "); at; at = strstr(at + 1, "INDEX ")) {
        const char *name = at + 6;
        if (!strncmp(name, index, n) && (name[n] == 0 || name[n] == ' ')) return 1;
    }
    return 0;
}

static int used_by_handlers(proj *p, const char *index, int *used) {
    const evl_proj_spec *sp = p->spec;
    *used = 0;
    for (size_t h = 0; h < sp->n_handlers && !*used; h++)
        for (size_t s = 0; s < sp->handlers[h].n_stmts && !*used; s++) {
            char *sql = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sqlite3_sql(p->stmts[h][s]));
            sqlite3_stmt *eqp = NULL;
            if (!sql) return EVL_ENOMEM;
            int rc = sqlite3_prepare_v2(p->db, sql, -1, &eqp, NULL);
            sqlite3_free(sql);
            if (rc != SQLITE_OK) return evl__proj_sqlite_err(rc);
            while ((rc = sqlite3_step(eqp)) == SQLITE_ROW) {
                const char *detail = (const char *)sqlite3_column_text(eqp, 3);
                if (detail && names_index(detail, index)) *used = 1;
            }
            sqlite3_finalize(eqp);
            if (rc != SQLITE_DONE && rc != SQLITE_ROW) return evl__proj_sqlite_err(rc);
        }
    return EVL_OK;
}

static void forget(shadow *s) {
    for (size_t i = 0; i < s->n_deferred; i++) {
        evl_free(s->deferred[i].name);
        evl_free(s->deferred[i].sql);
    }
    evl_free(s->deferred);
    s->deferred = NULL;
    s->n_deferred = 0;
}

static char *dup_str(const char *t) {
    size_t n = strlen(t) + 1;
    char *c = evl_malloc(n);
    if (c) memcpy(c, t, n);
    return c;
}

/* Candidates: every index the DDL made that is not unique, on tables
 * without foreign keys, when the schema has no triggers. */
static const char CANDIDATES[] =
    "SELECT m.name, m.sql FROM sqlite_master m JOIN pragma_index_list(m.tbl_name) il ON il.name = m.name"
    " WHERE m.type = 'index' AND m.sql IS NOT NULL AND il.\"unique\" = 0"
    "   AND NOT EXISTS (SELECT 1 FROM pragma_foreign_key_list(m.tbl_name))"
    "   AND NOT EXISTS (SELECT 1 FROM sqlite_master t WHERE t.type = 'trigger')"
    " ORDER BY m.rowid";

int evl__proj_defer_indexes(shadow *s, char *err, size_t errlen) {
    proj *p = &s->p;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(p->db, CANDIDATES, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "listing indexes: %s", sqlite3_errmsg(p->db));
        return evl__proj_sqlite_err(rc);
    }
    int ret = EVL_OK;
    while (ret == EVL_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *sql = (const char *)sqlite3_column_text(st, 1);
        int used;
        if (!name || !sql) continue;
        if ((ret = used_by_handlers(p, name, &used)) != EVL_OK) {
            snprintf(err, errlen, "planning the handlers: %s", sqlite3_errmsg(p->db));
            break;
        }
        if (used) continue;
        deferred_index *grown = evl_realloc(s->deferred, (s->n_deferred + 1) * sizeof *grown);
        if (!grown) { ret = EVL_ENOMEM; break; }
        s->deferred = grown;
        deferred_index *d = &s->deferred[s->n_deferred];
        d->name = dup_str(name);
        d->sql = dup_str(sql);
        s->n_deferred++;
        if (!d->name || !d->sql) ret = EVL_ENOMEM;
    }
    if (ret == EVL_OK && rc != SQLITE_DONE) {
        snprintf(err, errlen, "listing indexes: %s", sqlite3_errmsg(p->db));
        ret = evl__proj_sqlite_err(rc);
    }
    sqlite3_finalize(st);
    /* dropped after the listing: sqlite_master must not change under it.
     * The prepared handler statements notice the schema change and are
     * prepared again on their next step, with the plans just examined. */
    for (size_t i = 0; ret == EVL_OK && i < s->n_deferred; i++) {
        char *drop = sqlite3_mprintf("DROP INDEX \"%w\"", s->deferred[i].name);
        if (!drop) ret = EVL_ENOMEM;
        else if (evl__proj_exec(p->db, drop, err, errlen) != SQLITE_OK) ret = EVL_ESQL;
        sqlite3_free(drop);
    }
    if (ret != EVL_OK) forget(s);
    return ret;
}

int evl__proj_defer_restore(shadow *s, char *err, size_t errlen) {
    int ret = EVL_OK;
    for (size_t i = 0; ret == EVL_OK && i < s->n_deferred; i++)
        if (evl__proj_exec(s->p.db, s->deferred[i].sql, err, errlen) != SQLITE_OK) ret = EVL_ESQL;
    forget(s);
    return ret;
}

void evl__proj_defer_forget(shadow *s) { forget(s); }
