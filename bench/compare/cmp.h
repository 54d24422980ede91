/** @file cmp.h
 * @brief evlog-compare: evlog side by side with the stores a user would pick
 * instead (an events table in SQLite or PostgreSQL, NATS JetStream).
 *
 * Every system is a #cmp_sys: a table of functions the workloads call, so a
 * workload is written once and each system only says how it appends, loads,
 * scans and feeds.  The servers (PostgreSQL, nats-server) are started by
 * bench/compare.sh and reached through the addresses in #cmp_env; evlogd is
 * spawned here, one fresh process per run, like an embedded store gets a
 * fresh directory.
 */
#ifndef EVLOG_BENCH_CMP_H
#define EVLOG_BENCH_CMP_H

#include <stddef.h>
#include <stdint.h>

#include "bench.h"

#define CMP_ANY UINT64_MAX   /* expected revision: no check */
#define CMP_MAX_ROUNDS 16
#define CMP_MAX_SYS 6
#define CMP_ERR_LEN 200

/** What the whole run was given: where the servers are, how long to run. */
typedef struct cmp_env {
    const char *tmp;       /* base of the runs' temporary directories */
    const char *evlogd;    /* the evlogd binary */
    const char *pg;        /* libpq connection string, or NULL: no PostgreSQL */
    const char *nats;      /* nats URL (a server that acks before any fsync), or NULL */
    const char *nats_durable; /* nats URL of a server that syncs every message, or NULL */
    int nats_durable_how;  /* how it syncs: CMP_NATS_SYNC_INTERVAL or CMP_NATS_SYNC_ATTR */
    double seconds;        /* one timed run */
    int rounds;
    int quick;
} cmp_env;

/* sync_interval: always (nats-server 2.10+) fsyncs after each message's
 * write; 2.9 has no such key, so its store directory gets ext4's
 * synchronous-updates attribute (chattr +S, inherited by the files made in
 * it) and each message's write returns only once it is on disk. */
enum { CMP_NATS_SYNC_INTERVAL = 1, CMP_NATS_SYNC_ATTR = 2 };

/** One event as every system receives it: a generated type and msgpack map. */
typedef struct cmp_ev {
    const char *type;
    const uint8_t *data;
    size_t len;
} cmp_ev;

/** A pool of generated events (bench/workloads/gen.h) that clients cycle over. */
typedef struct cmp_pool {
    cmp_ev *ev;
    size_t n;
    uint8_t *bytes;        /* every type and data, back to back */
} cmp_pool;

int cmp_pool_make(cmp_pool *p, size_t n, uint64_t seed);
void cmp_pool_free(cmp_pool *p);

/** A stream of generated events for loading a store: the generator's own
 * streams and order (so a store holds what a real service would write). */
typedef struct cmp_gen cmp_gen;
typedef struct cmp_gen_ev {
    const char *stream;
    const cmp_ev *ev;
} cmp_gen_ev;
int cmp_gen_open(uint64_t seed, cmp_gen **out);
/** Up to @p max events into @p out (borrowed until the next call). @return count, 0 on error. */
size_t cmp_gen_next(cmp_gen *g, cmp_gen_ev *out, size_t max);
void cmp_gen_close(cmp_gen *g);

/** Next revision per stream while loading a store (the baselines' tables
 * need it; evlog assigns its own).  Open addressing, keys copied. */
typedef struct cmp_revmap {
    char **key;
    uint64_t *next;
    size_t n, cap;
} cmp_revmap;
/** @return the revision for the next event of @p stream (0 for a new one), or UINT64_MAX without memory. */
uint64_t cmp_revmap_take(cmp_revmap *m, const char *stream);
void cmp_revmap_free(cmp_revmap *m);

/** Outcome of an append. */
enum { CMP_OK = 0, CMP_CONFLICT = 1, CMP_FAIL = -1 };

/** One run's shared state: the system's store, opened fresh by start(). */
typedef struct cmp_run {
    const cmp_env *env;
    char dir[4096];        /* the run's temp dir ("" if the system has none) */
    void *st;              /* the system's state */
    char err[CMP_ERR_LEN];
} cmp_run;

/** A feed-latency measurement (workload 6): @p events appended one at a
 * time at @p rate per second, each delivered to every subscriber.  Event k
 * (from 1) is the k-th in the fresh store, so its position / id / stream
 * sequence names it on every system. */
