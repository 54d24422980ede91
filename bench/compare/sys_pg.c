/* The PostgreSQL baseline: the same events table over the wire (libpq), one
 * connection per client, autocommit single statements (one round trip and
 * one commit per append), fsync=on and synchronous_commit=on: an INSERT
 * answers after its WAL record is flushed, and PostgreSQL's own group commit
 * shares one flush between concurrent commits. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#include "cmp.h"

#define MAX_BATCH 128
#define DDL                                                                                       \
    "DROP TABLE IF EXISTS events; "                                                              \
    "CREATE TABLE events (id BIGSERIAL PRIMARY KEY, stream TEXT NOT NULL, revision BIGINT NOT NULL," \
    " event_id UUID NOT NULL UNIQUE, type TEXT NOT NULL, time TIMESTAMPTZ NOT NULL DEFAULT now()," \
    " data BYTEA NOT NULL, UNIQUE (stream, revision)); CHECKPOINT;"

static const char *durability(const cmp_env *env)
{
    (void)env;
    return "fsync=on, synchronous_commit=on (WAL flush per commit)";
}

PGconn *cmp_pg_connect(const cmp_env *env, char *err)
{
    PGconn *c = PQconnectdb(env->pg);
    if (PQstatus(c) != CONNECTION_OK) {
        cmp_err(err, "postgres: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

int cmp_pg_exec(PGconn *c, const char *sql, char *err)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        cmp_err(err, "postgres: %s", PQerrorMessage(c));
    PQclear(r);
    return rc;
}

static int start(cmp_run *r)
{
    PGconn *c = cmp_pg_connect(r->env, r->err);
    int rc = c ? cmp_pg_exec(c, DDL, r->err) : -1;
    PQfinish(c);
    return rc;
}

typedef struct client {
    PGconn *c;
    int prepared[MAX_BATCH + 1];
    const char *val[1 + 3 * MAX_BATCH];
    int len[1 + 3 * MAX_BATCH], fmt[1 + 3 * MAX_BATCH];
    char ids[MAX_BATCH][37];
    char sql[MAX_BATCH * 64 + 512];
} client;

static void *connect_(cmp_run *r, int idx, char *err)
{
    (void)idx;
    client *c = calloc(1, sizeof *c);
    if (c && !(c->c = cmp_pg_connect(r->env, err))) {
        free(c);
        c = NULL;
    }
    return c;
}

static void disconnect(void *cl)
{
    client *c = cl;
    if (c) {
        PQfinish(c->c);
        free(c);
    }
}

/* One statement for n events to one stream: the stream's last revision is
 * read in the same statement, so no transaction spans two round trips. */
static int prepare_n(client *c, size_t n, char *err)
{
    if (c->prepared[n])
        return 0;
    int k = snprintf(c->sql, sizeof c->sql,
                     "INSERT INTO events (stream, revision, event_id, type, data) "
                     "SELECT $1, h.r + v.n, v.id, v.t, v.d FROM (SELECT COALESCE(MAX(revision), -1) "
                     "AS r FROM events WHERE stream = $1) h, (VALUES ");
    for (size_t i = 0; i < n; i++)
        k += snprintf(c->sql + k, sizeof c->sql - (size_t)k, "%s(%zu, $%zu::uuid, $%zu::text, $%zu::bytea)",
                      i ? ", " : "", i + 1, 2 + 3 * i, 3 + 3 * i, 4 + 3 * i);
    snprintf(c->sql + k, sizeof c->sql - (size_t)k, ") v(n, id, t, d) RETURNING revision");
    char name[16];
    snprintf(name, sizeof name, "ins%zu", n);
    PGresult *r = PQprepare(c->c, name, c->sql, 0, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        cmp_err(err, "postgres prepare: %s", PQerrorMessage(c->c));
        return -1;
    }
    if (n == 1) {
        r = PQprepare(c->c, "occ",
                      "INSERT INTO events (stream, revision, event_id, type, data) VALUES "
                      "($1, $2, $3::uuid, $4, $5::bytea) ON CONFLICT (stream, revision) DO NOTHING",
                      0, NULL);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        PGresult *r2 = PQprepare(c->c, "last", "SELECT MAX(revision) FROM events WHERE stream = $1",
                                 0, NULL);
        ok = ok && PQresultStatus(r2) == PGRES_COMMAND_OK;
        PQclear(r2);
        if (!ok) {
            cmp_err(err, "postgres prepare: %s", PQerrorMessage(c->c));
            return -1;
        }
    }
    c->prepared[n] = 1;
    return 0;
}

