/** @file append.c
 * @brief bench/append: append throughput and latency of evlog against the
 * "events table in SQLite" baseline the seed services use.
 *
 * For every configuration (sync full|none x 1/8/64 appender threads x batches
 * of 1 or 100 events) it runs evlog and SQLite alternately (A B A B ...),
 * each run for a fixed duration in a fresh temporary data directory, and
 * reports events/s, p50 and p99 latency of one append call (from call to
 * return), the evlog/SQLite throughput ratio per round and its median.
 * See bench/README.md.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "evlog/evlog.h"
#include "evlog/log.h"

#define EVENT_TYPE "JobProgressed"
#define MODEL "Qwen/Qwen3-0.6B"
#define HEADLINE_TARGET 20.0
#define MAX_LIST 16
#define MAX_ROUNDS 32

enum sys { SYS_EVLOG, SYS_SQLITE };
static const char *const sys_name[] = {"evlog", "sqlite"};

/* ------------------------------------------------------------- options */

static struct {
    double seconds;
    int rounds;
    int quick;
    int streams;          /* streams per thread */
    const char *json;
    int threads[MAX_LIST], n_threads;
    int batches[MAX_LIST], n_batches;
    int syncs[2], n_syncs; /* 1 = full, 0 = none */
    const char *tmpbase;
    int only;             /* -1: both systems; else SYS_EVLOG or SYS_SQLITE */
} opt;

/* ------------------------------------------------------ shared run state */

static atomic_int g_stop;
static uint64_t g_t0, g_deadline; /* the measured window; set before the start barrier */
static volatile sig_atomic_t g_interrupted;
static char g_rundir[4096]; /* the current run's temp dir, for cleanup */

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
    atomic_store(&g_stop, 1);
}

/** One run: one system, one configuration, one round. */
typedef struct run_cfg {
    enum sys sys;
    int sync_full;
    int threads;
    int batch;
    double seconds;
} run_cfg;

typedef struct run_result {
    int valid;              /* ran, no errors, and the stored count matches */
    double events_per_s;    /* events acknowledged within the window / window */
    double elapsed_s;       /* the window */
    double drain_s;         /* how long the last append in flight at the end took to return */
    uint64_t window_events; /* events whose append returned within the window */
    uint64_t appends, events, errors; /* all appends, including those that straddle the end */
    uint64_t p50_ns, p99_ns, max_ns;
    uint64_t stored;        /* events found in the store afterwards */
    uint64_t groups, commits, syncs; /* evlog only (from evl_log_stats_get) */
    uint64_t group_us;               /* evlog: time in group commits (journal write + fsync) */
    uint64_t thread_min, thread_max; /* fewest / most appends one thread completed in the window */
    char first_error[128];
} run_result;

/** Per-thread state. */
typedef struct worker {
    pthread_t th;
    int idx;
    const run_cfg *cfg;
    pthread_barrier_t *barrier;
    /* evlog */
    evl_log *log;
    evl_event_in *evs;
    /* sqlite */
    const char *db_path;
    sqlite3 *db;
    sqlite3_stmt *st_begin, *st_max, *st_ins, *st_commit, *st_rollback;
    /* workload */
    char (*streams)[48];
    char (*job_ids)[37];
    msgpack_sbuffer *bufs; /* one per event of a batch */
    uint64_t rng;
    uint64_t counter;
    /* results */
    bench_lat lat;
    uint64_t appends, events, errors, window_events, window_appends;
    uint64_t t_end;
    int setup_failed;
    char first_error[128];
} worker;

/* ---------------------------------------------------------------- helpers */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/** A random (version 4) UUID in its 36-char text form. */
static void uuid4_str(uint64_t *rng, char out[37])
{
    uint8_t b[16];
    uint64_t a = xorshift(rng), c = xorshift(rng);
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    static const char hx[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hx[b[i] >> 4];
        *o++ = hx[b[i] & 15];
    }
    *o = 0;
}

