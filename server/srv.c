/* The server's skeleton: listening sockets, worker threads with one
 * event_base each, the mailbox that other threads use to reach a worker,
 * the log's commit notification fanned out to the workers, and the
 * graceful stop.
 *
 * Every worker has its own listening socket on the same address
 * (SO_REUSEPORT): the kernel spreads connections over them, and no lock is
 * shared on the accept path.  Because SO_REUSEPORT would also let a second
 * evlogd silently share our port, a probe socket without it is bound first:
 * if anyone listens there already, we fail instead of splitting traffic.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/srv_int.h"

int64_t evl__srv_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void evl_srv_config_init(evl_srv_config *c) {
    memset(c, 0, sizeof *c);
    c->listen = "127.0.0.1:7070";
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = cpus < 1 ? 1 : cpus > 16 ? 16 : (unsigned)cpus;
    c->pool_threads = 16;
    c->max_body = 16u << 20;
    c->max_headers = 32u << 10;
    c->max_uri = 8u << 10;
    c->max_connections = 4096;
    c->header_timeout_ms = 10000;
    c->idle_timeout_ms = 60000;
    c->max_page = 10000;
    c->sse_buffer = 1u << 20;
    c->sse_heartbeat_ms = 15000;
    c->sse_retry_ms = 3000;
    c->sse_stall_ms = 60000;
    c->query_timeout_ms = 5000;
    c->query_max_timeout_ms = 60000;
    c->asof_cache_entries = 4;
    c->asof_cache_bytes = (size_t)1 << 30;
}

void evl__srv_say(evl_srv *srv, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (srv->cfg.report) srv->cfg.report(srv->cfg.report_arg, line);
}

/* ------------------------------------------------------------ mailbox */

void evl__srv_mail(srv_worker *w, srv_msg *m) {
    m->next = NULL;
    pthread_mutex_lock(&w->mail_mu);
    if (w->mail_tail) w->mail_tail->next = m;
    else w->mail_head = m;
    w->mail_tail = m;
    pthread_mutex_unlock(&w->mail_mu);
    event_active(w->mail_ev, EV_READ, 0); /* merges with a pending activation */
}

static void mail_cb(evutil_socket_t fd, short what, void *arg) {
    srv_worker *w = arg;
    pthread_mutex_lock(&w->mail_mu);
    srv_msg *m = w->mail_head;
    w->mail_head = w->mail_tail = NULL;
    pthread_mutex_unlock(&w->mail_mu);
    while (m) {
        srv_msg *next = m->next;
        m->run(w, m);
        m = next;
    }
}

/* Runs on the log's writer thread, after each commit that moved the head. */
static void on_commit(void *arg, uint64_t head) {
    evl_srv *srv = arg;
    uint64_t prev = atomic_exchange_explicit(&srv->last_head, head, memory_order_relaxed);
    if (head > prev)
        evl__srv_hist_add(&srv->group_events, evl__srv_size_bounds, SRV_SIZE_BUCKETS, head - prev);
    for (unsigned i = 0; i < srv->n_workers; i++)
        event_active(srv->workers[i]->commit_ev, EV_READ, 0);
}

/* --------------------------------------------------------------- stop */

static int drained(srv_worker *w) {
    if (w->inflight) return 0;
    for (srv_conn *c = w->conns; c; c = c->next)
        if (c->state == CONN_HANDLING) return 0;
    return 1;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg) {
    srv_worker *w = arg;
    if (!drained(w) && evl__srv_mono_ns() < w->drain_deadline) return;
    event_del(w->drain_ev);
    evl__srv_conn_free_all(w); /* what is left: idle keep-alive connections */
    event_base_loopexit(w->base, NULL);
}

static void stop_run(srv_worker *w, srv_msg *m) {
    evl_free(m);
    w->stopping = 1;
    evl__srv_unlisten(w);
    evl__srv_sse_end_all(w, "server shutting down");
    /* Long enough for in-flight appends (one group commit) and replies to
     * flush; a client that does not read its answer does not hold us up. */
    w->drain_deadline = evl__srv_mono_ns() + 5000000000LL;
    struct timeval tv = {0, 10000};
    event_add(w->drain_ev, &tv);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
    int64_t now = evl__srv_mono_ns();
    evl__srv_conn_sweep(arg, now);
    evl__srv_sse_tick(arg, now);
}

/* ----------------------------------------------------------- sockets */