typedef struct cmp_feed {
    int subscribers, events, rate;
    const cmp_ev *evs;      /* the events' payloads (events of them) */
    /* filled by the measurement: */
    bench_lat lat;          /* append call start to delivery, every (event, subscriber) */
    uint64_t expected, received;
    char err[CMP_ERR_LEN];
    /* internal (feed.c) */
    int64_t *sent;          /* per event: monotonic ns its append call began */
    void *mu;
} cmp_feed;

/** Make the bookkeeping (sent times, the lock). @return 0 or -1. */
int cmp_feed_begin(cmp_feed *f);
/** A subscriber received event @p k (1-based): record its latency. Thread-safe. */
void cmp_feed_got(cmp_feed *f, uint64_t k);
/** Append the events at the rate, one at a time: @p pub appends event k and
 * returns 0 when the system acknowledged it. @return 0 or -1 (f->err). */
int cmp_feed_publish(cmp_feed *f, int (*pub)(void *arg, int k, char *err), void *arg);
/** Wait until every delivery arrived or @p ms passed since the last publish. */
void cmp_feed_wait(cmp_feed *f, int ms);
void cmp_feed_end(cmp_feed *f);

typedef struct cmp_sys {
    const char *name;       /* short, for the table and JSON */
    int evlog;              /* 1: one of evlog's interfaces */
    int network;            /* 1: through a socket */
    /* the durability setting in force, in words */
    const char *(*durability)(const cmp_env *env);
    /* appends (workloads 1-3) */
    int (*start)(cmp_run *r);
    void *(*connect)(cmp_run *r, int idx, char *err);
    /* @p n events of @p evs to @p stream.  expected: CMP_ANY or the last
     * revision the client knows (the system's own numbering); *rev: on OK the
     * new last revision, on CMP_CONFLICT the current one (CMP_ANY: unknown). */
    int (*append)(void *cl, const char *stream, const cmp_ev *evs, size_t n, uint64_t expected,
                  uint64_t *rev, char *err);
    void (*disconnect)(void *cl);
    int (*count)(cmp_run *r, uint64_t *n);
    void (*stop)(cmp_run *r);
    /* replay (workload 4): load once after start(), then scan each round */
    int (*load)(cmp_run *r, uint64_t n, uint64_t seed);
    int (*scan)(cmp_run *r, uint64_t *n, uint64_t *bytes);
    /* feed latency (workload 6): a whole measurement, servers included */
    int (*feed)(const cmp_env *env, cmp_feed *f);
} cmp_sys;

extern const cmp_sys cmp_evlog, cmp_sqlite, cmp_evlog_http, cmp_evlog_http_nosync;
#ifdef CMP_HAVE_PG
extern const cmp_sys cmp_pg;
#endif
#ifdef CMP_HAVE_NATS
extern const cmp_sys cmp_nats, cmp_nats_durable;
#endif

/* ------------------------------------------------------------- helpers */

void cmp_err(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** A random version-4 UUID, 36 chars + NUL (thread-local generator). */
void cmp_uuid(char out[37]);
/** A temp dir under env->tmp into r->dir. @return 0 or -1 (r->err). */
int cmp_mkdir(cmp_run *r);
void cmp_sleep_ms(int ms);

/** Fill evlog data dir @p dir with @p n generated events (sync none). */
int cmp_evlog_load(const char *dir, uint64_t n, uint64_t seed, char *err);

/* evlogd, spawned per run (sys_http.c) */
typedef struct cmp_evlogd {
    int pid;
    int port;
} cmp_evlogd;
int cmp_evlogd_start(const cmp_env *env, const char *data, const char *sync, cmp_evlogd *d,
                     char *err);
void cmp_evlogd_stop(cmp_evlogd *d);

/* A blocking HTTP/1.1 keep-alive connection to 127.0.0.1:port (http.c). */
typedef struct cmp_http {
    int fd;
    int port;
    char *buf;              /* the last answer's body, NUL-terminated */
    size_t len, cap;
    size_t have, used;      /* bytes read ahead in rbuf */
    char rbuf[65536];
} cmp_http;
int cmp_http_open(cmp_http *h, int port, char *err);
/** Send a request and read the answer. @return the status, or -1 (err). */
int cmp_http_do(cmp_http *h, const char *method, const char *path, const char *headers,
                const void *body, size_t body_len, char *err);
void cmp_http_close(cmp_http *h);

#endif