/** ISO-8601 UTC with microseconds, e.g. 2026-11-23T10:30:00.123456Z. */
static void iso_now(char out[40])
{
    int64_t ns = bench_wall_ns();
    time_t s = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%06dZ", (int)(ns % 1000000000 / 1000));
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/** The payload: a job-lifecycle event as a msgpack map, like the
 * model-download job server's progress updates. */
static void pack_payload(msgpack_sbuffer *sb, const char *job_id, uint64_t n)
{
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pack_str(&pk, "id");
    pack_str(&pk, job_id);
    pack_str(&pk, "model");
    pack_str(&pk, MODEL);
    pack_str(&pk, "status");
    pack_str(&pk, "running");
    pack_str(&pk, "progress");
    msgpack_pack_double(&pk, (double)(n % 100) / 100.0);
    pack_str(&pk, "downloaded_bytes");
    msgpack_pack_uint64(&pk, 123456789u + (n % 1000000u));
}

static void rm_rf(const char *dir) { bench_rm_rf(dir); }

static int make_rundir(void) { return bench_make_rundir(g_rundir, sizeof g_rundir, opt.tmpbase); }

static void set_err(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *dst, size_t n, const char *fmt, ...)
{
    if (dst[0])
        return; /* keep the first */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, n, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ the workers */

static int sq_exec(sqlite3 *db, const char *sql, char *err, size_t errn)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        set_err(err, errn, "sqlite: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int sqlite_setup(worker *w)
{
    char *e = w->first_error;
    size_t en = sizeof w->first_error;
    int rc = sqlite3_open_v2(w->db_path, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        set_err(e, en, "sqlite open: %s", sqlite3_errstr(rc));
        return -1;
    }
    sqlite3_busy_timeout(w->db, 60000);
    if (sq_exec(w->db, w->cfg->sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF", e, en))
        return -1;
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {
        {&w->st_begin, "BEGIN IMMEDIATE"},
        {&w->st_max, "SELECT COALESCE(MAX(revision), -1) FROM events WHERE stream = ?1"},
        {&w->st_ins, "INSERT INTO events (stream, revision, event_id, type, time, data) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
        {&w->st_commit, "COMMIT"},
        {&w->st_rollback, "ROLLBACK"},
    };
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++)
        if (sqlite3_prepare_v2(w->db, stmts[i].sql, -1, stmts[i].st, NULL) != SQLITE_OK) {
            set_err(e, en, "sqlite prepare %s: %s", stmts[i].sql, sqlite3_errmsg(w->db));
            return -1;
        }
    return 0;
}

static void sqlite_teardown(worker *w)
{
    sqlite3_finalize(w->st_begin);
    sqlite3_finalize(w->st_max);
    sqlite3_finalize(w->st_ins);
    sqlite3_finalize(w->st_commit);
    sqlite3_finalize(w->st_rollback);
    sqlite3_close(w->db);
    w->db = NULL;
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/** One append in the baseline: BEGIN IMMEDIATE; read the stream's max
 * revision; INSERT the batch; COMMIT. */
static int sqlite_append(worker *w, const char *stream)
{
    int rc = step_done(w->st_begin);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(w->st_max, 1, stream, -1, SQLITE_STATIC);
    rc = sqlite3_step(w->st_max);
    int64_t rev = -1;
    if (rc == SQLITE_ROW) {
        rev = sqlite3_column_int64(w->st_max, 0);
        rc = SQLITE_OK;
    }
    sqlite3_reset(w->st_max);
    char now[40];
    iso_now(now);
    for (int i = 0; rc == SQLITE_OK && i < w->cfg->batch; i++) {
        char eid[37];
        uuid4_str(&w->rng, eid);
        sqlite3_bind_text(w->st_ins, 1, stream, -1, SQLITE_STATIC);
        sqlite3_bind_int64(w->st_ins, 2, rev + 1 + i);
        sqlite3_bind_text(w->st_ins, 3, eid, 36, SQLITE_TRANSIENT);
        sqlite3_bind_text(w->st_ins, 4, EVENT_TYPE, -1, SQLITE_STATIC);
        sqlite3_bind_text(w->st_ins, 5, now, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(w->st_ins, 6, w->bufs[i].data, (int)w->bufs[i].size, SQLITE_STATIC);
        rc = step_done(w->st_ins);
    }
    if (rc == SQLITE_OK)
        rc = step_done(w->st_commit);
    if (rc != SQLITE_OK) {
        const char *msg = sqlite3_errmsg(w->db);
        set_err(w->first_error, sizeof w->first_error, "sqlite append: %s (%s)",
                sqlite3_errstr(rc), msg);
        if (!sqlite3_get_autocommit(w->db))
            step_done(w->st_rollback);
    }
    return rc;
}

static int evlog_append(worker *w, const char *stream)
{
    evl_stream_in s = {.stream = stream, .expected = EVL_REV_ANY, .events = w->evs,
                       .n_events = (size_t)w->cfg->batch};
    evl_append_result res;
    memset(&res, 0, sizeof res);
    int rc = evl_log_append(w->log, &s, 1, &res);
    if (rc == EVL_OK && res.n_acks != (size_t)w->cfg->batch) {
        set_err(w->first_error, sizeof w->first_error, "evlog: %zu acks for %d events",
                res.n_acks, w->cfg->batch);
        rc = EVL_EINVAL;
    } else if (rc != EVL_OK) {
        set_err(w->first_error, sizeof w->first_error, "evl_log_append: %s: %s",
                evl_errname(rc), evl_strerror(rc));
    }
    evl_free(res.acks);
    return rc;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    const run_cfg *c = w->cfg;
    if (c->sys == SYS_SQLITE && sqlite_setup(w) != 0)
        w->setup_failed = 1;
    pthread_barrier_wait(w->barrier);
    if (w->setup_failed) {
        w->t_end = bench_now_ns();
        return NULL;
    }
    size_t k = (size_t)w->idx % (size_t)opt.streams; /* threads start at different streams */
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed) && bench_now_ns() < g_deadline) {
        const char *stream = w->streams[k];
        const char *job = w->job_ids[k];
        if (++k == (size_t)opt.streams)
            k = 0;
        for (int i = 0; i < c->batch; i++) {
            pack_payload(&w->bufs[i], job, w->counter++);
            if (w->evs) {
                w->evs[i].data = w->bufs[i].data;
                w->evs[i].data_len = w->bufs[i].size;
            }
        }
        uint64_t t0 = bench_now_ns();
        int rc = c->sys == SYS_EVLOG ? evlog_append(w, stream) : sqlite_append(w, stream);
        uint64_t t1 = bench_now_ns();
        if (bench_lat_add(&w->lat, t1 - t0) != 0) {
            set_err(w->first_error, sizeof w->first_error, "out of memory for latencies");
            w->errors++;
            break;
        }
        w->appends++;
        if (rc == 0) {
            w->events += (uint64_t)c->batch;
            if (t1 <= g_deadline) {
                w->window_events += (uint64_t)c->batch;
                w->window_appends++;
            }
        } else
            w->errors++;
    }
    w->t_end = bench_now_ns();
    if (c->sys == SYS_SQLITE)
        sqlite_teardown(w);
    return NULL;
}

/* ------------------------------------------------------------- one run */

static int sqlite_create(const char *path, char *err, size_t errn)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        set_err(err, errn, "sqlite open %s: %s", path, sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    int bad = sq_exec(db, "PRAGMA journal_mode=WAL", err, errn) ||
              sq_exec(db,
                      "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                      "stream TEXT NOT NULL, revision INTEGER NOT NULL, "
                      "event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, "
                      "time TEXT NOT NULL, data BLOB NOT NULL, UNIQUE(stream, revision))",
                      err, errn);
    sqlite3_close(db);
    return bad ? -1 : 0;
}

static uint64_t sqlite_count(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t n = UINT64_MAX;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void run_one(const run_cfg *c, run_result *r)
{
    memset(r, 0, sizeof *r);
    if (make_rundir() != 0) {
        set_err(r->first_error, sizeof r->first_error, "mkdtemp failed");
        return;
    }
    char path[4200];
    evl_log *log = NULL;
    if (c->sys == SYS_EVLOG) {
        snprintf(path, sizeof path, "%s/data", g_rundir);
        evl_log_options lo;
        evl_log_options_init(&lo);
        lo.sync = c->sync_full ? EVL_SYNC_FULL : EVL_SYNC_NONE;
        int rc = evl_log_open(path, &lo, &log);
        if (rc != EVL_OK) {
            set_err(r->first_error, sizeof r->first_error, "evl_log_open %s: %s", path,
                    evl_strerror(rc));
            goto out;
        }
    } else {
        snprintf(path, sizeof path, "%s/events.db", g_rundir);
        if (sqlite_create(path, r->first_error, sizeof r->first_error) != 0)
            goto out;
    }

    int T = c->threads;
    worker *ws = calloc((size_t)T, sizeof *ws);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)T + 1);
    atomic_store(&g_stop, g_interrupted ? 1 : 0);
    g_t0 = bench_now_ns(); /* published to the workers by the barrier */
    g_deadline = g_t0 + (uint64_t)(c->seconds * 1e9);
    int started = 0;
    for (int t = 0; ws && t < T; t++) {
        worker *w = &ws[t];
        w->idx = t;
        w->cfg = c;
        w->barrier = &barrier;
        w->log = log;
        w->db_path = path;
        w->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(t + 1) * 0x100000001b3ull);
        w->streams = calloc((size_t)opt.streams, sizeof *w->streams);
        w->job_ids = calloc((size_t)opt.streams, sizeof *w->job_ids);
        w->bufs = calloc((size_t)c->batch, sizeof *w->bufs);
        if (c->sys == SYS_EVLOG)
            w->evs = calloc((size_t)c->batch, sizeof *w->evs);
        if (!w->streams || !w->job_ids || !w->bufs || (c->sys == SYS_EVLOG && !w->evs)) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
        for (int s = 0; s < opt.streams; s++) {
            snprintf(w->streams[s], sizeof w->streams[s], "job-%d-%d", t, s);
            uuid4_str(&w->rng, w->job_ids[s]);
        }
        for (int i = 0; i < c->batch; i++) {
            msgpack_sbuffer_init(&w->bufs[i]);
            if (w->evs)
                w->evs[i] = (evl_event_in){.type = EVENT_TYPE, .id = NULL};
        }
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
            fprintf(stderr, "bench: pthread_create failed\n");
            exit(1);
        }
        started++;
    }
    if (!ws) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }

    pthread_barrier_wait(&barrier);
    uint64_t t0 = g_t0, deadline = g_deadline;
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= deadline || g_interrupted)
            break;
        uint64_t left = deadline - now;
        if (left > 50000000u)
            left = 50000000u;
        struct timespec ts = {0, (long)left};
        nanosleep(&ts, NULL);
    }
    atomic_store(&g_stop, 1);

    bench_lat all = {0};
    uint64_t t_end = t0;
    r->thread_min = UINT64_MAX;
    for (int t = 0; t < started; t++) {
        worker *w = &ws[t];
        pthread_join(w->th, NULL);
        if (w->t_end > t_end)
            t_end = w->t_end;
        r->appends += w->appends;
        r->events += w->events;
        r->window_events += w->window_events;
        if (w->window_appends < r->thread_min)
            r->thread_min = w->window_appends;
        if (w->window_appends > r->thread_max)
            r->thread_max = w->window_appends;
        r->errors += w->errors + (uint64_t)w->setup_failed;
        if (w->first_error[0])
            set_err(r->first_error, sizeof r->first_error, "%s", w->first_error);
        if (bench_lat_merge(&all, &w->lat) != 0) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
        bench_lat_free(&w->lat);
        for (int i = 0; i < c->batch; i++)
            msgpack_sbuffer_destroy(&w->bufs[i]);
        free(w->bufs);
        free(w->evs);
        free(w->streams);
        free(w->job_ids);
    }
    pthread_barrier_destroy(&barrier);
    free(ws);

    r->elapsed_s = (double)(deadline - t0) / 1e9;
    r->drain_s = t_end > deadline ? (double)(t_end - deadline) / 1e9 : 0;
    r->events_per_s = r->elapsed_s > 0 ? (double)r->window_events / r->elapsed_s : 0;
    bench_lat_sort(&all);
    r->p50_ns = bench_percentile(all.v, all.n, 50);
    r->p99_ns = bench_percentile(all.v, all.n, 99);
    r->max_ns = all.n ? all.v[all.n - 1] : 0;
    bench_lat_free(&all);

    if (c->sys == SYS_EVLOG) {
        evl_log_stats st;
        memset(&st, 0, sizeof st);
        if (evl_log_stats_get(log, &st) == EVL_OK) {
            r->groups = st.groups;
            r->group_us = st.commit_us_sum;
            r->commits = st.commits;
            r->syncs = st.syncs;
        }
        r->stored = evl_log_head(log);
        evl_log_close(log);
    } else {
        r->stored = sqlite_count(path);
    }
    if (r->stored != r->events)
        set_err(r->first_error, sizeof r->first_error,
                "store holds %" PRIu64 " events, %" PRIu64 " were acknowledged", r->stored,
                r->events);
    r->valid = r->errors == 0 && r->stored == r->events && r->events > 0 && !g_interrupted;
