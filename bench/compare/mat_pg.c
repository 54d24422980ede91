/* Workload 5, PostgreSQL: the four built-in specs translated to PostgreSQL
 * and issued by a libpq client, the way a service that keeps these tables
 * itself would (one prepared statement per handler statement, one round trip
 * each, MAT_BATCH events per transaction, synchronous_commit=on).
 *
 * The translation starts from the very SQL the engine prepares (the parsed
 * spec), so the handlers cannot drift apart:
 *   - parameters (:field, @time, ...) become $n, numbered as SQLite numbers
 *     them, so the precomputed values (bench/limit.c) bind in the same order;
 *   - column types: INTEGER -> BIGINT (snowflake ids), REAL / FLOAT -> DOUBLE
 *     PRECISION (SQLite's REAL is 8 bytes), DATETIME / VARCHAR(n) -> TEXT
 *     (SQLite keeps the ISO-8601 text and enforces no length); BOOLEAN stays;
 *   - the few SQLite-isms, each one rewritten where it occurs (a rule that no
 *     longer matches, or a SQLite function left over, fails the round, so a
 *     changed spec is noticed, not silently mistranslated).
 * Values travel as text, as a typical client sends them. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "cmp.h"
#include "mat.h"

typedef struct rule {
    const char *from, *to;
} rule;

/* Statement rewrites, with why each keeps the SQLite meaning. */
static const rule stmt_rules[] = {
    /* two-argument MIN is SQLite's scalar minimum */
    {"MIN(1.0,", "LEAST(1.0,"},
    /* SQLite's REAL is a double */
    {"AS REAL)", "AS DOUBLE PRECISION)"},
    /* julianday compares instants whatever the fraction digits; so does timestamptz */
    {"julianday(created_at) < julianday(:before)",
     "CAST(created_at AS TIMESTAMPTZ) < CAST(:before AS TIMESTAMPTZ)"},
    /* SQLite takes an integer as a condition; PostgreSQL wants a boolean */
    {"CASE WHEN COALESCE(:oom, 0) THEN", "CASE WHEN COALESCE(CAST(:oom AS INTEGER), 0) <> 0 THEN"},
};
#define N_STMT_RULES (sizeof stmt_rules / sizeof stmt_rules[0])

/* SQLite functions that must not survive the translation. */
static const char *const sqlite_only[] = {"julianday", "json_extract", "->>", "datetime(", "strftime(",
                                          "unixepoch(", "IFNULL(", "ifnull("};

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

/* Replace every @p from in @p s; the count in *hits.  Returns a new string. */
static char *replace_all(const char *s, const char *from, const char *to, int *hits)
{
    sbuf b = {0};
    size_t fl = strlen(from);
    const char *p = s, *q;
    while ((q = strstr(p, from))) {
        if (sb_put(&b, p, (size_t)(q - p)) || sb_put(&b, to, strlen(to)))
            goto oom;
        p = q + fl;
        (*hits)++;
    }
    if (sb_put(&b, p, strlen(p)))
        goto oom;
    return b.p;
oom:
    free(b.p);
    return NULL;
}

static int ident(int c) { return isalnum(c) || c == '_'; }

/* Column types, whole upper-case words only (the specs write types that way). */
static char *translate_ddl(const char *ddl)
{
    sbuf b = {0};
    for (const char *p = ddl; *p;) {
        int word_start = p == ddl || !ident((unsigned char)p[-1]);
        const char *to = NULL;
        size_t skip = 0;
        if (word_start && !strncmp(p, "INTEGER", 7) && !ident((unsigned char)p[7]))
            to = "BIGINT", skip = 7;
        else if (word_start && !strncmp(p, "REAL", 4) && !ident((unsigned char)p[4]))
            to = "DOUBLE PRECISION", skip = 4;
        else if (word_start && !strncmp(p, "FLOAT", 5) && !ident((unsigned char)p[5]))
            to = "DOUBLE PRECISION", skip = 5;
        else if (word_start && !strncmp(p, "DATETIME", 8) && !ident((unsigned char)p[8]))
            to = "TEXT", skip = 8;
        else if (word_start && !strncmp(p, "VARCHAR(", 8)) {
            const char *e = strchr(p, ')');
            if (e)
                to = "TEXT", skip = (size_t)(e + 1 - p);
        }
        if (to) {
            if (sb_put(&b, to, strlen(to)))
                goto oom;
            p += skip;
        } else {
            if (sb_put(&b, p, 1))
                goto oom;
            p++;
        }
    }
    return b.p;
oom:
    free(b.p);
    return NULL;
}

