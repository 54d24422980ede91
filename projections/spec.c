/* The projection file parser (format in include/evlog/proj.h).
 *
 * The file is split by its directive lines into DDL and handler bodies;
 * then everything is checked against a scratch in-memory database: the DDL
 * runs, every handler statement is prepared against it, and every
 * parameter name must be one the engine can bind.  So a spec that parses
 * will not fail on its first event for a reason visible in advance, and
 * every message names the file and the line. */
#include <ctype.h>
#include <stdarg.h>
#include <strings.h>

#include "projections/proj_int.h"

typedef struct parser {
    const char *src, *end, *file;
    char *err;
    size_t errlen;
    evl_proj_spec *spec;
} parser;

__attribute__((format(printf, 3, 4))) static int fail(parser *p, int line, const char *fmt, ...) {
    if (p->err && p->errlen) {
        int n = snprintf(p->err, p->errlen, "%s:%d: ", p->file, line);
        if (n >= 0 && (size_t)n < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return EVL_ESPEC;
}

static int line_of(const parser *p, const char *at) {
    int line = 1;
    for (const char *s = p->src; s < at && s < p->end; s++) line += *s == '\n';
    return line;
}

/* Skip blanks and SQL comments. */
static const char *skip_blank(const char *s, const char *end) {
    for (;;) {
        while (s < end && isspace((unsigned char)*s)) s++;
        if (end - s >= 2 && s[0] == '-' && s[1] == '-') {
            while (s < end && *s != '\n') s++;
        } else if (end - s >= 2 && s[0] == '/' && s[1] == '*') {
            const char *c = s + 2;
            while (c + 1 < end && !(c[0] == '*' && c[1] == '/')) c++;
            s = c + 1 < end ? c + 2 : end;
        } else {
            return s;
        }
    }
}

static char *dup_range(const char *a, const char *b) {
    char *s = evl_malloc((size_t)(b - a) + 1);
    if (s) {
        memcpy(s, a, (size_t)(b - a));
        s[b - a] = 0;
    }
    return s;
}

static int valid_name(const char *s, size_t n) {
    if (n == 0 || n > EVL_PROJ_MAX_NAME || !(islower((unsigned char)s[0]) || s[0] == '_')) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_')) return 0;
    return 1;
}

static const struct { const char *name; param_kind kind; } AT_PARAMS[] = {
    {"stream", P_STREAM}, {"type", P_TYPE}, {"position", P_POSITION}, {"revision", P_REVISION},
    {"id", P_ID}, {"time", P_TIME}, {"time_ns", P_TIME_NS}, {"category", P_CATEGORY},
    {"data", P_DATA_JSON}, {"meta", P_META_JSON},
};

static int plan_params(parser *p, sqlite3_stmt *st, spec_stmt *out) {
    int n = sqlite3_bind_parameter_count(st);
    if (n == 0) return EVL_OK;
    if (!(out->params = evl_calloc((size_t)n, sizeof *out->params))) return EVL_ENOMEM;
    /* counted only once the array exists: evl_proj_spec_free() walks it */
    out->n_params = (size_t)n;
    for (int i = 1; i <= n; i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        spec_param *sp = &out->params[i - 1];
        if (!name || name[0] == '?')
            return fail(p, out->line, "positional parameter '%s': use :field, $field or @name", name ? name : "?");
        if (name[0] == '@') {
            size_t k;
            for (k = 0; k < EVL_ARRAY_LEN(AT_PARAMS); k++)
                if (!strcmp(name + 1, AT_PARAMS[k].name)) break;
            if (k == EVL_ARRAY_LEN(AT_PARAMS))
                return fail(p, out->line, "unknown parameter %s (known: @stream @type @position "
                            "@revision @id @time @time_ns @category @data @meta)", name);
            sp->kind = AT_PARAMS[k].kind;
            continue;
        }
        if (name[1] == 0) return fail(p, out->line, "empty parameter name '%s'", name);
        sp->kind = name[0] == ':' ? P_DATA : P_META;
        sp->key_len = strlen(name + 1);
        if (!(sp->key = dup_range(name + 1, name + 1 + sp->key_len))) return EVL_ENOMEM;
    }
    return EVL_OK;
}

/* Split [a, b) into statements; prepare each against db.  With @p out,
 * keep them as handler statements; without, run them (the DDL). */
static int compile(parser *p, sqlite3 *db, const char *a, const char *b, spec_handler *out) {
    char *text = dup_range(a, b);
    if (!text) return EVL_ENOMEM;
    const char *s = text, *end = text + (b - a);
    int rc = EVL_OK;
    while (rc == EVL_OK) {
        s = skip_blank(s, end);
        if (s >= end) break;
        int line = line_of(p, a + (s - text));
        sqlite3_stmt *st = NULL;
        const char *tail;
        if (sqlite3_prepare_v2(db, s, (int)(end - s), &st, &tail) != SQLITE_OK) {
            rc = fail(p, line, "%s", sqlite3_errmsg(db));
            break;
        }
        if (!st) break; /* only comments left */
        if (!out) {
            int step = sqlite3_step(st);
            if (step != SQLITE_DONE && step != SQLITE_ROW) rc = fail(p, line, "%s", sqlite3_errmsg(db));
        } else {
            spec_stmt *grown = evl_realloc(out->stmts, (out->n_stmts + 1) * sizeof *grown);
            if (!grown) {
                rc = EVL_ENOMEM;
            } else {
                out->stmts = grown;
                spec_stmt *ss = &out->stmts[out->n_stmts++];
                memset(ss, 0, sizeof *ss);
                ss->line = line;
                if (!(ss->sql = dup_range(s, tail))) rc = EVL_ENOMEM;
                else rc = plan_params(p, st, ss);
            }
        }
        sqlite3_finalize(st);
        s = tail;
    }
    evl_free(text);
    return rc;
}

static int add_type(spec_handler *h, const char *t, size_t n) {
    if (n == 1 && t[0] == '*') {
        h->wildcard = 1;
        return EVL_OK;
    }
    char **grown = evl_realloc(h->types, (h->n_types + 1) * sizeof *grown);
    if (!grown) return EVL_ENOMEM;
    h->types = grown;
    if (!(h->types[h->n_types] = dup_range(t, t + n))) return EVL_ENOMEM;
    h->n_types++;
    return EVL_OK;
}

typedef struct body { const char *a, *b; } body;

static const char *skip_sp(const char *s, const char *end) {
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    return s;
}

static const char *word_end(const char *s, const char *end) {
    while (s < end && *s != ' ' && *s != '\t' && *s != ',') s++;
    return s;
}

static int is_except(const char *w, const char *we) { return we - w == 6 && !strncasecmp(w, "EXCEPT", 6); }

/* The columns after EXCEPT: `a, b, c` (at least one; commas between). */
static int add_except(parser *p, int line, spec_history *h, const char *s, const char *b) {
    for (;;) {
        s = skip_sp(s, b);
        const char *we = word_end(s, b);
        if (we == s)
            return fail(p, line, "@history %s: EXCEPT wants a list of columns separated by commas (EXCEPT a, b)",
                        h->table);
        for (size_t i = 0; i < h->n_except; i++)
            if (strlen(h->except[i]) == (size_t)(we - s) && !strncasecmp(h->except[i], s, (size_t)(we - s)))
                return fail(p, line, "@history %s: EXCEPT lists %.*s twice", h->table, (int)(we - s), s);
        char **g = evl_realloc(h->except, (h->n_except + 1) * sizeof *g);
        if (!g) return EVL_ENOMEM;
        h->except = g;
        if (!(h->except[h->n_except] = dup_range(s, we))) return EVL_ENOMEM;
        h->n_except++;
        s = skip_sp(we, b);
        if (s == b) return EVL_OK;
        if (*s != ',')
            return fail(p, line, "@history %s: EXCEPT wants a list of columns separated by commas (EXCEPT a, b)",
                        h->table);
        s++;
    }
}

/* `TABLE [KEY_COLUMN] [EXCEPT COLUMN, ...]`; the names are checked
 * against the DDL by check_history(). */
static int add_history(parser *p, int line, const char *a, const char *b) {
    static const char usage[] = "@history wants TABLE [KEY_COLUMN] [EXCEPT COLUMN, ...]";
    evl_proj_spec *sp = p->spec;
    if (!sp->name) return fail(p, line, "@history before the @projection line");
    if (a == b) return fail(p, line, "@history needs a table name");
    const char *te = word_end(a, b);
    if (te == a || (te < b && *te == ',')) return fail(p, line, "%s", usage);
    const char *k = skip_sp(te, b), *ke = word_end(k, b), *x = NULL;
    if (k < b && is_except(k, ke)) {
        x = ke;
        k = ke = NULL;
    } else if (k < b) {
        if (ke == k) return fail(p, line, "%s", usage);
        const char *w = skip_sp(ke, b), *we = word_end(w, b);
        if (w < b && !is_except(w, we)) return fail(p, line, "%s", usage);
        if (w < b) x = we;
    } else {
        k = ke = NULL;
    }
    for (size_t i = 0; i < sp->n_hist; i++)
        if ((size_t)(te - a) == strlen(sp->hist[i].table) && !memcmp(a, sp->hist[i].table, (size_t)(te - a)))
            return fail(p, line, "a second @history line for table %s (first on line %d)", sp->hist[i].table,
                        sp->hist[i].line);
    spec_history *g = evl_realloc(sp->hist, (sp->n_hist + 1) * sizeof *g);
    if (!g) return EVL_ENOMEM;
    sp->hist = g;
    spec_history *h = &g[sp->n_hist++];
    memset(h, 0, sizeof *h);
    h->line = line;
    if (!(h->table = dup_range(a, te))) return EVL_ENOMEM;
    if (k && !(h->key = dup_range(k, ke))) return EVL_ENOMEM;
    return x ? add_except(p, line, h, x, b) : EVL_OK;
}

/* EXCEPT names columns of the table other than its key: the key is what
 * every entry is found by, so an insert or delete without it would be lost. */
static int except_columns(parser *p, spec_history *h) {
    if (h->n_except == 0) return EVL_OK;
    if (!(h->skip = evl_calloc(h->n_cols, 1))) return EVL_ENOMEM;
    for (size_t i = 0; i < h->n_except; i++) {
        size_t c = 0;
        while (c < h->n_cols && strcasecmp(h->cols[c], h->except[i])) c++;
        if (c == h->n_cols)
            return fail(p, h->line, "@history %s: EXCEPT %s: the table has no column %s", h->table, h->except[i],
                        h->except[i]);
        if ((int)c == h->pk)
            return fail(p, h->line, "@history %s: EXCEPT %s: %s is the key the history is found by; it is always "
                        "recorded", h->table, h->except[i], h->except[i]);
        h->skip[c] = 1;
    }
    return EVL_OK;
}

/* `-- @history TABLE COLUMN`: COLUMN must identify a row, alone: the
 * single PRIMARY KEY column, or alone in a UNIQUE index (a UNIQUE
 * constraint makes one); NULLs are not keys, which the lookup by text
 * never matches anyway. */
static int key_column(parser *p, sqlite3 *db, spec_history *h) {
    size_t c = 0;
    while (c < h->n_cols && strcmp(h->cols[c], h->key)) c++;
    if (c == h->n_cols) return fail(p, h->line, "@history %s %s: the table has no column %s", h->table, h->key, h->key);
    sqlite3_stmt *st;
    int ok = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_index_list(?1) AS l WHERE l.\"unique\" AND"
                               " (SELECT count(*) FROM pragma_index_info(l.name)) = 1 AND"
                               " (SELECT name FROM pragma_index_info(l.name)) = ?2"
                               " UNION ALL SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2 AND pk = 1 AND"
                               " (SELECT count(*) FROM pragma_table_info(?1) WHERE pk > 0) = 1", -1, &st, NULL) != SQLITE_OK)
        return fail(p, h->line, "checking @history: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, h->table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, h->key, -1, SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!ok)
        return fail(p, h->line, "@history %s %s: %s is neither the PRIMARY KEY nor UNIQUE alone, so it does not "
                    "identify a row", h->table, h->key, h->key);
    h->pk = (int)c;
    return EVL_OK;
}

/* Each @history table must be a real table of the DDL keyed by one
 * column: its history is looked up by that key, and the pre-update hook
 * numbers columns as the table declares them (generated columns would
 * shift that numbering, virtual tables never reach the hook). */
static int check_history(parser *p, sqlite3 *db) {
    evl_proj_spec *sp = p->spec;
    int rc = EVL_OK;
    sqlite3_stmt *m = NULL, *ti = NULL, *tx = NULL;
    if (sp->n_hist == 0) return EVL_OK;
    sqlite3_set_authorizer(db, NULL, NULL); /* pragma_table_info: our own reading, not the spec's SQL */
    if (sqlite3_prepare_v2(db, "SELECT type, sql FROM sqlite_master WHERE name = ?1", -1, &m, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid", -1, &ti, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_xinfo(?1)", -1, &tx, NULL) != SQLITE_OK) {
        rc = fail(p, sp->hist[0].line, "checking @history: %s", sqlite3_errmsg(db));
        goto out;
    }
    for (size_t i = 0; i < sp->n_hist && rc == EVL_OK; i++) {
        spec_history *h = &sp->hist[i];
        if (!strncmp(h->table, "_evl_", 5) || !strncmp(h->table, "sqlite_", 7)) {
            rc = fail(p, h->line, "@history %s: evlog's and SQLite's own tables have no history", h->table);
            break;
        }
        sqlite3_bind_text(m, 1, h->table, -1, SQLITE_STATIC);
        int found = sqlite3_step(m) == SQLITE_ROW;
        const char *type = found ? (const char *)sqlite3_column_text(m, 0) : NULL;
        const char *sql = found ? (const char *)sqlite3_column_text(m, 1) : NULL;
        if (!found || !type || strcmp(type, "table"))
            rc = fail(p, h->line, "@history %s: the DDL creates no table of that name", h->table);
        else if (sql && !strncasecmp(sql, "CREATE VIRTUAL", 14))
            rc = fail(p, h->line, "@history %s: a virtual table has no row history", h->table);
        sqlite3_reset(m);
        if (rc) break;
        int pks = 0;
        sqlite3_bind_text(ti, 1, h->table, -1, SQLITE_STATIC);
        while (rc == EVL_OK && sqlite3_step(ti) == SQLITE_ROW) {
            char **g = evl_realloc(h->cols, (h->n_cols + 1) * sizeof *g);
            const char *name = (const char *)sqlite3_column_text(ti, 0);
            if (!g) { rc = EVL_ENOMEM; break; }
            h->cols = g;
            if (!(h->cols[h->n_cols] = dup_range(name, name + strlen(name)))) { rc = EVL_ENOMEM; break; }
            if (sqlite3_column_int(ti, 1) > 0) {
                pks++;
                h->pk = (int)h->n_cols;
            }
            h->n_cols++;
        }
        sqlite3_reset(ti);
        sqlite3_bind_text(tx, 1, h->table, -1, SQLITE_STATIC);
        int all = sqlite3_step(tx) == SQLITE_ROW ? sqlite3_column_int(tx, 0) : -1;
        sqlite3_reset(tx);
        if (rc) break;
        if (all != (int)h->n_cols)
            rc = fail(p, h->line, "@history %s: tables with generated columns are not supported", h->table);
        else if (h->key)
            rc = key_column(p, db, h);
        else if (pks == 0)
            rc = fail(p, h->line, "@history %s: the table has no PRIMARY KEY; a row's history is found by its key"
                      " (or name a UNIQUE column: -- @history %s COLUMN)", h->table, h->table);
        else if (pks > 1)
            rc = fail(p, h->line, "@history %s: a composite PRIMARY KEY cannot key the history; name a UNIQUE "
                      "column (-- @history %s COLUMN)", h->table, h->table);
        if (rc == EVL_OK) rc = except_columns(p, h);
    }
out:
    sqlite3_finalize(m);
    sqlite3_finalize(ti);
    sqlite3_finalize(tx);
    return rc;
}

static int parse(parser *p, sqlite3 *db) {
    evl_proj_spec *sp = p->spec;
    const char *ddl_a = NULL, *ddl_b = NULL, *body_a = NULL;
    body *bodies = NULL;
    size_t n_bodies = 0;
    int rc = EVL_OK, line = 0;
    for (const char *s = p->src; s < p->end && rc == EVL_OK; line++) {
        const char *eol = memchr(s, '\n', (size_t)(p->end - s));
        if (!eol) eol = p->end;
        const char *t = s;
        while (t < eol && (*t == ' ' || *t == '\t')) t++;
        const char *d = NULL;
        if (eol - t >= 2 && t[0] == '-' && t[1] == '-') {
            d = t + 2;
            while (d < eol && (*d == ' ' || *d == '\t')) d++;
            if (d >= eol || *d != '@') d = NULL;
        }
        if (!d) {
            if (!sp->name && skip_blank(t, eol) < eol)
                rc = fail(p, line + 1, "SQL before the '-- @projection NAME' line");
            s = eol + 1;
            continue;
        }
        const char *w = d + 1, *we = w;
        while (we < eol && !isspace((unsigned char)*we)) we++;
        const char *arg = we;
        while (arg < eol && isspace((unsigned char)*arg)) arg++;
        const char *arge = eol;
        while (arge > arg && isspace((unsigned char)arge[-1])) arge--;
        size_t wl = (size_t)(we - w);
        if (wl == 10 && !memcmp(w, "projection", 10)) {
            if (sp->name) rc = fail(p, line + 1, "a second @projection line");
            else if (!valid_name(arg, (size_t)(arge - arg)))
                rc = fail(p, line + 1, "projection name must be 1..%d of [a-z0-9_], starting with a letter", EVL_PROJ_MAX_NAME);
            else if (!(sp->name = dup_range(arg, arge))) rc = EVL_ENOMEM;
            ddl_a = eol;
        } else if (wl == 2 && !memcmp(w, "on", 2)) {
            if (!sp->name) { rc = fail(p, line + 1, "@on before the @projection line"); break; }
            if (arg == arge || memchr(arg, ' ', (size_t)(arge - arg)))
                { rc = fail(p, line + 1, "@on needs exactly one event type (or *)"); break; }
            if (!ddl_b) {
                ddl_b = s;
                if (skip_blank(ddl_a, ddl_b) >= ddl_b) { rc = fail(p, line + 1, "handler before any DDL (CREATE TABLE ...)"); break; }
            }
            int shares = sp->n_handlers > 0 && skip_blank(body_a, s) >= s;
            if (!shares) {
                if (sp->n_handlers) bodies[n_bodies - 1].b = s;
                spec_handler *gh = evl_realloc(sp->handlers, (sp->n_handlers + 1) * sizeof *gh);
                body *gb = evl_realloc(bodies, (n_bodies + 1) * sizeof *gb);
                if (gh) sp->handlers = gh;
                if (gb) bodies = gb;
                if (!gh || !gb) { rc = EVL_ENOMEM; break; }
                memset(&sp->handlers[sp->n_handlers++], 0, sizeof(spec_handler));
                sp->handlers[sp->n_handlers - 1].line = line + 1;
                n_bodies++;
            }
            rc = add_type(&sp->handlers[sp->n_handlers - 1], arg, (size_t)(arge - arg));
            body_a = eol;
            bodies[n_bodies - 1].a = eol;
        } else if (wl == 7 && !memcmp(w, "history", 7)) {
            rc = add_history(p, line + 1, arg, arge);
        } else {
            rc = fail(p, line + 1, "unknown directive @%.*s (known: @projection, @on, @history)", (int)wl, w);
        }
        s = eol + 1;
    }
    if (rc == EVL_OK && !sp->name) rc = fail(p, 1, "missing '-- @projection NAME' line");
    if (rc == EVL_OK && !ddl_b) {
        ddl_b = p->end;
        if (skip_blank(ddl_a, ddl_b) >= ddl_b) rc = fail(p, line, "no DDL (CREATE TABLE ...)");
    }
    if (rc == EVL_OK && n_bodies) bodies[n_bodies - 1].b = p->end;
    if (rc == EVL_OK && !(sp->ddl = dup_range(ddl_a, ddl_b))) rc = EVL_ENOMEM;
    if (rc == EVL_OK) rc = compile(p, db, ddl_a, ddl_b, NULL);
    for (size_t i = 0; i < n_bodies && rc == EVL_OK; i++) {
        rc = compile(p, db, bodies[i].a, bodies[i].b, &sp->handlers[i]);
        if (rc == EVL_OK && sp->handlers[i].n_stmts == 0)
            rc = fail(p, sp->handlers[i].line, "handler has no SQL statement");
    }
    evl_free(bodies);
    if (rc == EVL_OK) rc = check_history(p, db);
    return rc;
}

static int list_tables(evl_proj_spec *sp, sqlite3 *db) {
    sqlite3_stmt *st;
    int rc = EVL_OK;
    if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                               "'sqlite_%' ORDER BY name", -1, &st, NULL) != SQLITE_OK)
        return EVL_ESQL;
    while (rc == EVL_OK && sqlite3_step(st) == SQLITE_ROW) {
        char **grown = evl_realloc(sp->tables, (sp->n_tables + 1) * sizeof *grown);
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!grown) { rc = EVL_ENOMEM; break; }
        sp->tables = grown;
        if (!(sp->tables[sp->n_tables] = dup_range(name, name + strlen(name)))) rc = EVL_ENOMEM;
        else sp->n_tables++;
    }
    sqlite3_finalize(st);
    return rc;
}