out:
    rm_rf(g_rundir);
    g_rundir[0] = 0;
}

/* -------------------------------------------------------- fdatasync probe */

/** Median latency of a 4 KiB write + fdatasync on the temp file system: the
 * floor of one durable commit, to read the results against.  @p grow: append
 * (the file grows, so the journal commits metadata too) or overwrite in place. */
static double fdatasync_probe_ms(int grow)
{
    if (make_rundir() != 0)
        return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/probe", g_rundir);
    double med = -1;
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd >= 0) {
        char buf[4096];
        memset(buf, 'x', sizeof buf);
        double v[200];
        int n = 0;
        for (int i = 0; i < 200; i++) {
            off_t off = (off_t)(grow ? i : i % 16) * 4096;
            uint64_t t0 = bench_now_ns();
            if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf || fdatasync(fd) != 0)
                break;
            v[n++] = (double)(bench_now_ns() - t0) / 1e6;
        }
        close(fd);
        if (n > 0)
            med = bench_median(v, (size_t)n);
    }
    rm_rf(g_rundir);
    g_rundir[0] = 0;
    return med;
}

/* ----------------------------------------------------------- the report */

typedef struct config_res {
    int sync_full, threads, batch;
    int headline;
    int rounds;
    run_result r[2][MAX_ROUNDS]; /* [sys][round] */
    double ratio[MAX_ROUNDS];
    double ev_med[2], p50_med[2], p99_med[2], max_med[2], ratio_med;
    int all_valid;
} config_res;

