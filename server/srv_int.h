/* Internals of the HTTP server, shared by the files of server/.
 *
 * Names: evl_srv_* is what evlogd calls (srv.h); evl__srv_* crosses files of
 * this module only; static helpers have no prefix.  Types shared between the
 * files are srv_*.
 *
 * Threads and ownership:
 * - Each worker owns its event_base, its listening socket, its connections, its
 *   subscribers and its ring of recent feed frames.  Only the worker's thread
 *   touches them.  Other threads reach a worker in exactly two ways: its
 *   mailbox (evl__srv_mail: a queue plus event_active) and its commit event
 *   (activated by the log's commit notification).  Wakeups merge.
 * - The pool's threads run blocking work (projection queries, waits, status)
 *   and post the job back to its worker's mailbox; the worker answers.
 * - Counters read by /metrics are relaxed atomics, written by one thread each
 *   (per worker) or by the writer thread (commit sizes).
 */
#ifndef EVLOG_SERVER_SRV_INT_H
#define EVLOG_SERVER_SRV_INT_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h> /* the EVHTTP_REQ_* method values and libevent's URI parser */
#include <jansson.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "evlog/json.h"
#include "evlog/log.h"
#include "evlog/mp.h"
#include "evlog/proj.h"
#include "server/http1.h"
#include "server/srv.h"

#define SRV_FMT(a, b) __attribute__((format(printf, a, b)))

typedef struct srv_worker srv_worker;
typedef struct srv_conn srv_conn;
typedef struct srv_sub srv_sub;

/* ------------------------------------------------------------ metrics */