int evl_proj_spec_parse(const char *src, size_t len, const char *file, evl_proj_spec **out,
                        char *err, size_t errlen) {
    parser p = {src, src + len, file, err, errlen, NULL};
    sqlite3 *db = NULL;
    int rc;
    *out = NULL;
    if (err && errlen) err[0] = 0;
    if (!(p.spec = evl_calloc(1, sizeof *p.spec)) || !(p.spec->file = dup_range(file, file + strlen(file))) ||
        !(p.spec->text = dup_range(src, src + len))) {
        evl_proj_spec_free(p.spec);
        return EVL_ENOMEM;
    }
    p.spec->len = len;
    /* FNV-1a: the hash only has to tell versions of one file apart */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)src[i]) * 0x100000001b3ULL;
    snprintf(p.spec->hash, sizeof p.spec->hash, "%016llx", (unsigned long long)h);
    if (evl__proj_sqlite_open(":memory:", SQLITE_OPEN_READWRITE, &db) != SQLITE_OK) {
        rc = EVL_ENOMEM;
        goto out;
    }
    sqlite3_set_authorizer(db, evl__proj_authorizer, NULL);
    rc = parse(&p, db);
    if (rc == EVL_OK) rc = list_tables(p.spec, db);
out:
    sqlite3_close(db);
    if (rc) {
        if (rc == EVL_ENOMEM && err && errlen) snprintf(err, errlen, "%s: out of memory", file);
        evl_proj_spec_free(p.spec);
        return rc;
    }
    *out = p.spec;
    return EVL_OK;
}