/* Named parameters to $n, n being SQLite's index for the name in @p st;
 * string literals and comments are copied untouched. */
static char *number_params(const char *sql, sqlite3_stmt *st, char *err, size_t errn)
{
    sbuf b = {0};
    for (const char *p = sql; *p;) {
        if (*p == '\'') { /* literal, '' included */
            const char *e = p + 1;
            while (*e && !(*e == '\'' && e[1] != '\''))
                e += *e == '\'' ? 2 : 1;
            size_t n = *e ? (size_t)(e + 1 - p) : strlen(p);
            if (sb_put(&b, p, n))
                goto oom;
            p += n;
        } else if (p[0] == '-' && p[1] == '-') {
            const char *e = strchr(p, '\n');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (sb_put(&b, p, n))
                goto oom;
            p += n;
        } else if ((*p == ':' || *p == '@' || *p == '$') && (isalpha((unsigned char)p[1]) || p[1] == '_')) {
            const char *e = p + 1;
            while (ident((unsigned char)*e))
                e++;
            char name[128], num[16];
            snprintf(name, sizeof name, "%.*s", (int)(e - p), p);
            int idx = sqlite3_bind_parameter_index(st, name);
            if (idx <= 0) {
                snprintf(err, errn, "postgres translation: parameter %s unknown to SQLite", name);
                free(b.p);
                return NULL;
            }
            snprintf(num, sizeof num, "$%d", idx);
            if (sb_put(&b, num, strlen(num)))
                goto oom;
            p = e;
        } else {
            if (sb_put(&b, p, 1))
                goto oom;
            p++;
        }
    }
    return b.p;
oom:
    free(b.p);
    snprintf(err, errn, "out of memory");
    return NULL;
}

/* The translated DDL and statements of the four programs (flat, program by
 * program); NULL entries on failure.  Owned by the caller (free_sql). */
typedef struct pg_sql {
    char *ddl[MAT_N];
    char **stmt[MAT_N];
} pg_sql;

static void free_sql(pg_sql *q, program *const progs[MAT_N])
{
    for (int t = 0; t < MAT_N; t++) {
        free(q->ddl[t]);
        for (size_t i = 0; q->stmt[t] && i < progs[t]->n_stmts; i++)
            free(q->stmt[t][i]);
        free(q->stmt[t]);
    }
}

