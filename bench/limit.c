/** @file limit.c
 * @brief The limit of bench/project and bench/rebuild: the statements a
 * projection's handlers run, with their values decoded before timing, bound
 * and stepped by a plain loop straight into SQLite; and a digest of every
 * row, to check that two systems built the same tables.
 *
 * Moved out of project.c unchanged, so that both benchmarks measure against
 * the same loop (see bench/README.md, "The limit").
 */
#include "limit.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "evlog/json.h"
#include "evlog/mp.h"

void set_err(char *dst, size_t n, const char *fmt, ...)
{
    if (dst[0])
        return; /* keep the first */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, n, fmt, ap);
    va_end(ap);
}

/** CPU seconds (user + system) of the whole process so far.  During a timed
 * run only the system under test works (the projector thread, or the
 * limit's loop), so this tells CPU cost apart from time lost to other
 * processes on a shared machine. */
double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

void remove_db(const char *path)
{
    char buf[4300];
    unlink(path);
    snprintf(buf, sizeof buf, "%s-wal", path);
    unlink(buf);
    snprintf(buf, sizeof buf, "%s-shm", path);
    unlink(buf);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* ----------------------------------------- the limit: precomputed values */

static const void *arena_copy(program *pg, const void *src, size_t len)
{
    chunk *c = pg->arena;
    if (!c || c->cap - c->used < len) {
        size_t cap = len > (1u << 20) ? len : (1u << 20);
        c = xmalloc(sizeof *c + cap);
        c->next = pg->arena;
        c->used = 0;
        c->cap = cap;
        pg->arena = c;
    }
    void *p = c->data + c->used;
    if (len)
        memcpy(p, src, len);
    c->used += len;
    return p;
}

static val *new_val(program *pg)
{
    if (pg->n_vals == pg->cap_vals) {
        pg->cap_vals = pg->cap_vals ? pg->cap_vals * 2 : 1 << 16;
        pg->vals = xrealloc(pg->vals, pg->cap_vals * sizeof *pg->vals);
    }
    val *v = &pg->vals[pg->n_vals++];
    memset(v, 0, sizeof *v);
    return v;
}

static void text_val(program *pg, val *v, const char *s, size_t len)
{
    v->kind = V_TEXT;
    v->len = (int)len;
    v->u.p = arena_copy(pg, s, len);
}

/** Maps and arrays bind as JSON text, as the engine binds them. */
static void json_val(program *pg, val *v, const uint8_t *p, size_t len)
{
    json_t *j;
    v->kind = V_NULL;
    if (evl_json_from_msgpack(p, len, &j) != EVL_OK)
        return;
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!text) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    text_val(pg, v, text, strlen(text));
    free(text);
}

/** The value of the msgpack value at @p p, by the binding rules of the spec
 * format (include/evlog/proj.h). */
static void mp_val(program *pg, val *v, const uint8_t *p, const uint8_t *end)
{
    evl_mp m = {p, end};
    evl_mp_val x;
    v->kind = V_NULL;
    if (evl_mp_read(&m, &x))
        return;
    switch (x.kind) {
    case EVL_MP_NIL: break;
    case EVL_MP_BOOL: v->kind = V_INT; v->u.i = x.v.b; break;
    case EVL_MP_UINT:
        if (x.v.u <= INT64_MAX) {
            v->kind = V_INT;
            v->u.i = (sqlite3_int64)x.v.u;
        } else {
            v->kind = V_REAL;
            v->u.d = (double)x.v.u;
        }
        break;
    case EVL_MP_INT: v->kind = V_INT; v->u.i = x.v.i; break;
    case EVL_MP_FLOAT: v->kind = V_REAL; v->u.d = x.v.f; break;
    case EVL_MP_STR: text_val(pg, v, x.v.s.ptr, x.v.s.len); break;
    case EVL_MP_BIN:
        v->kind = V_BLOB;
        v->len = (int)x.v.s.len;
        v->u.p = arena_copy(pg, x.v.s.ptr, x.v.s.len);
        break;
    case EVL_MP_EXT:
        v->kind = V_BLOB;
        v->len = (int)x.v.ext.len;
        v->u.p = arena_copy(pg, x.v.ext.ptr, x.v.ext.len);
        break;
    case EVL_MP_ARRAY: case EVL_MP_MAP: {
        evl_mp whole = {p, end};
        if (evl_mp_skip(&whole, 64) == EVL_OK)
            json_val(pg, v, p, (size_t)(whole.p - p));
        break;
    }
    }
}