/** Does this invocation run system @p s? (--only) */
static int has(int s)
{
    return opt.only < 0 || opt.only == s;
}

static int both(void)
{
    return opt.only < 0;
}

static double med_of(const config_res *cr, int sys, int what)
{
    double v[MAX_ROUNDS];
    for (int i = 0; i < cr->rounds; i++) {
        const run_result *r = &cr->r[sys][i];
        v[i] = what == 0   ? r->events_per_s
               : what == 1 ? (double)r->p50_ns
               : what == 2 ? (double)r->p99_ns
                           : (double)r->max_ns;
    }
    return bench_median(v, (size_t)cr->rounds);
}

static void summarise(config_res *cr)
{
    double rv[MAX_ROUNDS];
    cr->all_valid = 1;
    for (int i = 0; i < cr->rounds; i++) {
        const run_result *a = &cr->r[SYS_EVLOG][i], *b = &cr->r[SYS_SQLITE][i];
        cr->ratio[i] = both() && b->events_per_s > 0 ? a->events_per_s / b->events_per_s : 0;
        rv[i] = cr->ratio[i];
        if ((has(SYS_EVLOG) && !a->valid) || (has(SYS_SQLITE) && !b->valid))
            cr->all_valid = 0;
    }
    for (int s = 0; s < 2; s++) {
        cr->ev_med[s] = med_of(cr, s, 0);
        cr->p50_med[s] = med_of(cr, s, 1);
        cr->p99_med[s] = med_of(cr, s, 2);
        cr->max_med[s] = med_of(cr, s, 3);
    }
    cr->ratio_med = bench_median(rv, (size_t)cr->rounds);
}

