/* Workload 6 on PostgreSQL: LISTEN/NOTIFY, the feed an events table has.
 * The publisher inserts the event and notifies in one autocommit statement
 * (a notification is delivered when its transaction commits, after the WAL
 * flush); each subscriber is a connection that LISTENs, read with epoll as
 * an event-driven service would. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "cmp.h"

PGconn *cmp_pg_connect(const cmp_env *env, char *err);
int cmp_pg_exec(PGconn *c, const char *sql, char *err);

typedef struct lctx {
    cmp_feed *f;
    PGconn **subs;
    int n, ep;
    atomic_int stop;
} lctx;

static void *listener(void *arg)
{
    lctx *x = arg;
    struct epoll_event evs[64];
    while (!atomic_load(&x->stop)) {
        int k = epoll_wait(x->ep, evs, 64, 50);
        for (int i = 0; i < k; i++) {
            PGconn *c = evs[i].data.ptr;
            if (!PQconsumeInput(c))
                continue;
            PGnotify *nf;
            while ((nf = PQnotifies(c))) {
                cmp_feed_got(x->f, strtoull(nf->extra, NULL, 10));
                PQfreemem(nf);
            }
        }
    }
    return NULL;
}

typedef struct pctx {
    PGconn *c;
    const cmp_feed *f;
} pctx;

static int pub(void *arg, int k, char *err)
{
    pctx *p = arg;
    const cmp_ev *e = &p->f->evs[k - 1];
    char rev[24], id[37];
    snprintf(rev, sizeof rev, "%d", k - 1);
    cmp_uuid(id);
    const char *val[4] = {rev, id, e->type, (const char *)e->data};
    int len[4] = {0, 0, 0, (int)e->len}, fmt[4] = {0, 0, 0, 1};
    PGresult *r = PQexecPrepared(p->c, "pub", 4, val, len, fmt, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        cmp_err(err, "postgres publish: %s", PQerrorMessage(p->c));
    PQclear(r);
    return ok ? 0 : -1;
}

int cmp_pg_feed(const cmp_env *env, cmp_feed *f)
{
    lctx x = {.f = f, .n = f->subscribers, .ep = -1};
    pctx p = {.f = f};
    pthread_t th;
    int rc = -1, started = 0;
    if (cmp_feed_begin(f) != 0 || !(x.subs = calloc((size_t)x.n, sizeof *x.subs)) ||
        (x.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        goto out;
    /* a fresh table: event k gets id k */
    if (!(p.c = cmp_pg_connect(env, f->err)) ||
        cmp_pg_exec(p.c,
                    "DROP TABLE IF EXISTS events; CREATE TABLE events (id BIGSERIAL PRIMARY KEY,"
                    " stream TEXT NOT NULL, revision BIGINT NOT NULL, event_id UUID NOT NULL UNIQUE,"
                    " type TEXT NOT NULL, time TIMESTAMPTZ NOT NULL DEFAULT now(), data BYTEA NOT NULL,"
                    " UNIQUE (stream, revision))",
                    f->err) != 0)
        goto out;
    PGresult *r = PQprepare(p.c, "pub",
                            "WITH i AS (INSERT INTO events (stream, revision, event_id, type, data) "
                            "VALUES ('feed-1', $1, $2::uuid, $3, $4::bytea) RETURNING id) "
                            "SELECT pg_notify('events', id::text) FROM i",
                            0, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        cmp_err(f->err, "postgres prepare: %s", PQerrorMessage(p.c));
        goto out;
    }
    for (int i = 0; i < x.n; i++) {
        if (!(x.subs[i] = cmp_pg_connect(env, f->err)) ||
            cmp_pg_exec(x.subs[i], "LISTEN events", f->err) != 0)
            goto out;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = x.subs[i]};
        epoll_ctl(x.ep, EPOLL_CTL_ADD, PQsocket(x.subs[i]), &ev);
    }
    if (pthread_create(&th, NULL, listener, &x) != 0)
        goto out;
    started = 1;
    if (cmp_feed_publish(f, pub, &p) != 0)
        goto out;
    cmp_feed_wait(f, 3000);
    rc = 0;
out:
    if (started) {
        atomic_store(&x.stop, 1);
        pthread_join(th, NULL);
    }
    for (int i = 0; x.subs && i < x.n; i++)
        PQfinish(x.subs[i]);
    free(x.subs);
    if (x.ep >= 0)
        close(x.ep);
    if (p.c)
        cmp_pg_exec(p.c, "DROP TABLE IF EXISTS events", f->err);
    PQfinish(p.c);
    return rc;
}