static int split_addr(const char *s, char *host, size_t hl, char *port, size_t pl) {
    const char *colon = strrchr(s, ':');
    if (!colon || !colon[1]) return -1;
    size_t n = (size_t)(colon - s);
    if (n && s[0] == '[') { /* [v6]:port */
        if (s[n - 1] != ']') return -1;
        s++;
        n -= 2;
    }
    if (n >= hl || strlen(colon + 1) >= pl) return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        if (IN6_IS_ADDR_V4MAPPED(a)) return a->s6_addr[12] == 127;
    }
    return 0;
}

static int bind_one(const struct sockaddr *sa, socklen_t len, int reuseport, int *fd_out) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return EVL_ESYS(errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) goto fail;
    if (bind(fd, sa, len) != 0) goto fail;
    if (reuseport && listen(fd, 1024) != 0) goto fail;
    *fd_out = fd;
    return EVL_OK;
fail:;
    int e = errno;
    close(fd);
    return EVL_ESYS(e);
}

/* Bind one listening socket per worker on cfg->listen. */
static int bind_all(evl_srv *srv, int *fds, int *loopback, char *err, size_t errlen) {
    char host[256], port[32];
    if (split_addr(srv->cfg.listen, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "--listen wants HOST:PORT, not '%s'", srv->cfg.listen);
        return EVL_EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (g != 0) {
        snprintf(err, errlen, "--listen %s: %s", srv->cfg.listen, gai_strerror(g));
        return EVL_EINVAL;
    }
    /* "localhost" and "" resolve to both families: take IPv4 when offered,
     * so that 127.0.0.1 clients reach it whatever order gai.conf gives. */
    const struct addrinfo *pick = ai;
    for (const struct addrinfo *a = ai; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    struct sockaddr_storage ss;
    socklen_t len = (socklen_t)pick->ai_addrlen;
    memcpy(&ss, pick->ai_addr, pick->ai_addrlen);
    freeaddrinfo(ai);
    struct sockaddr *sa = (struct sockaddr *)&ss;
    int probe = -1, rc = bind_one(sa, len, 0, &probe);
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s: %s", srv->cfg.listen, evl_strerror(rc));
        return rc;
    }
    socklen_t l2 = len; /* port 0: every worker takes the port the probe got */
    getsockname(probe, sa, &l2);
    close(probe);
    for (unsigned i = 0; i < srv->n_workers; i++) {
        if ((rc = bind_one(sa, len, 1, &fds[i]))) {
            snprintf(err, errlen, "cannot listen on %s: %s", srv->cfg.listen, evl_strerror(rc));
            while (i--) close(fds[i]);
            return rc;
        }
    }
    char a[INET6_ADDRSTRLEN] = "?";
    unsigned p = 0;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, a, sizeof a);
        p = ntohs(((struct sockaddr_in *)sa)->sin_port);
        snprintf(srv->address, sizeof srv->address, "%s:%u", a, p);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, a, sizeof a);
        p = ntohs(((struct sockaddr_in6 *)sa)->sin6_port);
        snprintf(srv->address, sizeof srv->address, "[%s]:%u", a, p);
    }
    *loopback = is_loopback(sa);
    return EVL_OK;
}

/* ------------------------------------------------------------ workers */

static void *worker_main(void *arg) {
    srv_worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static void worker_free(srv_worker *w) {
    if (!w) return;
    evl__srv_conn_free_all(w);
    evl__srv_unlisten(w);
    evl__srv_ring_free(&w->ring);
    struct event *evs[] = {w->mail_ev, w->commit_ev, w->pump_ev, w->tick_ev, w->drain_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i]) event_free(evs[i]);
    if (w->base) event_base_free(w->base);
    for (srv_msg *m = w->mail_head, *n; m; m = n) { /* only stop messages can be left */
        n = m->next;
        evl_free(m);
    }
    pthread_mutex_destroy(&w->mail_mu);
    evl_free(w);
}

/* Takes @p fd: on failure it is closed, on success the worker owns it. */
static int worker_new(evl_srv *srv, unsigned id, int fd, srv_worker **out) {
    srv_worker *w = evl_calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        return EVL_ENOMEM;
    }
    w->srv = srv;
    w->id = id;
    pthread_mutex_init(&w->mail_mu, NULL);
    w->lfd = -1;
    *out = w;
    if (!(w->base = event_base_new())) goto fail;
    w->mail_ev = event_new(w->base, -1, 0, mail_cb, w);
    w->commit_ev = event_new(w->base, -1, 0, evl__srv_sse_commit, w);
    w->pump_ev = event_new(w->base, -1, 0, evl__srv_sse_pump, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    w->drain_ev = event_new(w->base, -1, EV_PERSIST, drain_cb, w);
    if (!w->mail_ev || !w->commit_ev || !w->pump_ev || !w->tick_ev || !w->drain_ev) goto fail;
    struct timeval second = {1, 0};
    event_add(w->tick_ev, &second);
    int rc = evl__srv_listen(w, fd); /* limits and timeouts: conn.c, from srv->cfg */
    if (rc) return rc; /* worker_free() closes fd */
    return EVL_OK;
fail:
    close(fd);
    return EVL_ENOMEM;
}