static double group_size(const config_res *cr)
{
    uint64_t a = 0, c = 0;
    for (int i = 0; i < cr->rounds; i++) {
        a += cr->r[SYS_EVLOG][i].appends;
        c += cr->r[SYS_EVLOG][i].groups;
    }
    return c ? (double)a / (double)c : 0;
}

static void print_table(config_res *crs, int n)
{
    bench_table t;
    enum { NCOL = 14 };
    bench_table_init(&t, NCOL);
    size_t h = bench_table_row(&t);
    const char *hdr[NCOL] = {"sync", "threads", "batch", "evlog ev/s", "p50 ms", "p99 ms",
                             "max ms", "appends/group", "sqlite ev/s", "p50 ms", "p99 ms",
                             "max ms", "ratio per round", "median"};
    for (size_t i = 0; i < NCOL; i++)
        bench_table_set(&t, h, i, "%s", hdr[i]);
    for (int i = 0; i < n; i++) {
        config_res *cr = &crs[i];
        size_t r = bench_table_row(&t);
        bench_table_set(&t, r, 0, "%s", cr->sync_full ? "full" : "none");
        bench_table_set(&t, r, 1, "%d", cr->threads);
        bench_table_set(&t, r, 2, "%d", cr->batch);
        for (size_t col = 3; col < NCOL; col++)
            bench_table_set(&t, r, col, "-");
        if (has(SYS_EVLOG)) {
            bench_table_set(&t, r, 3, "%.0f", cr->ev_med[SYS_EVLOG]);
            bench_table_set(&t, r, 4, "%.3f", cr->p50_med[SYS_EVLOG] / 1e6);
            bench_table_set(&t, r, 5, "%.3f", cr->p99_med[SYS_EVLOG] / 1e6);
            bench_table_set(&t, r, 6, "%.1f", cr->max_med[SYS_EVLOG] / 1e6);
            bench_table_set(&t, r, 7, "%.1f", group_size(cr));
        }
        if (has(SYS_SQLITE)) {
            bench_table_set(&t, r, 8, "%.0f", cr->ev_med[SYS_SQLITE]);
            bench_table_set(&t, r, 9, "%.3f", cr->p50_med[SYS_SQLITE] / 1e6);
            bench_table_set(&t, r, 10, "%.3f", cr->p99_med[SYS_SQLITE] / 1e6);
            bench_table_set(&t, r, 11, "%.1f", cr->max_med[SYS_SQLITE] / 1e6);
        }
        if (both()) {
            char rounds[BENCH_CELL] = "";
            size_t off = 0;
            for (int k = 0; k < cr->rounds && off < sizeof rounds; k++)
                off += (size_t)snprintf(rounds + off, sizeof rounds - off, "%s%.1fx",
                                        k ? " " : "", cr->ratio[k]);
            bench_table_set(&t, r, 12, "%s", rounds);
            bench_table_set(&t, r, 13, "%.1fx", cr->ratio_med);
        }
        char tail[160] = "";
        if (cr->headline && both())
            snprintf(tail, sizeof tail, "<== HEADLINE (target >= %.0fx): %s", HEADLINE_TARGET,
                     cr->ratio_med >= HEADLINE_TARGET ? "MET" : "NOT MET");
        if (!cr->all_valid)
            snprintf(tail + strlen(tail), sizeof tail - strlen(tail), "%s[INVALID: see stderr]",
                     tail[0] ? " " : "");
        if (tail[0])
            bench_table_tail(&t, r, tail);
    }
    bench_table_print(&t, stdout);
    bench_table_free(&t);
}