static void param_val(program *pg, val *v, const spec_param *sp, const evl_event *ev)
{
    char buf[40];
    switch (sp->kind) {
    case P_DATA: case P_META: {
        const uint8_t *map = sp->kind == P_DATA ? ev->data : ev->meta;
        size_t len = sp->kind == P_DATA ? ev->data_len : ev->meta_len;
        evl_mp m;
        v->kind = V_NULL;
        if (map && len && evl_mp_map_find(map, len, sp->key, sp->key_len, &m) == EVL_OK)
            mp_val(pg, v, m.p, map + len);
        break;
    }
    case P_STREAM: text_val(pg, v, ev->stream, ev->stream_len); break;
    case P_TYPE: text_val(pg, v, ev->type, ev->type_len); break;
    case P_POSITION: v->kind = V_INT; v->u.i = (sqlite3_int64)ev->position; break;
    case P_REVISION: v->kind = V_INT; v->u.i = (sqlite3_int64)ev->revision; break;
    case P_TIME_NS: v->kind = V_INT; v->u.i = ev->time_ns; break;
    case P_CATEGORY: text_val(pg, v, ev->stream, evl_stream_category(ev->stream, ev->stream_len)); break;
    case P_TIME: text_val(pg, v, buf, evl_time_format(ev->time_ns, 3, buf)); break;
    case P_ID: evl_uuid_format(ev->id, buf); text_val(pg, v, buf, 36); break;
    case P_DATA_JSON: json_val(pg, v, ev->data, ev->data_len); break;
    case P_META_JSON: json_val(pg, v, ev->meta, ev->meta_len); break;
    }
}

static int handler_matches(const spec_handler *h, const evl_event *ev)
{
    if (h->wildcard)
        return 1;
    for (size_t t = 0; t < h->n_types; t++)
        if (strlen(h->types[t]) == ev->type_len && !memcmp(h->types[t], ev->type, ev->type_len))
            return 1;
    return 0;
}

/** Read the whole log once and decode every event into the statements its
 * handlers run and their values. */
int build_program(evl_log *log, const evl_proj_spec *spec, program *pg)
{
    memset(pg, 0, sizeof *pg);
    pg->spec = spec;
    pg->first_stmt = xmalloc(spec->n_handlers * sizeof *pg->first_stmt);
    for (size_t h = 0; h < spec->n_handlers; h++) {
        pg->first_stmt[h] = pg->n_stmts;
        pg->n_stmts += spec->handlers[h].n_stmts;
    }
    pg->sql = xmalloc(pg->n_stmts * sizeof *pg->sql);
    for (size_t h = 0, k = 0; h < spec->n_handlers; h++)
        for (size_t s = 0; s < spec->handlers[h].n_stmts; s++)
            pg->sql[k++] = spec->handlers[h].stmts[s].sql;
    uint64_t head = evl_log_head(log);
    pg->ev_first = xmalloc((head + 1) * sizeof *pg->ev_first);
    evl_iter *it;
    evl_event ev;
    int rc = evl_iter_open(log, &(evl_query){.from_position = 1}, &it);
    if (rc) {
        fprintf(stderr, "bench: evl_iter_open: %s\n", evl_strerror(rc));
        return -1;
    }
    while ((rc = evl_iter_next(it, &ev)) == EVL_OK && pg->n_events < head) {
        pg->ev_first[pg->n_events++] = pg->n_ops;
        int matched = 0;
        for (size_t h = 0; h < spec->n_handlers; h++) {
            const spec_handler *hd = &spec->handlers[h];
            if (!handler_matches(hd, &ev))
                continue;
            matched = 1;
            for (size_t s = 0; s < hd->n_stmts; s++) {
                if (pg->n_ops == pg->cap_ops) {
                    pg->cap_ops = pg->cap_ops ? pg->cap_ops * 2 : 1 << 14;
                    pg->ops = xrealloc(pg->ops, pg->cap_ops * sizeof *pg->ops);
                }
                op *o = &pg->ops[pg->n_ops++];
                o->stmt = (uint32_t)(pg->first_stmt[h] + s);
                o->val = pg->n_vals;
                o->nval = (uint32_t)hd->stmts[s].n_params;
                for (size_t k = 0; k < hd->stmts[s].n_params; k++)
                    param_val(pg, new_val(pg), &hd->stmts[s].params[k], &ev);
            }
        }
        pg->matched += (uint64_t)matched;
    }
    evl_iter_close(it);
    pg->ev_first[pg->n_events] = pg->n_ops;
    if (rc != EVL_OK && rc != EVL_END) {
        fprintf(stderr, "bench: reading the log: %s\n", evl_strerror(rc));
        return -1;
    }
    return pg->n_events == head ? 0 : -1;
}

void free_program(program *pg)
{
    while (pg->arena) {
        chunk *c = pg->arena;
        pg->arena = c->next;
        free(c);
    }
    free(pg->first_stmt);
    free(pg->sql);
    free(pg->ops);
    free(pg->vals);
    free(pg->ev_first);
    memset(pg, 0, sizeof *pg);
}

/** The engine's own writer connection (projections/sqlite.c
 * evl__proj_open_writer: busy timeout, WAL, synchronous=NORMAL, cache,
 * ...), so that the limit pays for exactly the same journal and PRAGMAs. */