static int translate(program *const progs[MAT_N], pg_sql *q, char *err, size_t errn)
{
    int hits[N_STMT_RULES] = {0};
    memset(q, 0, sizeof *q);
    for (int t = 0; t < MAT_N; t++) {
        const program *pg = progs[t];
        sqlite3 *db = NULL;
        if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
            sqlite3_exec(db, pg->spec->ddl, NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errn, "postgres translation: %s", db ? sqlite3_errmsg(db) : "no memory");
            sqlite3_close(db);
            return -1;
        }
        q->ddl[t] = translate_ddl(pg->spec->ddl);
        q->stmt[t] = calloc(pg->n_stmts ? pg->n_stmts : 1, sizeof *q->stmt[t]);
        if (!q->ddl[t] || !q->stmt[t]) {
            sqlite3_close(db);
            snprintf(err, errn, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < pg->n_stmts; i++) {
            sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v2(db, pg->sql[i], -1, &st, NULL) != SQLITE_OK) {
                snprintf(err, errn, "postgres translation: %s", sqlite3_errmsg(db));
                sqlite3_close(db);
                return -1;
            }
            char *s = strdup(pg->sql[i]);
            for (size_t r = 0; s && r < N_STMT_RULES; r++) {
                char *n = replace_all(s, stmt_rules[r].from, stmt_rules[r].to, &hits[r]);
                free(s);
                s = n;
            }
            q->stmt[t][i] = s ? number_params(s, st, err, errn) : NULL;
            free(s);
            sqlite3_finalize(st);
            if (!q->stmt[t][i]) {
                sqlite3_close(db);
                if (!err[0])
                    snprintf(err, errn, "out of memory");
                return -1;
            }
            for (size_t k = 0; k < sizeof sqlite_only / sizeof sqlite_only[0]; k++)
                if (strstr(q->stmt[t][i], sqlite_only[k])) {
                    snprintf(err, errn, "postgres translation: %s left in %s", sqlite_only[k],
                             q->stmt[t][i]);
                    sqlite3_close(db);
                    return -1;
                }
        }
        sqlite3_close(db);
    }
    for (size_t r = 0; r < N_STMT_RULES; r++)
        if (!hits[r]) {
            snprintf(err, errn, "postgres translation: rule '%s' matches nothing: a spec changed",
                     stmt_rules[r].from);
            return -1;
        }
    return 0;
}

static int exec(PGconn *c, const char *sql, char *err, size_t errn)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errn, "postgres: %s", PQerrorMessage(c));
        return -1;
    }
    return 0;
}

/* CPU seconds of process @p pid (the server backend: same machine). */
static double proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* fields after the command name */
    unsigned long long ut = 0, stt = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return 0;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

static int digest(PGconn *c, uint64_t *out, uint64_t rows[MAT_N], char *err, size_t errn)
{
    uint64_t h = 0;
    for (int t = 0; t < MAT_N; t++) {
        char sql[512];
        snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY %s%s", mat_tables[t].cols,
                 mat_tables[t].name, mat_tables[t].key, mat_tables[t].text_key ? " COLLATE \"C\"" : "");
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            snprintf(err, errn, "postgres digest: %s", PQerrorMessage(c));
            PQclear(r);
            return -1;
        }
        mat_digest d;
        mat_digest_init(&d, mat_tables[t].name);
        for (size_t i = 0; i < sizeof h; i++) { /* chain, as materialize.c does */
            uint8_t byte = ((const uint8_t *)&h)[i];
            d.h = (d.h ^ byte) * 0x100000001b3ULL;
        }
        int nr = PQntuples(r), nc = PQnfields(r);
        for (int i = 0; i < nr; i++) {
            for (int k = 0; k < nc; k++)
                mat_digest_value(&d, PQgetisnull(r, i, k) ? NULL : PQgetvalue(r, i, k),
                                 (size_t)PQgetlength(r, i, k));
            mat_digest_row_end(&d);
        }
        rows[t] = (uint64_t)nr;
        h = d.h;
        PQclear(r);
    }
    *out = h;
    return 0;
}

#define MAX_PARAMS 64