static void json_run(FILE *f, const run_result *r, int sys)
{
    fprintf(f,
            "{\"valid\": %s, \"events_per_s\": %.1f, \"p50_ms\": %.6f, \"p99_ms\": %.6f, "
            "\"max_ms\": %.6f, \"window_s\": %.6f, \"drain_s\": %.6f, \"window_events\": %" PRIu64
            ", \"appends\": %" PRIu64 ", \"events\": %" PRIu64 ", \"errors\": %" PRIu64
            ", \"stored_events\": %" PRIu64 ", \"thread_appends_min\": %" PRIu64
            ", \"thread_appends_max\": %" PRIu64,
            r->valid ? "true" : "false", r->events_per_s, (double)r->p50_ns / 1e6,
            (double)r->p99_ns / 1e6, (double)r->max_ns / 1e6, r->elapsed_s, r->drain_s,
            r->window_events, r->appends, r->events,
            r->errors, r->stored, r->thread_min, r->thread_max);
    if (sys == SYS_EVLOG)
        fprintf(f, ", \"groups\": %" PRIu64 ", \"group_commit_us_mean\": %.1f, \"commits\": %" PRIu64
                ", \"syncs\": %" PRIu64, r->groups, r->groups ? (double)r->group_us / (double)r->groups : 0.0,
                r->commits, r->syncs);
    if (r->first_error[0]) {
        fputs(", \"error\": \"", f);
        for (const char *p = r->first_error; *p; p++) {
            if (*p == '"' || *p == '\\')
                fputc('\\', f);
            fputc((unsigned char)*p < 0x20 ? ' ' : *p, f);
        }
        fputc('"', f);
    }
    fputc('}', f);
}

static int write_json(const char *file, config_res *crs, int n, double fsync_ms,
                      double fsync_ow_ms, size_t payload, double total_s)
{
    FILE *f = fopen(file, "w");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s: %s\n", file, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"benchmark\": \"append\",\n  \"evlog_version\": \"%s\",\n", EVL_VERSION_STRING);
    fprintf(f, "  \"sqlite_version\": \"%s\",\n  \"cpus\": %ld,\n", sqlite3_libversion(),
            sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(f, "  \"seconds_per_run\": %.3f,\n  \"rounds\": %d,\n  \"quick\": %s,\n", opt.seconds,
            opt.rounds, opt.quick ? "true" : "false");
    fprintf(f, "  \"streams_per_thread\": %d,\n  \"payload_bytes\": %zu,\n", opt.streams, payload);
    fprintf(f, "  \"fdatasync_append_median_ms\": %.4f,\n  \"fdatasync_inplace_median_ms\": %.4f,\n",
            fsync_ms, fsync_ow_ms);
    fprintf(f, "  \"total_seconds\": %.1f,\n", total_s);
    fprintf(f, "  \"headline\": {\"sync\": \"full\", \"threads\": 64, \"batch\": 1, "
               "\"target_ratio\": %.1f},\n",
            HEADLINE_TARGET);
    fputs("  \"configs\": [\n", f);
    for (int i = 0; i < n; i++) {
        config_res *cr = &crs[i];
        fprintf(f,
                "    {\"sync\": \"%s\", \"threads\": %d, \"batch\": %d, \"headline\": %s, "
                "\"valid\": %s,\n",
                cr->sync_full ? "full" : "none", cr->threads, cr->batch,
                cr->headline ? "true" : "false", cr->all_valid ? "true" : "false");
        for (int s = 0; s < 2; s++)
            if (has(s))
                fprintf(f,
                        "     \"%s\": {\"events_per_s\": %.1f, \"p50_ms\": %.6f, \"p99_ms\": %.6f, "
                        "\"max_ms\": %.6f},\n",
                        sys_name[s], cr->ev_med[s], cr->p50_med[s] / 1e6, cr->p99_med[s] / 1e6,
                        cr->max_med[s] / 1e6);
        fprintf(f, "     \"evlog_appends_per_commit\": %.2f,\n", group_size(cr));
        fputs("     \"ratio_per_round\": [", f);
        for (int k = 0; k < cr->rounds && both(); k++)
            fprintf(f, "%s%.3f", k ? ", " : "", cr->ratio[k]);
        if (both())
            fprintf(f, "],\n     \"median_ratio\": %.3f,\n", cr->ratio_med);
        else
            fputs("],\n     \"median_ratio\": null,\n", f);
        if (cr->headline && both())
            fprintf(f, "     \"target_met\": %s,\n",
                    cr->ratio_med >= HEADLINE_TARGET ? "true" : "false");
        fputs("     \"rounds\": [\n", f);
        for (int k = 0; k < cr->rounds; k++) {
            fputs("       {", f);
            if (has(SYS_EVLOG)) {
                fputs("\"evlog\": ", f);
                json_run(f, &cr->r[SYS_EVLOG][k], SYS_EVLOG);
                fputs(",\n        ", f);
            }
            if (has(SYS_SQLITE)) {
                fputs("\"sqlite\": ", f);
                json_run(f, &cr->r[SYS_SQLITE][k], SYS_SQLITE);
                fputs(", ", f);
            }
            if (both())
                fprintf(f, "\"ratio\": %.3f}", cr->ratio[k]);
            else
                fputs("\"ratio\": null}", f);
            fprintf(f, "%s\n", k + 1 < cr->rounds ? "," : "");
        }
        fprintf(f, "     ]}%s\n", i + 1 < n ? "," : "");
    }
    fputs("  ]\n}\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "bench: writing %s: %s\n", file, strerror(errno));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: append [--seconds N] [--quick] [--rounds N] [--json FILE]\n"
            "              [--threads 1,8,64] [--batch 1,100] [--sync full,none] [--streams N]\n"
            "              [--only evlog|sqlite]\n"
            "  --seconds N   duration of each run (default 3; 1 with --quick)\n"
            "  --quick       1 s runs, 1 round, threads 1,64 (fewer configurations)\n"
            "  --rounds N    evlog/SQLite rounds per configuration, run A B A B (default 3)\n"
            "  --json FILE   also write the results as JSON\n"
            "  --threads L   concurrent appender threads (comma list, default 1,8,64)\n"
            "  --batch L     events per append (comma list, default 1,100)\n"
            "  --sync L      full and/or none (default full,none)\n"
            "  --streams N   streams each thread rotates over (default 256)\n"
            "  --only SYS    run only evlog or only sqlite (no ratios; for profiling)\n"
            "Data dirs are made with mkdtemp under $TMPDIR (or /tmp) and removed afterwards.\n");
}