static int open_like_engine(const char *path, sqlite3 **db, char *err, size_t errn)
{
    char msg[512];
    if (evl__proj_open_writer(path, db, msg, sizeof msg) != EVL_OK) {
        set_err(err, errn, "%s", msg);
        *db = NULL;
        return -1;
    }
    return 0;
}

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errn)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        set_err(err, errn, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int step_reset(sqlite3_stmt *st)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/** One limit run: the precomputed statements bound and stepped in
 * transactions of @p batch events on a fresh file. */
int limit_run(const program *pg, const char *path, size_t batch, double *secs, double *cpu, char *err,
                     size_t errn)
{
    sqlite3 *db = NULL;
    sqlite3_stmt **st = calloc(pg->n_stmts ? pg->n_stmts : 1, sizeof *st), *begin = NULL, *commit = NULL;
    int ret = -1;
    remove_db(path);
    if (!st || open_like_engine(path, &db, err, errn) != 0 || exec_sql(db, "BEGIN IMMEDIATE", err, errn) ||
        exec_sql(db, pg->spec->ddl, err, errn) || exec_sql(db, "COMMIT", err, errn))
        goto out;
    for (size_t i = 0; i < pg->n_stmts; i++)
        if (sqlite3_prepare_v3(db, pg->sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL) != SQLITE_OK) {
            set_err(err, errn, "prepare: %s", sqlite3_errmsg(db));
            goto out;
        }
    if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK) {
        set_err(err, errn, "prepare: %s", sqlite3_errmsg(db));
        goto out;
    }
    /* a transaction holds @p batch events that run statements, as the
     * engine's does (batch_events counts the events it applies) */
    double c0 = cpu_now();
    uint64_t t0 = bench_now_ns();
    size_t in_txn = 0;
    for (size_t e = 0; e < pg->n_events; e++) {
        if (pg->ev_first[e] == pg->ev_first[e + 1])
            continue;
        if (in_txn == 0 && step_reset(begin) != SQLITE_OK)
            goto sqlfail;
        for (size_t k = pg->ev_first[e]; k < pg->ev_first[e + 1]; k++) {
            const op *o = &pg->ops[k];
            sqlite3_stmt *s = st[o->stmt];
            const val *v = &pg->vals[o->val];
            for (uint32_t i = 0; i < o->nval; i++) {
                int idx = (int)i + 1;
                switch (v[i].kind) {
                case V_NULL: sqlite3_bind_null(s, idx); break;
                case V_INT: sqlite3_bind_int64(s, idx, v[i].u.i); break;
                case V_REAL: sqlite3_bind_double(s, idx, v[i].u.d); break;
                case V_TEXT: sqlite3_bind_text(s, idx, v[i].u.p, v[i].len, SQLITE_STATIC); break;
                case V_BLOB: sqlite3_bind_blob(s, idx, v[i].u.p, v[i].len, SQLITE_STATIC); break;
                }
            }
            if (step_reset(s) != SQLITE_OK)
                goto sqlfail;
        }
        if (++in_txn == batch) {
            if (step_reset(commit) != SQLITE_OK)
                goto sqlfail;
            in_txn = 0;
        }
    }
    if (in_txn && step_reset(commit) != SQLITE_OK)
        goto sqlfail;
    *secs = (double)(bench_now_ns() - t0) / 1e9;
    *cpu = cpu_now() - c0;
    ret = 0;
    goto out;
sqlfail:
    set_err(err, errn, "limit: %s", sqlite3_errmsg(db));
out:
    if (st)
        for (size_t i = 0; i < pg->n_stmts; i++)
            sqlite3_finalize(st[i]);
    free(st);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    return ret;
}

/* ------------------------------------------------------ the table digest */

static void fnv(uint64_t *h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * 0x100000001b3ULL;
}

/** A hash of every row of every table of @p spec in file @p path (rowid
 * order), to check that evlog and the limit produced the same tables. */
int table_digest(const char *path, const evl_proj_spec *spec, uint64_t *hash, uint64_t *rows)
{
    sqlite3 *db = NULL;
    int ret = 0;
    *hash = 0xcbf29ce484222325ULL;
    *rows = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    for (size_t t = 0; t < spec->n_tables && ret == 0; t++) {
        char sql[256];
        sqlite3_stmt *st;
        if (strcmp(spec->tables[t], "_evl_checkpoint") == 0)
            continue;
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", spec->tables[t]);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
            ret = -1;
            break;
        }
        fnv(hash, spec->tables[t], strlen(spec->tables[t]) + 1);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            (*rows)++;
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                uint8_t type = (uint8_t)sqlite3_column_type(st, c);
                fnv(hash, &type, 1);
                if (type == SQLITE_INTEGER) {
                    int64_t i = sqlite3_column_int64(st, c);
                    fnv(hash, &i, sizeof i);
                } else if (type == SQLITE_FLOAT) {
                    double d = sqlite3_column_double(st, c);
                    fnv(hash, &d, sizeof d);
                } else if (type != SQLITE_NULL) {
                    const void *b = sqlite3_column_blob(st, c);
                    int n = sqlite3_column_bytes(st, c);
                    fnv(hash, &n, sizeof n);
                    fnv(hash, b, (size_t)n);
                }
            }
        }
        if (rc != SQLITE_DONE)
            ret = -1;
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return ret;
}