static int occ(client *c, const char *stream, const cmp_ev *e, uint64_t expected, uint64_t *rev,
               char *err)
{
    char rv[24];
    snprintf(rv, sizeof rv, "%" PRIu64, expected + 1);
    cmp_uuid(c->ids[0]);
    const char *val[5] = {stream, rv, c->ids[0], e->type, (const char *)e->data};
    int len[5] = {0, 0, 0, 0, (int)e->len}, fmt[5] = {0, 0, 0, 0, 1};
    PGresult *r = PQexecPrepared(c->c, "occ", 5, val, len, fmt, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        cmp_err(err, "postgres: %s", PQerrorMessage(c->c));
        PQclear(r);
        return CMP_FAIL;
    }
    int inserted = atoi(PQcmdTuples(r));
    PQclear(r);
    if (inserted) {
        *rev = expected + 1;
        return CMP_OK;
    }
    /* the client learns the current revision with a second round trip */
    r = PQexecPrepared(c->c, "last", 1, val, NULL, NULL, 0);
    *rev = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)
               ? strtoull(PQgetvalue(r, 0, 0), NULL, 10)
               : CMP_ANY;
    PQclear(r);
    return CMP_CONFLICT;
}

static int append(void *cl, const char *stream, const cmp_ev *evs, size_t n, uint64_t expected,
                  uint64_t *rev, char *err)
{
    client *c = cl;
    if (n < 1 || n > MAX_BATCH || (expected != CMP_ANY && n != 1)) {
        cmp_err(err, "postgres client: unsupported batch");
        return CMP_FAIL;
    }
    if (prepare_n(c, n, err) != 0 || (n > 1 && prepare_n(c, 1, err) != 0))
        return CMP_FAIL;
    if (expected != CMP_ANY)
        return occ(c, stream, evs, expected, rev, err);
    c->val[0] = stream;
    c->len[0] = c->fmt[0] = 0;
    for (size_t i = 0; i < n; i++) {
        cmp_uuid(c->ids[i]);
        c->val[1 + 3 * i] = c->ids[i];
        c->val[2 + 3 * i] = evs[i].type;
        c->val[3 + 3 * i] = (const char *)evs[i].data;
        c->len[3 + 3 * i] = (int)evs[i].len;
        c->fmt[1 + 3 * i] = c->fmt[2 + 3 * i] = 0;
        c->fmt[3 + 3 * i] = 1; /* bytea in binary: no hex round trip */
    }
    char name[16];
    snprintf(name, sizeof name, "ins%zu", n);
    PGresult *r = PQexecPrepared(c->c, name, (int)(1 + 3 * n), c->val, c->len, c->fmt, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == (int)n;
    if (ok) {
        uint64_t top = 0;
        for (int i = 0; i < PQntuples(r); i++) {
            uint64_t v = strtoull(PQgetvalue(r, i, 0), NULL, 10);
            top = v > top ? v : top;
        }
        *rev = top;
    } else {
        cmp_err(err, "postgres: %s", PQerrorMessage(c->c));
    }
    PQclear(r);
    return ok ? CMP_OK : CMP_FAIL;
}

static int count(cmp_run *r, uint64_t *n)
{
    PGconn *c = cmp_pg_connect(r->env, r->err);
    if (!c)
        return -1;
    PGresult *q = PQexec(c, "SELECT count(*) FROM events");
    int rc = PQresultStatus(q) == PGRES_TUPLES_OK ? 0 : -1;
    if (!rc)
        *n = strtoull(PQgetvalue(q, 0, 0), NULL, 10);
    else
        cmp_err(r->err, "postgres: %s", PQerrorMessage(c));
    PQclear(q);
    PQfinish(c);
    return rc;
}

static void stop(cmp_run *r)
{
    PGconn *c = cmp_pg_connect(r->env, r->err);
    if (c)
        cmp_pg_exec(c, "DROP TABLE IF EXISTS events", r->err);
    PQfinish(c);
}

/* COPY in text form: the fastest way in; loading is not what is measured. */
static int load(cmp_run *r, uint64_t n, uint64_t seed)
{
    PGconn *c = cmp_pg_connect(r->env, r->err);
    cmp_gen *g = NULL;
    cmp_revmap m = {0};
    char *buf = malloc(1 << 21);
    size_t used = 0;
    int rc = -1;
    if (!c || !buf || cmp_gen_open(seed, &g) != 0)
        goto out;
    PGresult *cr = PQexec(c, "COPY events (stream, revision, event_id, type, data) FROM STDIN");
    ExecStatusType cst = PQresultStatus(cr);
    PQclear(cr);
    if (cst != PGRES_COPY_IN)
        goto out;
    static const char hx[] = "0123456789abcdef";
    for (uint64_t done = 0; done < n;) {
        cmp_gen_ev ge[64];
        size_t k = cmp_gen_next(g, ge, n - done < 64 ? (size_t)(n - done) : 64);
        if (!k)
            goto out;
        for (size_t i = 0; i < k; i++) {
            if (used + 2 * ge[i].ev->len + 1024 > (1u << 21)) {
                if (PQputCopyData(c, buf, (int)used) != 1)
                    goto out;
                used = 0;
            }
            char id[37];
            cmp_uuid(id);
            used += (size_t)snprintf(buf + used, 1024, "%s\t%" PRIu64 "\t%s\t%s\t\\\\x", ge[i].stream,
                                     cmp_revmap_take(&m, ge[i].stream), id, ge[i].ev->type);
            for (size_t j = 0; j < ge[i].ev->len; j++) {
                buf[used++] = hx[ge[i].ev->data[j] >> 4];
                buf[used++] = hx[ge[i].ev->data[j] & 15];
            }
            buf[used++] = '\n';
        }
        done += k;
    }
    if ((used && PQputCopyData(c, buf, (int)used) != 1) || PQputCopyEnd(c, NULL) != 1)
        goto out;
    PGresult *res = PQgetResult(c);
    rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(res);
    while ((res = PQgetResult(c)))
        PQclear(res);
    if (rc == 0)
        rc = cmp_pg_exec(c, "VACUUM ANALYZE events", r->err) || cmp_pg_exec(c, "CHECKPOINT", r->err);
out:
    if (rc)
        cmp_err(r->err, "postgres load: %s", c ? PQerrorMessage(c) : "no connection");
    free(buf);
    cmp_revmap_free(&m);
    cmp_gen_close(g);
    PQfinish(c);
    return rc;
}

/* SELECT ... ORDER BY id through a cursor, 10000 rows a fetch, binary
 * results: how a client streams a table larger than its memory. */
static int scan(cmp_run *r, uint64_t *n, uint64_t *bytes)
{
    PGconn *c = cmp_pg_connect(r->env, r->err);
    if (!c || cmp_pg_exec(c,
                          "BEGIN; DECLARE c NO SCROLL CURSOR FOR SELECT id, stream, revision, "
                          "event_id, type, time, data FROM events ORDER BY id",
                          r->err) != 0) {
        PQfinish(c);
        return -1;
    }
    uint64_t k = 0, b = 0;
    int rc = -1;
    for (;;) {
        PGresult *q = PQexecParams(c, "FETCH 10000 FROM c", 0, NULL, NULL, NULL, NULL, 1);
        if (PQresultStatus(q) != PGRES_TUPLES_OK) {
            cmp_err(r->err, "postgres fetch: %s", PQerrorMessage(c));
            PQclear(q);
            break;
        }
        int rows = PQntuples(q);
        for (int i = 0; i < rows; i++)
            b += (uint64_t)PQgetlength(q, i, 6) + (uint64_t)PQgetlength(q, i, 1) +
                 (uint64_t)PQgetlength(q, i, 4);
        k += (uint64_t)rows;
        PQclear(q);
        if (rows == 0) {
            rc = 0;
            break;
        }
    }
    cmp_pg_exec(c, "COMMIT", r->err);
    PQfinish(c);
    *n = k;
    *bytes = b;
    return rc;
}

int cmp_pg_feed(const cmp_env *env, cmp_feed *f);

const cmp_sys cmp_pg = {
    .name = "postgres",
    .network = 1,
    .durability = durability,
    .start = start,
    .connect = connect_,
    .append = append,
    .disconnect = disconnect,
    .count = count,
    .stop = stop,
    .load = load,
    .scan = scan,
    .feed = cmp_pg_feed,
};