/* Histogram buckets (upper bounds): latencies in microseconds, sizes in events. */
#define SRV_LAT_BUCKETS 14
#define SRV_SIZE_BUCKETS 12
typedef struct srv_hist {
    _Atomic uint64_t bucket[16]; /* non-cumulative; the last is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum;
} srv_hist;

/* One worker's counters; summed over the workers when scraped. */
typedef struct srv_wstats {
    _Atomic uint64_t codes[600];      /* responses by status code */
    _Atomic uint64_t events_sent;     /* SSE frames delivered */
    _Atomic uint64_t catchup_reads;   /* SSE batches read from the log */
    _Atomic uint64_t sse_slow_disconnects;
    _Atomic uint64_t header_timeouts;
    _Atomic uint64_t rejected_connections;
    _Atomic uint64_t subscribers;     /* gauge */
    _Atomic uint64_t sse_queued;      /* gauge: bytes queued to subscribers */
    _Atomic uint64_t connections;     /* gauge */
    srv_hist append_us;               /* request in -> answer out */
} srv_wstats;

void evl__srv_hist_add(srv_hist *h, const uint64_t *bounds, int n, uint64_t v);
extern const uint64_t evl__srv_lat_bounds[SRV_LAT_BUCKETS];
extern const uint64_t evl__srv_size_bounds[SRV_SIZE_BUCKETS];

/* --------------------------------------------------------- the mailbox */

/* A message to a worker.  Embedded first in what is posted (append
 * completions, pool jobs); run() takes the message back on the worker. */
typedef struct srv_msg {
    struct srv_msg *next;
    void (*run)(srv_worker *w, struct srv_msg *m);
} srv_msg;

/* Post @p m to @p w from any thread; @p w owns it until run() is called. */
void evl__srv_mail(srv_worker *w, srv_msg *m);

/* ------------------------------------------------------------ the pool */

/* Blocking work: work() runs on a pool thread, then msg.run on the worker.
 * The job is owned by the pool between submit and the mailbox, then by the
 * worker's run(), which frees it. */
typedef struct srv_job {
    srv_msg msg;
    struct srv_job *next;
    srv_worker *w;
    void (*work)(struct srv_job *job);
    int waits; /* may block for a projector: queued apart, see pool.c */
} srv_job;

typedef struct srv_pool srv_pool;
/* @return EVL_OK or EVL_ENOMEM / EVL_ESYS; the caller frees with evl__srv_pool_free(). */
int evl__srv_pool_new(unsigned max_threads, srv_pool **out);
/* Queue @p job (counted in w->inflight until its run() says otherwise). */
void evl__srv_pool_submit(srv_pool *p, srv_job *job);
/* Join every thread; queued jobs are run first. */
void evl__srv_pool_free(srv_pool *p);

typedef struct srv_pool_stats {
    unsigned threads;  /* started so far */
    unsigned busy;     /* running a job */
    unsigned waits;    /* running a job that waits for a projector */
    unsigned wait_max; /* most threads such jobs may hold */
    unsigned queued;   /* jobs not started yet */
} srv_pool_stats;
void evl__srv_pool_stats(srv_pool *p, srv_pool_stats *st);

/* ----------------------------------------------------------- the server */

typedef enum srv_role { ROLE_NONE = 0, ROLE_READER = 1, ROLE_WRITER = 2, ROLE_ADMIN = 3 } srv_role;

typedef struct srv_auth srv_auth;
/* Load a token file.  @return EVL_OK or EVL_EINVAL with a sentence in err;
 * the caller frees *out with evl__srv_auth_free(). */
int evl__srv_auth_load(const char *path, srv_auth **out, char *err, size_t errlen);
void evl__srv_auth_free(srv_auth *a);
/* The role of bearer token @p tok (ROLE_NONE when unknown), in constant
 * time; *name is its name from the token file (NULL when it has none or is
 * unknown), owned by @p a. */
srv_role evl__srv_auth_role(const srv_auth *a, const char *tok, size_t len, const char **name);
/* Is @p s (@p n bytes) the name of a token in the file? */
int evl__srv_auth_is_name(const srv_auth *a, const char *s, size_t n);

struct evl_srv {
    evl_srv_config cfg;
    evl_log *log;
    evl_proj_engine *eng;
    evl_proj_asof *asof;          /* point-in-time builds for `as_of` queries (NULL without eng) */
    srv_auth *auth;               /* NULL: every request has every role */
    char address[128];
    unsigned n_workers;
    srv_worker **workers;
    srv_pool *pool;
    _Atomic int stopping;
    _Atomic uint64_t n_conns;     /* open connections, all workers */
    _Atomic uint64_t last_head;   /* the head at the last commit notification */
    _Atomic int last_fault;       /* the last append failure logged, so that a
                                     read-only log says so once, not per request */
    srv_hist group_events;        /* events per group commit */
    int64_t started_ns;
    /* projection status cache for /metrics and /readyz (taken on the pool:
     * it counts rows) */
    pthread_mutex_t status_mu;
    int64_t status_at;            /* monotonic ns; 0: none yet */
    evl_proj_status *status;
    size_t n_status;
};

void evl__srv_say(evl_srv *srv, const char *fmt, ...) SRV_FMT(2, 3);

/* ------------------------------------------------------------ a request */

/* What an answer needs; copied into asynchronous contexts. */
typedef struct srv_hreq srv_hreq;
typedef struct srv_rsp {
    srv_worker *w;
    srv_hreq *req;
    int want_mp;                 /* Accept: application/msgpack */
    int64_t t0;                  /* monotonic ns when the request arrived */
} srv_rsp;

/* One query parameter, percent-decoded ('+' is a space). */
typedef struct srv_kv {
    char *key, *val;             /* NUL-terminated, malloc'd by libevent */
} srv_kv;

#define SRV_MAX_SEGS 5
#define SRV_MAX_PARAMS 64
typedef struct srv_req {
    srv_rsp rsp;
    srv_conn *conn;
    int method;                  /* EVHTTP_REQ_* */
    const char *path;            /* raw, borrowed from the request */
    char *seg[SRV_MAX_SEGS];     /* percent-decoded path segments (owned) */
    int n_seg;
    srv_kv param[SRV_MAX_PARAMS];/* decoded query parameters, in order */
    int n_param;
    srv_role role;
    const char *token_name;      /* the bearer token's name (NULL: none), owned by srv->auth */
} srv_req;

/* --------------------------------------------------------- connections */

/* One request as its handler sees it (conn.c): it lives in its connection
 * until the answer is complete, so an asynchronous handler keeps a pointer. */
struct srv_hreq {
    srv_conn *conn;
    int method;                    /* EVHTTP_REQ_* */
    char *uri;                     /* the request target, NUL-terminated */
    struct evhttp_uri *u;          /* the target parsed (libevent's URI parser) */
    const uint8_t *body;           /* the whole body (decoded when chunked) */
    size_t body_len;
    srv_h1_head head;              /* field values NUL-terminated in place */
    struct evbuffer *ohdr;         /* "Name: value\r\n" lines a handler added */
    int close;                     /* a handler added Connection: close */
};

enum { CONN_IDLE, CONN_READING, CONN_HANDLING, CONN_STREAMING, CONN_CLOSING };

struct srv_conn {
    srv_worker *w;
    int fd;                        /* -1 once closed */
    struct event *rev, *wev, *timer;
    int state;
    int over_cap;                  /* opened above max_connections: answer 503 */
    int wev_on, rev_on;
    int in_process;                /* process() is on the stack */
    int lingering;                 /* closing after an error: read and drop until EOF */
    char *in;                      /* bytes read, not yet taken by a finished request */
    size_t in_len, in_cap;
    size_t scanned;                /* the head parser's progress */
    size_t head_len;               /* 0: the head is not whole yet */
    size_t raw;                    /* chunked: bytes after the head consumed so far */
    size_t dec;                    /* chunked: decoded body bytes so far */
    srv_h1_chunks ch;
    size_t req_end;                /* in[0, req_end) is the request being answered */
    srv_h1_field *fields;
    size_t cap_fields;
    int sent_continue;
    struct evbuffer *out;          /* bytes for the socket, written at once when it takes them */
    void (*drained)(void *arg);    /* a feed's: called when out has emptied */
    void *drained_arg;
    int chunked_out;               /* the streamed answer is chunked */
    int64_t deadline;              /* monotonic ns: a whole request by then */
    int64_t out_since;             /* monotonic ns: out non-empty without progress since */
    int64_t write_timeout_ns;
    srv_hreq req;
    srv_sub *sub;                  /* the feed this connection carries, if any */
    srv_conn *prev, *next;
};

/* Accept connections on @p fd (a listening socket the worker now owns). */
int evl__srv_listen(srv_worker *w, int fd);
void evl__srv_unlisten(srv_worker *w);
void evl__srv_conn_free_all(srv_worker *w);
/* Once a second: write timeouts. */
void evl__srv_conn_sweep(srv_worker *w, int64_t now);
/* Bytes queued on the connection's output. */
size_t evl__srv_conn_queued(srv_conn *c);

/* Request fields and answers (conn.c). */
const char *evl__srv_hdr(const srv_hreq *r, const char *name);
void evl__srv_add_header(srv_hreq *r, const char *name, const char *value);
/* The whole answer: status, the headers added, Content-Length, @p body
 * (may be NULL; emptied).  The request is done after it. */
void evl__srv_send(srv_hreq *r, int code, struct evbuffer *body);
/* A streamed answer: the head, then chunks, then the end.  @p drained (may
 * be NULL) is called once the chunk and everything before it are written. */
void evl__srv_stream_start(srv_hreq *r, int code);
void evl__srv_stream_chunk(srv_hreq *r, struct evbuffer *buf, void (*drained)(void *arg), void *arg);
void evl__srv_stream_end(srv_hreq *r);

/* ---------------------------------------------------------------- feeds */

/* Recent events, formatted once as SSE frames, shared by the live
 * subscribers of one worker. */
typedef struct srv_frame {
    uint64_t pos;
    char *type, *stream;           /* NUL-terminated */
    size_t stream_cat;             /* length of the stream's category */
    /* meta.actor and meta.correlation_id when they are strings, else NULL
     * (not NUL-terminated: a string may hold NULs) */
    const char *actor, *corr;
    uint32_t actor_len, corr_len;
    char *text;                    /* "id: ..\nevent: ..\ndata: ..\n\n" */
    size_t len;
} srv_frame;

typedef struct srv_ring {
    srv_frame *f;                  /* circular, cap entries */
    size_t cap, start, n, bytes;
    uint64_t first;                /* position of the oldest frame held */
} srv_ring;

struct srv_worker {
    evl_srv *srv;
    unsigned id;
    pthread_t thread;
    int started;
    struct event_base *base;
    int lfd;                       /* listening socket; -1 once stopped */
    struct event *accept_ev;
    struct event *mail_ev, *commit_ev, *pump_ev, *tick_ev, *drain_ev;
    pthread_mutex_t mail_mu;
    srv_msg *mail_head, *mail_tail;
    srv_conn *conns;               /* every open connection of this worker */
    char date[40];                 /* the Date header's value, for date_at */
    int64_t date_at;               /* wall clock second */
    srv_sub *subs;                 /* every feed */
    srv_sub *pump_head, *pump_tail;/* feeds to read from the log */
    int pumping;                   /* evl__srv_sse_pump() is running */
    srv_ring ring;
    unsigned inflight;             /* appends and pool jobs not answered yet */
    int stopping;
    int64_t drain_deadline;
    int64_t last_heartbeat;
    srv_wstats st;
};

/* -------------------------------------------------------------- answers */

/* Send @p body (may be NULL; emptied) with status @p code and @p ctype. */
void evl__srv_reply(const srv_rsp *r, int code, const char *ctype, struct evbuffer *body);
/* Send @p j (borrowed) as JSON, or msgpack when the client asked for it. */
void evl__srv_reply_json(const srv_rsp *r, int code, const json_t *j);
/* The same with reals printed to @p digits significant digits (0: as many as
 * it takes to read the same double back). */
void evl__srv_reply_json_digits(const srv_rsp *r, int code, const json_t *j, int digits);
/* Send an RFC 9457 problem.  @p extra (stolen, may be NULL) adds members. */
void evl__srv_problem(const srv_rsp *r, int code, const char *slug, json_t *extra,
                      const char *fmt, ...) SRV_FMT(5, 6);
/* The problem of an evl_err from a library call: status code and slug. */
int evl__srv_err_status(int err, const char **slug);
const char *evl__srv_reason(int code);
/* Count the answer in the metrics (evl__srv_reply does it). */
void evl__srv_count(srv_worker *w, int code);
/* A complete problem+json answer as raw bytes, for libevent's own error pages. */
void evl__srv_problem_raw(struct evbuffer *out, int code);

/* The request target (target.c): decoded path segments and query
 * parameters into @p q, owned by it until evl__srv_req_release().
 * @return EVL_OK, EVL_EINVAL (malformed: a NUL byte, too many parameters),
 *   EVL_ENOTFOUND (a path no route can have), EVL_ENOMEM. */
int evl__srv_split_path(srv_req *q, const char *path);
int evl__srv_split_query(srv_req *q, const char *qs);
void evl__srv_req_release(srv_req *q);

/* Query parameters. */
const char *evl__srv_param(const srv_req *q, const char *name);
/* Parse an unsigned decimal.  @return 0 ok, -1 bad. */
int evl__srv_u64(const char *s, uint64_t *v);
/* A boolean flag: present with no value, 1, true, yes. */
int evl__srv_flag(const srv_req *q, const char *name);
/* The body as one contiguous buffer (borrowed from the request). */
const uint8_t *evl__srv_body(const srv_hreq *req, size_t *len);
/* Content-Type of the request is application/msgpack. */
int evl__srv_body_is_mp(const srv_hreq *req);

/* Events out: JSON text (one compact object) or msgpack (one map). */
int evl__srv_event_json(const evl_event *ev, struct evbuffer *out);
int evl__srv_event_mp(const evl_event *ev, msgpack_packer *pk);

/* ------------------------------------------------------------- routes */

void evl__srv_handle(srv_hreq *req, srv_worker *w);

void evl__srv_append_stream(srv_req *q);
void evl__srv_append_multi(srv_req *q);
void evl__srv_read_stream(srv_req *q);
void evl__srv_read_events(srv_req *q);
void evl__srv_read_event(srv_req *q);
void evl__srv_digest(srv_req *q);
void evl__srv_subscribe(srv_req *q);
void evl__srv_proj_list(srv_req *q);
void evl__srv_proj_rebuild(srv_req *q);
void evl__srv_proj_query(srv_req *q);
void evl__srv_proj_history(srv_req *q);
void evl__srv_proj_digest(srv_req *q);
void evl__srv_healthz(srv_req *q);
void evl__srv_readyz(srv_req *q);
void evl__srv_metrics(srv_req *q);
void evl__srv_console(srv_req *q);

/* Call @p fn with the projection status, at most @p max_age_ms old (taken
 * again on the calling pool thread when older).  @p st is borrowed for the
 * call, which holds the cache's lock.  @return EVL_OK or the status error. */
int evl__srv_with_status(evl_srv *srv, int max_age_ms,
                         void (*fn)(void *arg, const evl_proj_status *st, size_t n), void *arg);

/* -------------------------------------------------------------- feeds */

void evl__srv_sse_commit(evutil_socket_t fd, short what, void *arg);
void evl__srv_sse_pump(evutil_socket_t fd, short what, void *arg);
void evl__srv_sse_tick(srv_worker *w, int64_t now);
/* The connection of a feed closed: forget the feed. */
void evl__srv_sse_closed(srv_sub *s);
/* Server stopping: end every feed with a closing comment. */
void evl__srv_sse_end_all(srv_worker *w, const char *why);
void evl__srv_ring_free(srv_ring *r);

int64_t evl__srv_mono_ns(void);

#endif
