/* GET /metrics (Prometheus text format 0.0.4), /healthz and /readyz.
 *
 * Counters are relaxed atomics kept per worker (one writer each, so no
 * cache line is fought over) and summed here; the log's own counters come
 * from evl_log_stats_get(); group-commit sizes are observed on the writer
 * thread by the commit notification (srv.c).  Projection status counts
 * rows, so it is taken on the pool and cached for a second.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "server/srv_int.h"

/* microseconds */
const uint64_t evl__srv_lat_bounds[SRV_LAT_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000};
/* events */
const uint64_t evl__srv_size_bounds[SRV_SIZE_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384};

void evl__srv_hist_add(srv_hist *h, const uint64_t *bounds, int n, uint64_t v) {
    int i = 0;
    while (i < n && v > bounds[i]) i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

int evl__srv_with_status(evl_srv *srv, int max_age_ms,
                         void (*fn)(void *arg, const evl_proj_status *st, size_t n), void *arg) {
    int rc = EVL_OK;
    pthread_mutex_lock(&srv->status_mu);
    int64_t now = evl__srv_mono_ns();
    if (!srv->status_at || now - srv->status_at > (int64_t)max_age_ms * 1000000) {
        evl_proj_status *st;
        size_t n;
        if ((rc = evl_proj_status_get(srv->eng, NULL, &st, &n)) == EVL_OK) {
            evl_proj_status_free(srv->status, srv->n_status);
            srv->status = st;
            srv->n_status = n;
            srv->status_at = now;
        }
    }
    if (rc == EVL_OK) fn(arg, srv->status, srv->n_status);
    pthread_mutex_unlock(&srv->status_mu);
    return rc;
}

/* --------------------------------------------------------------- text */

typedef struct mjob {
    srv_job job;
    srv_rsp rsp;
    struct evbuffer *out;
    int code;
    const char *ctype;
    json_t *extra;
    char detail[512];
} mjob;

static void head(struct evbuffer *b, const char *name, const char *type, const char *help) {
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(struct evbuffer *b, const char *name, const char *type, const char *help,
                   uint64_t v) {
    head(b, name, type, help);
    evbuffer_add_printf(b, "%s %" PRIu64 "\n", name, v);
}

static uint64_t sum_w(evl_srv *srv, size_t offset) {
    uint64_t t = 0;
    for (unsigned i = 0; i < srv->n_workers; i++)
        t += LOAD(*(_Atomic uint64_t *)((char *)&srv->workers[i]->st + offset));
    return t;
}
#define SUM(field) sum_w(srv, offsetof(srv_wstats, field))

static void hist(struct evbuffer *b, const char *name, const char *help, const uint64_t *bounds,
                 int n, const srv_hist *const *hs, size_t nh, double scale) {
    head(b, name, "histogram", help);
    uint64_t cum = 0, count = 0, sum = 0;
    for (int i = 0; i <= n; i++) {
        for (size_t k = 0; k < nh; k++) cum += LOAD(((srv_hist *)hs[k])->bucket[i]);
        if (i < n) evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)bounds[i] * scale, cum);
        else evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    for (size_t k = 0; k < nh; k++) {
        count += LOAD(((srv_hist *)hs[k])->count);
        sum += LOAD(((srv_hist *)hs[k])->sum);
    }
    evbuffer_add_printf(b, "%s_sum %g\n%s_count %" PRIu64 "\n", name, (double)sum * scale, name, count);
}

/* One gauge or counter per projection each; a rebuild shows as
 * `rebuilding` 1 while the old table serves, then `generation` + 1. */
typedef enum proj_metric {
    PM_CHECKPOINT, PM_LAG, PM_APPLIED, PM_FAULTED, PM_REBUILDING, PM_GENERATION, PM_N
} proj_metric;

static const struct {
    const char *name, *type, *help;
} proj_metric_def[PM_N] = {
    {"evlog_projection_checkpoint", "gauge", "Last position applied by the projection."},
    {"evlog_projection_lag", "gauge",
     "Events between the log's head and the projection's checkpoint."},
    {"evlog_projection_events_applied_total", "counter",
     "Events that matched a handler since the projection was built."},
    {"evlog_projection_faulted", "gauge", "1 when the projection stopped on a failing event."},
    {"evlog_projection_rebuilding", "gauge",
     "1 while the projection is rebuilt beside the table that serves."},
    {"evlog_projection_generation", "gauge", "Rebuilds swapped in since the server started."},
};

static uint64_t proj_value(proj_metric m, const evl_proj_status *s) {
    switch (m) {
    case PM_CHECKPOINT: return s->checkpoint;
    case PM_LAG: return s->lag;
    case PM_APPLIED: return s->events_applied;
    case PM_FAULTED: return s->state == EVL_PROJ_FAULTED;
    case PM_REBUILDING: return s->rebuild_active != 0;
    case PM_GENERATION: return s->generation;
    case PM_N: break;
    }
    return 0;
}

static void proj_metrics(void *arg, const evl_proj_status *st, size_t n) {
    struct evbuffer *b = arg;
    for (int m = 0; m < PM_N; m++) {
        head(b, proj_metric_def[m].name, proj_metric_def[m].type, proj_metric_def[m].help);
        for (size_t i = 0; i < n; i++)
            evbuffer_add_printf(b, "%s{projection=\"%s\"} %" PRIu64 "\n", proj_metric_def[m].name,
                                st[i].name, proj_value((proj_metric)m, &st[i]));
    }
}

static void metrics_work(srv_job *j) {
    mjob *m = (mjob *)j;
    evl_srv *srv = j->w->srv;
    struct evbuffer *b = m->out;
    evl_log_stats ls;
    memset(&ls, 0, sizeof ls);
    evl_log_stats_get(srv->log, &ls);
    head(b, "evlog_http_requests_total", "counter", "HTTP responses by status code.");
    for (int code = 100; code < 600; code++) {
        uint64_t v = sum_w(srv, offsetof(srv_wstats, codes) + (size_t)code * sizeof(_Atomic uint64_t));
        if (v) evbuffer_add_printf(b, "evlog_http_requests_total{code=\"%d\"} %" PRIu64 "\n", code, v);
    }
    scalar(b, "evlog_http_connections", "gauge", "Open HTTP connections.", SUM(connections));
    scalar(b, "evlog_http_connections_rejected_total", "counter",
           "Connections opened above --max-connections (answered 503).", SUM(rejected_connections));
    scalar(b, "evlog_http_request_deadline_total", "counter",
           "Connections closed for not sending a whole request in time.", SUM(header_timeouts));
    scalar(b, "evlog_head_position", "gauge", "The log's last committed position.", ls.head);
    scalar(b, "evlog_appends_total", "counter", "Append batches acknowledged.", ls.appends);
    scalar(b, "evlog_appended_events_total", "counter", "Events appended.", ls.appended_events);
    scalar(b, "evlog_appended_bytes_total", "counter", "Bytes of events appended.", ls.appended_bytes);
    scalar(b, "evlog_groups_total", "counter", "Group commits: journal frames written (one fsync may cover several).",
           ls.groups);
    scalar(b, "evlog_commits_total", "counter", "LMDB write transactions of the applier (one or more groups each).",
           ls.commits);
    scalar(b, "evlog_fsyncs_total", "counter", "fsyncs made by the log's writer.", ls.syncs);
    scalar(b, "evlog_conflicts_total", "counter", "Appends refused for a wrong expected revision.",
           ls.conflicts);
    scalar(b, "evlog_log_used_bytes", "gauge", "LMDB pages in use, bytes.", ls.used_bytes);
    scalar(b, "evlog_log_map_bytes", "gauge", "LMDB map size, bytes.", ls.map_size);
    scalar(b, "evlog_log_readers", "gauge", "LMDB reader slots in use (every process on the log).",
           ls.readers);
    scalar(b, "evlog_log_stale_readers_cleared_total", "counter",
           "Reader slots left by dead processes, cleared by the log's writer.", ls.stale_readers_cleared);
    scalar(b, "evlog_log_read_only", "gauge", "1 after a failed sync made the log refuse appends.",
           ls.read_only_error != 0);
    {   /* the log's group commit durations (journal write with its fsync) */
        static const uint64_t cb[EVL_COMMIT_BUCKETS] = EVL_COMMIT_BOUNDS_US;
        srv_hist ch;
        memset(&ch, 0, sizeof ch);
        uint64_t cnt = 0;
        for (int i = 0; i <= EVL_COMMIT_BUCKETS; i++) {
            atomic_store_explicit(&ch.bucket[i], ls.commit_us[i], memory_order_relaxed);
            cnt += ls.commit_us[i];
        }
        atomic_store_explicit(&ch.count, cnt, memory_order_relaxed);
        atomic_store_explicit(&ch.sum, ls.commit_us_sum, memory_order_relaxed);
        const srv_hist *chp = &ch;
        hist(b, "evlog_group_commit_duration_seconds", "Group commit: from the journal write of a group to the end of the fsync that covers it.",
             cb, EVL_COMMIT_BUCKETS, &chp, 1, 1e-6);
    }
    const srv_hist *g = &srv->group_events;
    hist(b, "evlog_group_commit_events", "Events made readable together, per LMDB commit of the applier.",
         evl__srv_size_bounds, SRV_SIZE_BUCKETS, &g, 1, 1.0);
    const srv_hist *hs[64];
    for (unsigned i = 0; i < srv->n_workers; i++) hs[i] = &srv->workers[i]->st.append_us;
    hist(b, "evlog_append_duration_seconds",
         "Append requests from arrival to answer (includes the group commit and its fsync).",
         evl__srv_lat_bounds, SRV_LAT_BUCKETS, hs, srv->n_workers, 1e-6);
    scalar(b, "evlog_sse_subscribers", "gauge", "Open SSE feeds.", SUM(subscribers));
    scalar(b, "evlog_sse_events_sent_total", "counter", "SSE event frames queued to subscribers.",
           SUM(events_sent));
    scalar(b, "evlog_sse_catchup_reads_total", "counter", "Catch-up batches read from the log.",
           SUM(catchup_reads));
    scalar(b, "evlog_sse_slow_disconnects_total", "counter",
           "Subscribers disconnected for reading nothing for --sse-stall-ms.", SUM(sse_slow_disconnects));
    scalar(b, "evlog_sse_queued_bytes", "gauge", "Bytes queued to subscribers (sampled each second).",
           SUM(sse_queued));
    if (srv->eng) evl__srv_with_status(srv, 1000, proj_metrics, b);
    if (srv->asof) {
        evl_proj_asof_stats as;
        evl_proj_asof_stats_get(srv->asof, &as);
        scalar(b, "evlog_asof_cache_hits_total", "counter", "as_of queries answered from a kept build.", as.hits);
        scalar(b, "evlog_asof_cache_misses_total", "counter", "as_of queries that needed a new build.", as.misses);
        scalar(b, "evlog_asof_builds_total", "counter", "Point-in-time builds made for as_of queries.", as.builds);
        scalar(b, "evlog_asof_cache_evictions_total", "counter", "Kept builds deleted to stay within bounds.",
               as.evictions);
        scalar(b, "evlog_asof_cache_entries", "gauge", "Point-in-time builds kept.", as.entries);
        scalar(b, "evlog_asof_cache_bytes", "gauge", "Bytes of the builds kept.", as.bytes);
    }
    {
        srv_pool_stats ps;
        evl__srv_pool_stats(srv->pool, &ps);
        scalar(b, "evlog_pool_threads", "gauge", "Pool threads started (at most --pool-threads).", ps.threads);
        scalar(b, "evlog_pool_busy_threads", "gauge", "Pool threads running a job (this one included).", ps.busy);
        scalar(b, "evlog_pool_waiting_queries", "gauge",
               "Pool threads held by queries waiting for min_position.", ps.waits);
        scalar(b, "evlog_pool_waiting_queries_max", "gauge",
               "Most pool threads such waits may hold; the rest serve other jobs.", ps.wait_max);
        scalar(b, "evlog_pool_queued_jobs", "gauge", "Pool jobs not started yet.", ps.queued);
    }
    scalar(b, "evlog_uptime_seconds", "gauge", "Seconds since the server started.",
           (uint64_t)((evl__srv_mono_ns() - srv->started_ns) / 1000000000));
}

static void text_run(srv_worker *w, srv_msg *msg) {
    mjob *m = (mjob *)msg;
    w->inflight--;
    if (m->code == 200) {
        evl__srv_reply(&m->rsp, 200, m->ctype, m->out);
    } else {
        evl__srv_problem(&m->rsp, m->code, "unavailable", m->extra, "%s", m->detail);
        m->extra = NULL; /* the problem took it */
    }
    evbuffer_free(m->out);
    evl_free(m);
}

/* A text job for the pool; NULL (answered 503) without memory.  Submitted
 * by the caller; text_run() answers on the worker and frees it. */
static mjob *mjob_new(srv_req *q, void (*work)(srv_job *), const char *ctype) {
    mjob *m = evl_calloc(1, sizeof *m);
    if (m && !(m->out = evbuffer_new())) {
        evl_free(m);
        m = NULL;
    }
    if (!m) {
        evl__srv_problem(&q->rsp, 503, "unavailable", NULL, "out of memory");
        return NULL;
    }
    m->job.msg.run = text_run;
    m->job.w = q->rsp.w;
    m->job.work = work;
    m->rsp = q->rsp;
    m->code = 200;
    m->ctype = ctype;
    return m;
}

void evl__srv_metrics(srv_req *q) {
    mjob *m = mjob_new(q, metrics_work, "text/plain; version=0.0.4; charset=utf-8");
    if (m) evl__srv_pool_submit(q->rsp.w->srv->pool, &m->job);
}

void evl__srv_healthz(srv_req *q) {
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add_printf(b, "{\"status\":\"ok\"}");
    evl__srv_reply(&q->rsp, 200, "application/json", b);
    if (b) evbuffer_free(b);
}

/* ------------------------------------------------------------- readyz */

static void find_faults(void *arg, const evl_proj_status *st, size_t n) {
    json_t *faulted = arg;
    for (size_t i = 0; i < n; i++)
        if (st[i].state == EVL_PROJ_FAULTED) json_array_append_new(faulted, json_string(st[i].name));
}

static void readyz_work(srv_job *j) {
    mjob *m = (mjob *)j;
    evl_srv *srv = j->w->srv;
    evl_log_stats ls;
    memset(&ls, 0, sizeof ls);
    int rc = evl_log_stats_get(srv->log, &ls);
    json_t *faulted = json_array();
    if (srv->eng && faulted) evl__srv_with_status(srv, 1000, find_faults, faulted);
    if (rc || ls.read_only_error) {
        m->code = 503;
        snprintf(m->detail, sizeof m->detail, "the log refuses appends: %s",
                 evl_strerror(rc ? rc : ls.read_only_error));
    } else if (atomic_load(&srv->stopping)) {
        m->code = 503;
        snprintf(m->detail, sizeof m->detail, "the server is shutting down");
    } else if (json_array_size(faulted)) {
        m->code = 503;
        snprintf(m->detail, sizeof m->detail, "%zu projection(s) faulted", json_array_size(faulted));
    }
    if (m->code == 200) {
        evbuffer_add_printf(m->out, "{\"status\":\"ready\",\"head\":%" PRIu64 "}", ls.head);
        json_decref(faulted);
    } else {
        m->extra = json_pack("{s:o}", "faulted", faulted ? faulted : json_array());
    }
}

void evl__srv_readyz(srv_req *q) {
    mjob *m = mjob_new(q, readyz_work, "application/json");
    if (m) evl__srv_pool_submit(q->rsp.w->srv->pool, &m->job);
}