int mat_pg_round(const char *conninfo, program *const progs[MAT_N], double *secs, double *cpu,
                 uint64_t *digest_out, uint64_t rows[MAT_N], char *err, size_t errn)
{
    pg_sql q;
    err[0] = 0;
    if (translate(progs, &q, err, errn) != 0) {
        free_sql(&q, progs);
        return -1;
    }
    PGconn *c = PQconnectdb(conninfo);
    char *scratch = NULL;
    int ret = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errn, "postgres: %s", PQerrorMessage(c));
        goto out;
    }
    if (exec(c, "DROP TABLE IF EXISTS jobs, tasks, nodes, runs", err, errn))
        goto out;
    for (int t = 0; t < MAT_N; t++)
        if (exec(c, q.ddl[t], err, errn))
            goto out;
    if (exec(c, "CHECKPOINT", err, errn))
        goto out;
    for (int t = 0; t < MAT_N; t++)
        for (size_t i = 0; i < progs[t]->n_stmts; i++) {
            char name[32];
            snprintf(name, sizeof name, "p%d_%zu", t, i);
            PGresult *r = PQprepare(c, name, q.stmt[t][i], 0, NULL);
            int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (!ok) {
                snprintf(err, errn, "postgres prepare %s: %s", q.stmt[t][i], PQerrorMessage(c));
                goto out;
            }
        }
    int backend = PQbackendPID(c);
    size_t scap = 1 << 16;
    scratch = malloc(scap);
    if (!scratch)
        goto out;
    size_t n_events = progs[0]->n_events, in_txn = 0;
    double c0 = cpu_now(), b0 = proc_cpu(backend);
    uint64_t t0 = bench_now_ns();
    for (size_t e = 0; e < n_events; e++) {
        int any = 0;
        for (int t = 0; t < MAT_N; t++) {
            const program *pg = progs[t];
            for (size_t k = pg->ev_first[e]; k < pg->ev_first[e + 1]; k++) {
                const op *o = &pg->ops[k];
                const val *v = &pg->vals[o->val];
                const char *pv[MAX_PARAMS];
                size_t off[MAX_PARAMS], used = 0;
                if (o->nval > MAX_PARAMS) {
                    snprintf(err, errn, "postgres: %u parameters", o->nval);
                    goto out;
                }
                if (!any && in_txn == 0 && exec(c, "BEGIN", err, errn))
                    goto out;
                any = 1;
                /* every value as text, NUL-terminated: as a client sends them */
                for (uint32_t i = 0; i < o->nval; i++) {
                    size_t need = v[i].kind == V_TEXT ? (size_t)v[i].len + 1 : 40;
                    if (used + need > scap) {
                        snprintf(err, errn, "postgres: values too large");
                        goto out;
                    }
                    off[i] = used;
                    switch (v[i].kind) {
                    case V_NULL: off[i] = SIZE_MAX; break;
                    case V_INT: used += (size_t)snprintf(scratch + used, 40, "%lld", (long long)v[i].u.i) + 1; break;
                    case V_REAL: used += (size_t)snprintf(scratch + used, 40, "%.17g", v[i].u.d) + 1; break;
                    case V_TEXT:
                        memcpy(scratch + used, v[i].u.p, (size_t)v[i].len);
                        scratch[used + (size_t)v[i].len] = 0;
                        used += need;
                        break;
                    default:
                        snprintf(err, errn, "postgres: a blob parameter (not in these specs)");
                        goto out;
                    }
                }
                for (uint32_t i = 0; i < o->nval; i++)
                    pv[i] = off[i] == SIZE_MAX ? NULL : scratch + off[i];
                char name[32];
                snprintf(name, sizeof name, "p%d_%u", t, (unsigned)(o->stmt));
                PGresult *r = PQexecPrepared(c, name, (int)o->nval, pv, NULL, NULL, 0);
                int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
                PQclear(r);
                if (!ok) {
                    snprintf(err, errn, "postgres %s: %s", name, PQerrorMessage(c));
                    goto out;
                }
            }
        }
        if (any && ++in_txn == MAT_BATCH) {
            if (exec(c, "COMMIT", err, errn))
                goto out;
            in_txn = 0;
        }
    }
    if (in_txn && exec(c, "COMMIT", err, errn))
        goto out;
    *secs = (double)(bench_now_ns() - t0) / 1e9;
    *cpu = cpu_now() - c0 + proc_cpu(backend) - b0;
    ret = digest(c, digest_out, rows, err, errn);
out:
    free(scratch);
    PQfinish(c);
    free_sql(&q, progs);
    return ret;
}