static int parse_list(const char *s, int *out, int max, int lo, int hi)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > hi || n == max)
            return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"seconds", required_argument, 0, 's'}, {"quick", no_argument, 0, 'q'},
        {"rounds", required_argument, 0, 'r'},  {"json", required_argument, 0, 'j'},
        {"threads", required_argument, 0, 't'}, {"batch", required_argument, 0, 'b'},
        {"sync", required_argument, 0, 'y'},    {"streams", required_argument, 0, 'n'},
        {"only", required_argument, 0, 'o'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    double seconds = 0;
    int rounds = 0;
    opt.streams = 256;
    opt.only = -1;
    int c;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (c) {
        case 's': {
            char *end;
            seconds = strtod(optarg, &end);
            if (*end || !(seconds > 0 && seconds <= 3600)) {
                fprintf(stderr, "append: bad --seconds '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'q': opt.quick = 1; break;
        case 'r':
            rounds = atoi(optarg);
            if (rounds < 1 || rounds > MAX_ROUNDS) {
                fprintf(stderr, "append: --rounds must be 1..%d\n", MAX_ROUNDS);
                return 2;
            }
            break;
        case 'j': opt.json = optarg; break;
        case 't':
            if ((opt.n_threads = parse_list(optarg, opt.threads, MAX_LIST, 1, 1024)) <= 0) {
                fprintf(stderr, "append: bad --threads '%s'\n", optarg);
                return 2;
            }
            break;
        case 'b':
            if ((opt.n_batches = parse_list(optarg, opt.batches, MAX_LIST, 1, 10000)) <= 0) {
                fprintf(stderr, "append: bad --batch '%s'\n", optarg);
                return 2;
            }
            break;
        case 'y': {
            opt.n_syncs = 0;
            char buf[64];
            snprintf(buf, sizeof buf, "%s", optarg);
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                if (opt.n_syncs == 2 || (strcmp(tok, "full") && strcmp(tok, "none"))) {
                    fprintf(stderr, "append: bad --sync '%s'\n", optarg);
                    return 2;
                }
                opt.syncs[opt.n_syncs++] = strcmp(tok, "full") == 0;
            }
            if (!opt.n_syncs) {
                fprintf(stderr, "append: bad --sync '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'n':
            opt.streams = atoi(optarg);
            if (opt.streams < 1 || opt.streams > 100000) {
                fprintf(stderr, "append: --streams must be 1..100000\n");
                return 2;
            }
            break;
        case 'o':
            if (strcmp(optarg, "evlog") == 0)
                opt.only = SYS_EVLOG;
            else if (strcmp(optarg, "sqlite") == 0)
                opt.only = SYS_SQLITE;
            else {
                fprintf(stderr, "append: --only takes evlog or sqlite\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    opt.seconds = seconds > 0 ? seconds : opt.quick ? 1.0 : 3.0;
    opt.rounds = rounds > 0 ? rounds : opt.quick ? 1 : 3;
    if (!opt.n_threads) {
        static const int full[] = {1, 8, 64}, quick[] = {1, 64};
        const int *src = opt.quick ? quick : full;
        opt.n_threads = opt.quick ? 2 : 3;
        memcpy(opt.threads, src, (size_t)opt.n_threads * sizeof *src);
    }
    if (!opt.n_batches) {
        opt.batches[0] = 1;
        opt.batches[1] = 100;
        opt.n_batches = 2;
    }
    if (!opt.n_syncs) {
        opt.syncs[0] = 1;
        opt.syncs[1] = 0;
        opt.n_syncs = 2;
    }
    const char *td = getenv("TMPDIR");
    opt.tmpbase = td && *td ? td : "/tmp";

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    uint64_t t_start = bench_now_ns();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_payload(&sb, "550e8400-e29b-41d4-a716-446655440000", 42);
    size_t payload = sb.size;
    msgpack_sbuffer_destroy(&sb);
    double fsync_ms = fdatasync_probe_ms(1), fsync_ow_ms = fdatasync_probe_ms(0);

    int n_cfg = opt.n_syncs * opt.n_batches * opt.n_threads;
    config_res *crs = calloc((size_t)n_cfg, sizeof *crs);
    if (!crs) {
        fprintf(stderr, "append: out of memory\n");
        return 1;
    }
    printf("evlog %s bench/append: %ld CPUs, SQLite %s, %.1f s per run, %d round%s "
           "(evlog, SQLite alternately), payload %zu bytes msgpack, %d streams/thread, "
           "4 KiB write+fdatasync median %.3f ms appending, %.3f ms in place, temp dir %s\n",
           EVL_VERSION_STRING, sysconf(_SC_NPROCESSORS_ONLN), sqlite3_libversion(), opt.seconds,
           opt.rounds, opt.rounds == 1 ? "" : "s", payload, opt.streams, fsync_ms, fsync_ow_ms, opt.tmpbase);
    struct statfs sfs;
    if (statfs(opt.tmpbase, &sfs) == 0 && (unsigned long)sfs.f_type == 0x01021994ul)
        printf("WARNING: %s is a tmpfs: fsync costs nothing there, sync full figures mean "
               "nothing; set TMPDIR to a directory on a real disk\n",
               opt.tmpbase);
    fflush(stdout);

    int n = 0, failed = 0;
    for (int si = 0; si < opt.n_syncs; si++)
        for (int bi = 0; bi < opt.n_batches; bi++)
            for (int ti = 0; ti < opt.n_threads && !g_interrupted; ti++) {
                config_res *cr = &crs[n++];
                cr->sync_full = opt.syncs[si];
                cr->batch = opt.batches[bi];
                cr->threads = opt.threads[ti];
                cr->rounds = opt.rounds;
                cr->headline = cr->sync_full && cr->threads == 64 && cr->batch == 1;
                for (int k = 0; k < opt.rounds && !g_interrupted; k++)
                    for (int s = 0; s < 2 && !g_interrupted; s++) {
                        if (!has(s))
                            continue;
                        run_cfg rc = {.sys = (enum sys)s, .sync_full = cr->sync_full,
                                      .threads = cr->threads, .batch = cr->batch,
                                      .seconds = opt.seconds};
                        run_result *r = &cr->r[s][k];
                        run_one(&rc, r);
                        fprintf(stderr,
                                "  sync %-4s threads %2d batch %3d round %d %-6s %10.0f ev/s  "
                                "p50 %8.3f ms  p99 %8.3f ms%s%s\n",
                                cr->sync_full ? "full" : "none", cr->threads, cr->batch, k + 1,
                                sys_name[s], r->events_per_s, (double)r->p50_ns / 1e6,
                                (double)r->p99_ns / 1e6, r->valid ? "" : "  INVALID: ",
                                r->valid ? "" : r->first_error);
                        if (!r->valid)
                            failed = 1;
                    }
                summarise(cr);
            }
    if (g_interrupted) {
        fprintf(stderr, "append: interrupted\n");
        free(crs);
        return 130;
    }
    double total_s = (double)(bench_now_ns() - t_start) / 1e9;

    printf("\n");
    print_table(crs, n);
    for (int i = 0; i < n && both(); i++)
        if (crs[i].headline)
            printf("\nHEADLINE  64 concurrent single-event appenders, sync full: evlog %.0f ev/s vs "
                   "SQLite %.0f ev/s = %.1fx median (target >= %.0fx): %s\n",
                   crs[i].ev_med[SYS_EVLOG], crs[i].ev_med[SYS_SQLITE], crs[i].ratio_med,
                   HEADLINE_TARGET, crs[i].ratio_med >= HEADLINE_TARGET ? "MET" : "NOT MET");
    printf("(events/s and p50/p99/max latency of one append call: medians over the rounds; "
           "ratio = evlog/SQLite events/s; total %.0f s)\n",
           total_s);
    if (opt.json && write_json(opt.json, crs, n, fsync_ms, fsync_ow_ms, payload, total_s) != 0)
        failed = 1;
    free(crs);
    return failed ? 1 : 0;
}