int evl_srv_open(evl_log *log, evl_proj_engine *eng, const evl_srv_config *cfg, evl_srv **out,
                 char *err, size_t errlen) {
    int rc, loopback = 1;
    int fds[64];
    *out = NULL;
    evthread_use_pthreads(); /* before any event_base: cross-thread event_active */
    evl_srv *srv = evl_calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return EVL_ENOMEM;
    }
    srv->cfg = *cfg;
    srv->log = log;
    srv->eng = eng;
    srv->started_ns = evl__srv_mono_ns();
    pthread_mutex_init(&srv->status_mu, NULL);
    srv->n_workers = cfg->threads < 1 ? 1 : cfg->threads > 64 ? 64 : cfg->threads;
    if (cfg->token_file && (rc = evl__srv_auth_load(cfg->token_file, &srv->auth, err, errlen)))
        goto fail;
    if (eng && (rc = evl_proj_asof_open(eng, cfg->asof_cache_entries, cfg->asof_cache_bytes, &srv->asof))) {
        snprintf(err, errlen, "cannot prepare the as_of cache: %s", evl_strerror(rc));
        goto fail;
    }
    if ((rc = bind_all(srv, fds, &loopback, err, errlen))) goto fail;
    srv->workers = evl_calloc(srv->n_workers, sizeof *srv->workers);
    rc = srv->workers ? evl__srv_pool_new(cfg->pool_threads ? cfg->pool_threads : 1, &srv->pool)
                      : EVL_ENOMEM;
    for (unsigned i = 0; i < srv->n_workers; i++) {
        if (rc == EVL_OK) rc = worker_new(srv, i, fds[i], &srv->workers[i]);
        else close(fds[i]); /* worker_new takes its fd even when it fails */
    }
    if (rc) {
        snprintf(err, errlen, "cannot start the workers: %s", evl_strerror(rc));
        goto fail;
    }
    atomic_store(&srv->last_head, evl_log_head(log));
    if ((rc = evl_log_watch(log, on_commit, srv))) {
        snprintf(err, errlen, "%s", evl_strerror(rc));
        goto fail;
    }
    for (unsigned i = 0; i < srv->n_workers; i++) {
        srv_worker *w = srv->workers[i];
        if ((rc = pthread_create(&w->thread, NULL, worker_main, w))) {
            rc = EVL_ESYS(rc);
            snprintf(err, errlen, "cannot start a thread: %s", evl_strerror(rc));
            evl_srv_stop(srv);
            goto fail;
        }
        w->started = 1;
    }
    if (!loopback && !srv->auth)
        evl__srv_say(srv, "warning: listening on %s beyond loopback without --token-file: "
                          "anyone who can reach it can read and append", srv->address);
    *out = srv;
    return EVL_OK;
fail:
    evl_srv_close(srv);
    return rc;
}

const char *evl_srv_address(const evl_srv *srv) { return srv->address; }

void evl_srv_stop(evl_srv *srv) {
    if (!srv || atomic_exchange(&srv->stopping, 1)) return;
    for (unsigned i = 0; i < srv->n_workers; i++) {
        srv_worker *w = srv->workers[i];
        srv_msg *m = w && w->started ? evl_calloc(1, sizeof *m) : NULL;
        if (!m) continue;
        m->run = stop_run;
        evl__srv_mail(w, m);
    }
    for (unsigned i = 0; i < srv->n_workers; i++)
        if (srv->workers[i] && srv->workers[i]->started) {
            pthread_join(srv->workers[i]->thread, NULL);
            srv->workers[i]->started = 0;
        }
    evl_log_unwatch(srv->log, on_commit, srv);
}

void evl_srv_close(evl_srv *srv) {
    if (!srv) return;
    evl_log_unwatch(srv->log, on_commit, srv);
    evl__srv_pool_free(srv->pool); /* no job is left: every worker waited for its own */
    for (unsigned i = 0; srv->workers && i < srv->n_workers; i++) worker_free(srv->workers[i]);
    evl_free(srv->workers);
    evl__srv_auth_free(srv->auth);
    evl_proj_asof_close(srv->asof); /* after the pool: no query reads a build any more */
    evl_proj_status_free(srv->status, srv->n_status);
    pthread_mutex_destroy(&srv->status_mu);
    evl_free(srv);
}