void evl_proj_spec_free(evl_proj_spec *sp) {
    if (!sp) return;
    for (size_t i = 0; i < sp->n_handlers; i++) {
        spec_handler *h = &sp->handlers[i];
        for (size_t t = 0; t < h->n_types; t++) evl_free(h->types[t]);
        evl_free(h->types);
        for (size_t s = 0; s < h->n_stmts; s++) {
            for (size_t k = 0; k < h->stmts[s].n_params; k++) evl_free(h->stmts[s].params[k].key);
            evl_free(h->stmts[s].params);
            evl_free(h->stmts[s].sql);
        }
        evl_free(h->stmts);
    }
    for (size_t i = 0; i < sp->n_hist; i++) {
        for (size_t c = 0; c < sp->hist[i].n_cols; c++) evl_free(sp->hist[i].cols[c]);
        evl_free(sp->hist[i].cols);
        evl_free(sp->hist[i].table);
        evl_free(sp->hist[i].key);
        for (size_t c = 0; c < sp->hist[i].n_except; c++) evl_free(sp->hist[i].except[c]);
        evl_free(sp->hist[i].except);
        evl_free(sp->hist[i].skip);
    }
    evl_free(sp->hist);
    for (size_t i = 0; i < sp->n_tables; i++) evl_free(sp->tables[i]);
    evl_free(sp->tables);
    evl_free(sp->handlers);
    evl_free(sp->ddl);
    evl_free(sp->name);
    evl_free(sp->file);
    evl_free(sp->text);
    evl_free(sp);
}

const char *evl_proj_spec_name(const evl_proj_spec *sp) { return sp->name; }
const char *evl_proj_spec_hash(const evl_proj_spec *sp) { return sp->hash; }
const char *evl_proj_spec_file(const evl_proj_spec *sp) { return sp->file; }
