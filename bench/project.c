/** @file project.c
 * @brief bench/project: how fast the projection engine turns the log into
 * tables, against the limit — the same SQL statements with the same values
 * run by a plain C loop straight into SQLite — and how far each projection
 * lags behind a sustained append load.
 *
 * Three measurements, in one run (see bench/README.md):
 *  1. apply rate: for each core projection (jobs, tasks, nodes, runs) alone,
 *     N generated events are appended to a fresh log (sync none), then the
 *     engine is started with only that projection and timed from
 *     evl_proj_open() until its checkpoint reaches the head; batch sizes 1,
 *     100, 10000 applied events per SQLite transaction.
 *  2. the limit: every event is decoded once, before timing, into the list of
 *     (statement, bound values) its handlers run; the timed loop only binds
 *     and steps the prepared statements, in transactions of the same size,
 *     on a fresh file opened by the engine's own evl__proj_open_writer().
 *     The two systems alternate (A B A B ...) and must produce identical
 *     tables (every row hashed).
 *  3. lag: the engine runs the four core projections (then every built-in)
 *     while a paced appender adds generated events at a fixed rate; each
 *     projection's lag (head - checkpoint, and the age of its oldest
 *     unapplied event) is sampled every 100 ms.
 */
#include "bench.h"
#include "limit.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evlog/evlog.h"
#include "evlog/json.h"
#include "evlog/log.h"
#include "evlog/mp.h"
#include "evlog/proj.h"
#include "gen.h"

#define RATIO_TARGET 0.8
#define JOBS_TARGET 150000.0
#define MAX_LIST 16
#define MAX_ROUNDS 16
#define MAX_PROJ 16
#define SAMPLE_NS 100000000ull /* lag sampling period: 100 ms */
#define WAIT_MS (30 * 60 * 1000) /* batch 1 on a slow disk can take minutes */
#define LAG_CORE 1 /* lag runs with the four core projections, fed jobs, tasks and runs */
#define LAG_ALL 2  /* lag runs with every built-in projection, fed every service */

enum sys { SYS_EVLOG, SYS_LIMIT };
static const char *const sys_name[] = {"evlog", "limit"};

/** The core projections and the generator services that feed them. */
static const struct core {
    const char *name;
    unsigned services;
} CORE[] = {
    {"jobs", EVL_GEN_JOBS},
    {"tasks", EVL_GEN_TASKS},
    {"nodes", EVL_GEN_TASKS},
    {"runs", EVL_GEN_RUNS},
};
#define N_CORE (sizeof CORE / sizeof CORE[0])

/* ------------------------------------------------------------- options */

static struct {
    uint64_t events;
    int quick;
    int rounds;
    const char *json;
    int batches[MAX_LIST], n_batches;
    int rates[MAX_LIST], n_rates;
    double lag_seconds;
    int lag_sets;         /* LAG_CORE | LAG_ALL: which engines the lag runs use */
    int proj[N_CORE], n_proj; /* indexes into CORE */
    int only;             /* -1 both; else SYS_EVLOG or SYS_LIMIT */
    int apply, lag;       /* which parts run */
    uint64_t seed;
    const char *tmpbase;
    int no_readahead;     /* the engine's reader thread off (an A/B of it) */
} opt;

/* ------------------------------------------------------------ plumbing */

static volatile sig_atomic_t g_interrupted;
static char g_rundir[4096];

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void rm_rf(const char *dir) { bench_rm_rf(dir); }

static int make_rundir(void) { return bench_make_rundir(g_rundir, sizeof g_rundir, opt.tmpbase); }

static void drop_rundir(void)
{
    rm_rf(g_rundir);
    g_rundir[0] = 0;
}

/* Without their `-- @history` lines: see bench_builtin(). */
static const evl_proj_builtin *builtin(const char *name)
{
    return bench_builtin(name);
}

/** Write built-in spec @p name into @p dir, so that an engine opened with
 * no_builtin and this directory runs that projection alone. */
static int write_spec(const char *dir, const char *name)
{
    const evl_proj_builtin *b = builtin(name);
    char path[4200];
    if (!b) {
        fprintf(stderr, "bench: no built-in projection %s\n", name);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, b->file);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->text, 1, b->len, f) != b->len || fclose(f) != 0) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/** Let the disk settle between timed runs: write back what the previous run
 * (or the log's fill) left dirty, so that neither system pays for the
 * other's writeback on this machine's two CPUs. */
static void settle(void)
{
    sync();
}

static void on_report(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "  engine: %s\n", line);
}

/* ---------------------------------------------------- appending events */

/** Asynchronous appends with a bound on the batches in flight: one thread
 * can then keep the writer's queue full without waiting for each commit. */
typedef struct inflight {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n, max;
    uint64_t acked, errors;
    char first_error[160];
} inflight;

static void inflight_init(inflight *f, size_t max)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->max = max;
}

static void inflight_destroy(inflight *f)
{
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
}

static void on_appended(void *arg, const evl_append_result *res)
{
    inflight *f = arg;
    pthread_mutex_lock(&f->mu);
    if (res->err) {
        f->errors++;
        set_err(f->first_error, sizeof f->first_error, "append: %s", evl_strerror(res->err));
    } else {
        f->acked += res->n_acks;
    }
    f->n--;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static size_t batch_events(const evl_stream_in *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i].n_events;
    return k;
}

static int submit(evl_log *log, inflight *f, const evl_stream_in *s, size_t n)
{
    pthread_mutex_lock(&f->mu);
    while (f->n >= f->max)
        pthread_cond_wait(&f->cv, &f->mu);
    f->n++;
    pthread_mutex_unlock(&f->mu);
    int rc = evl_log_append_async(log, s, n, on_appended, f);
    if (rc) {
        pthread_mutex_lock(&f->mu);
        f->n--;
        f->errors++;
        set_err(f->first_error, sizeof f->first_error, "append: %s", evl_strerror(rc));
        pthread_mutex_unlock(&f->mu);
    }
    return rc;
}

static void drain(inflight *f)
{
    pthread_mutex_lock(&f->mu);
    while (f->n)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

/** Append at least @p n generated events of @p services; the head after. */
static int fill_log(evl_log *log, unsigned services, uint64_t n, uint64_t *head)
{
    evl_gen *g;
    inflight f;
    int rc = evl_gen_new(opt.seed, services, &g);
    if (rc) {
        fprintf(stderr, "bench: evl_gen_new: %s\n", evl_strerror(rc));
        return -1;
    }
    inflight_init(&f, 4096);
    uint64_t sent = 0;
    while (sent < n && !g_interrupted) {
        const evl_stream_in *s;
        size_t ns;
        if ((rc = evl_gen_next(g, &s, &ns)) != EVL_OK) {
            fprintf(stderr, "bench: evl_gen_next: %s\n", evl_strerror(rc));
            break;
        }
        if (submit(log, &f, s, ns) != EVL_OK)
            break;
        sent += batch_events(s, ns);
    }
    drain(&f);
    evl_gen_free(g);
    *head = evl_log_head(log);
    int bad = f.errors || rc || g_interrupted || *head != f.acked;
    if (f.errors)
        fprintf(stderr, "bench: filling the log: %s\n", f.first_error);
    inflight_destroy(&f);
    return bad ? -1 : 0;
}

/* ---------------------------------------------------------- the apply runs */

typedef struct apply_round {
    int valid;
    double secs;
    double cpu_secs;    /* CPU time of the process (user + system) over the same interval */
    double events_per_s;
    uint64_t digest, rows;
    char error[200];
} apply_round;

typedef struct apply_res {
    int proj;           /* index into CORE */
    int batch;
    uint64_t events, matched, ops;
    int rounds;
    apply_round r[2][MAX_ROUNDS];
    double ratio[MAX_ROUNDS], cpu_ratio[MAX_ROUNDS];
    double ev_med[2], ratio_med, cpu_ratio_med;
    int all_valid, same_rows;
    int best;           /* the batch size with evlog's best rate for this projection */
} apply_res;

/** One evlog run: a fresh projection file, the engine with only this
 * projection, timed from evl_proj_open until its checkpoint is the head. */
static void evlog_run(evl_log *log, const char *specdir, const evl_proj_spec *spec, size_t batch,
                      uint64_t head, apply_round *r)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/projections/%s.db", evl_log_dir(log), spec->name);
    remove_db(path);
    const char *dirs[1] = {specdir};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1, .batch_events = batch,
                           .report = on_report, .no_readahead = opt.no_readahead};
    evl_proj_engine *eng = NULL;
    double c0 = cpu_now();
    uint64_t t0 = bench_now_ns();
    int rc = evl_proj_open(log, &po, &eng);
    if (rc == EVL_OK)
        rc = evl_proj_wait(eng, spec->name, head, WAIT_MS);
    uint64_t t1 = bench_now_ns();
    r->cpu_secs = cpu_now() - c0;
    if (rc != EVL_OK) {
        set_err(r->error, sizeof r->error, "evlog: %s", evl_strerror(rc));
    } else {
        evl_proj_status *st;
        size_t n;
        if (evl_proj_status_get(eng, spec->name, &st, &n) != EVL_OK || n != 1) {
            set_err(r->error, sizeof r->error, "evlog: no status");
            rc = -1;
        } else {
            if (st->state == EVL_PROJ_FAULTED || st->checkpoint != head) {
                set_err(r->error, sizeof r->error, "evlog: %s at %" PRIu64 ": %s",
                        evl_proj_state_name(st->state), st->checkpoint, st->error ? st->error : "");
                rc = -1;
            }
            evl_proj_status_free(st, n);
        }
    }
    evl_proj_close(eng);
    r->secs = (double)(t1 - t0) / 1e9;
    r->events_per_s = r->secs > 0 ? (double)head / r->secs : 0;
    if (rc == EVL_OK && table_digest(path, spec, &r->digest, &r->rows) != 0) {
        set_err(r->error, sizeof r->error, "evlog: cannot read %s", path);
        rc = -1;
    }
    r->valid = rc == EVL_OK && !g_interrupted;
}

static void limit_round(const program *pg, size_t batch, apply_round *r)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/limit.db", g_rundir);
    int rc = limit_run(pg, path, batch, &r->secs, &r->cpu_secs, r->error, sizeof r->error);
    r->events_per_s = rc == 0 && r->secs > 0 ? (double)pg->n_events / r->secs : 0;
    if (rc == 0 && table_digest(path, pg->spec, &r->digest, &r->rows) != 0) {
        set_err(r->error, sizeof r->error, "limit: cannot read %s", path);
        rc = -1;
    }
    remove_db(path);
    r->valid = rc == 0 && !g_interrupted;
}

static int has(int s)
{
    return opt.only < 0 || opt.only == s;
}

static int both(void)
{
    return opt.only < 0;
}

static void summarise(apply_res *ar)
{
    double rv[MAX_ROUNDS], cv[MAX_ROUNDS], ev[2][MAX_ROUNDS];
    ar->all_valid = 1;
    ar->same_rows = both();
    for (int k = 0; k < ar->rounds; k++) {
        const apply_round *a = &ar->r[SYS_EVLOG][k], *b = &ar->r[SYS_LIMIT][k];
        ar->ratio[k] = both() && b->events_per_s > 0 ? a->events_per_s / b->events_per_s : 0;
        rv[k] = ar->ratio[k];
        ar->cpu_ratio[k] = both() && a->cpu_secs > 0 ? b->cpu_secs / a->cpu_secs : 0;
        cv[k] = ar->cpu_ratio[k];
        ev[0][k] = a->events_per_s;
        ev[1][k] = b->events_per_s;
        if ((has(SYS_EVLOG) && !a->valid) || (has(SYS_LIMIT) && !b->valid))
            ar->all_valid = 0;
        if (both() && (a->digest != b->digest || a->rows != b->rows))
            ar->same_rows = 0;
    }
    ar->ev_med[0] = bench_median(ev[0], (size_t)ar->rounds);
    ar->ev_med[1] = bench_median(ev[1], (size_t)ar->rounds);
    ar->ratio_med = bench_median(rv, (size_t)ar->rounds);
    ar->cpu_ratio_med = bench_median(cv, (size_t)ar->rounds);
}

/** Every batch size for core projection @p ci; fills @p out (one per batch size). */
static int apply_projection(int ci, apply_res *out)
{
    const struct core *c = &CORE[ci];
    int failed = 0;
    char data[4200], specdir[4200], err[1024];
    evl_log *log = NULL;
    evl_proj_spec *spec = NULL;
    program pg;
    memset(&pg, 0, sizeof pg);
    if (make_rundir() != 0)
        return -1;
    snprintf(data, sizeof data, "%s/data", g_rundir);
    snprintf(specdir, sizeof specdir, "%s/specs", g_rundir);
    const evl_proj_builtin *b = builtin(c->name);
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    uint64_t head = 0, t0 = bench_now_ns();
    int rc;
    if (!b || mkdir(specdir, 0755) != 0 || write_spec(specdir, c->name) != 0) {
        failed = 1;
        goto out;
    }
    if ((rc = evl_proj_spec_parse(b->text, b->len, b->file, &spec, err, sizeof err)) != EVL_OK) {
        fprintf(stderr, "bench: %s: %s\n", b->file, err);
        failed = 1;
        goto out;
    }
    if ((rc = evl_log_open(data, &lo, &log)) != EVL_OK) {
        fprintf(stderr, "bench: evl_log_open %s: %s\n", data, evl_strerror(rc));
        failed = 1;
        goto out;
    }
    if (fill_log(log, c->services, opt.events, &head) != 0) {
        failed = 1;
        goto out;
    }
    double fill_s = (double)(bench_now_ns() - t0) / 1e9;
    /* the log flushes 100 ms after its last commit (sync none): let it, then write everything back */
    struct timespec quiet = {0, 300000000};
    nanosleep(&quiet, NULL);
    t0 = bench_now_ns();
    if (has(SYS_LIMIT) && build_program(log, spec, &pg) != 0) {
        failed = 1;
        goto out;
    }
    fprintf(stderr, "%s: %" PRIu64 " events of %s appended in %.1f s; limit decoded in %.1f s "
            "(%zu statements, %zu values)\n",
            c->name, head, evl_gen_service_name(c->services), fill_s,
            (double)(bench_now_ns() - t0) / 1e9, pg.n_ops, pg.n_vals);
    for (int bi = 0; bi < opt.n_batches && !g_interrupted; bi++) {
        apply_res *ar = &out[bi];
        memset(ar, 0, sizeof *ar);
        ar->proj = ci;
        ar->batch = opt.batches[bi];
        ar->events = head;
        ar->matched = pg.matched;
        ar->ops = pg.n_ops;
        ar->rounds = opt.rounds;
        for (int k = 0; k < opt.rounds && !g_interrupted; k++)
            for (int s = 0; s < 2 && !g_interrupted; s++) {
                if (!has(s))
                    continue;
                apply_round *r = &ar->r[s][k];
                settle();
                if (s == SYS_EVLOG)
                    evlog_run(log, specdir, spec, (size_t)ar->batch, head, r);
                else
                    limit_round(&pg, (size_t)ar->batch, r);
                fprintf(stderr, "  %-5s batch %5d round %d %-5s %10.0f ev/s  %7.3f s  cpu %7.3f s%s%s\n",
                        c->name, ar->batch, k + 1, sys_name[s], r->events_per_s, r->secs, r->cpu_secs,
                        r->valid ? "" : "  INVALID: ", r->valid ? "" : r->error);
            }
        summarise(ar);
        if (!ar->all_valid || (both() && !ar->same_rows))
            failed = 1;
        if (both() && !ar->same_rows)
            fprintf(stderr, "  %s batch %d: evlog and the limit produced DIFFERENT tables\n", c->name,
                    ar->batch);
    }
out:
    free_program(&pg);
    evl_proj_spec_free(spec);
    evl_log_close(log);
    drop_rundir();
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------ the lag runs */

/** Commit time of every position, stamped by a commit watcher on the
 * writer thread, so that a sample can tell how long the oldest event a
 * projection has not applied yet has been in the log. */
typedef struct stamps {
    _Atomic uint64_t *ns;
    size_t cap;
    uint64_t last;
} stamps;

static void on_commit_stamp(void *arg, uint64_t head)
{
    stamps *s = arg;
    uint64_t now = bench_now_ns();
    for (uint64_t p = s->last + 1; p <= head && p < s->cap; p++)
        atomic_store_explicit(&s->ns[p], now, memory_order_release);
    s->last = head;
}

typedef struct pacer {
    evl_log *log;
    int rate;
    unsigned services;
    uint64_t t0, deadline;
    uint64_t sent, errors;
    uint64_t t_end;
    char error[160];
} pacer;

/** Append generated batches so that by time t, rate x t events are sent. */
static void *pacer_main(void *arg)
{
    pacer *pc = arg;
    evl_gen *g;
    inflight f;
    if (evl_gen_new(opt.seed + 1, pc->services, &g) != EVL_OK) {
        pc->errors++;
        return NULL;
    }
    inflight_init(&f, 8192);
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= pc->deadline || g_interrupted)
            break;
        uint64_t due = (uint64_t)((double)(now - pc->t0) * pc->rate / 1e9);
        if (pc->sent >= due) {
            /* sleep until the next event is due, at most 1 ms */
            uint64_t next = pc->t0 + (uint64_t)((double)(pc->sent + 1) * 1e9 / pc->rate);
            uint64_t wait = next > now ? next - now : 0;
            if (wait > 1000000)
                wait = 1000000;
            struct timespec ts = {0, (long)wait};
            nanosleep(&ts, NULL);
            continue;
        }
        const evl_stream_in *s;
        size_t ns;
        if (evl_gen_next(g, &s, &ns) != EVL_OK || submit(pc->log, &f, s, ns) != EVL_OK) {
            pc->errors++;
            break;
        }
        pc->sent += batch_events(s, ns);
    }
    pc->t_end = bench_now_ns();
    drain(&f);
    pc->errors += f.errors;
    if (f.first_error[0])
        set_err(pc->error, sizeof pc->error, "%s", f.first_error);
    evl_gen_free(g);
    inflight_destroy(&f);
    return NULL;
}

typedef struct lag_proj {
    char name[EVL_PROJ_MAX_NAME + 1];
    int core;
    bench_lat ev, ms;        /* samples: lag in events, lag in ns */
    uint64_t p50_ev, p99_ev, max_ev, p50_ns, p99_ns, max_ns;
    uint64_t applied;
    char state[16];
} lag_proj;

typedef struct lag_res {
    int set;                              /* LAG_CORE or LAG_ALL */
    int rate;
    int valid;
    double seconds, achieved;
    uint64_t sent, head;
    size_t samples;
    double sample_ms_mean, sample_ms_max; /* the cost of one evl_proj_status_get */
    double drain_ms;                      /* after the last append: until every projection is at the head */
    size_t n;
    lag_proj p[MAX_PROJ];
    char error[200];
} lag_res;

static void lag_run(int set, int rate, lag_res *lr)
{
    memset(lr, 0, sizeof *lr);
    lr->set = set;
    lr->rate = rate;
    lr->seconds = opt.lag_seconds;
    if (make_rundir() != 0) {
        set_err(lr->error, sizeof lr->error, "mkdtemp failed");
        return;
    }
    char data[4200], specdir[4200];
    snprintf(data, sizeof data, "%s/data", g_rundir);
    snprintf(specdir, sizeof specdir, "%s/specs", g_rundir);
    evl_log *log = NULL;
    evl_proj_engine *eng = NULL;
    stamps sp = {0};
    pacer pc = {0};
    int watching = 0, rc;
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    const char *dirs[1] = {specdir};
    evl_proj_options po = {.report = on_report};
    if (set == LAG_CORE) {
        if (mkdir(specdir, 0755) != 0) {
            set_err(lr->error, sizeof lr->error, "mkdir %s: %s", specdir, strerror(errno));
            goto out;
        }
        for (size_t i = 0; i < N_CORE; i++)
            if (write_spec(specdir, CORE[i].name) != 0)
                goto out;
        po.dirs = dirs;
        po.n_dirs = 1;
        po.no_builtin = 1;
    }
    if ((rc = evl_log_open(data, &lo, &log)) != EVL_OK) {
        set_err(lr->error, sizeof lr->error, "evl_log_open: %s", evl_strerror(rc));
        goto out;
    }
    if ((rc = evl_proj_open(log, &po, &eng)) != EVL_OK) {
        set_err(lr->error, sizeof lr->error, "evl_proj_open: %s", evl_strerror(rc));
        goto out;
    }
    sp.cap = (size_t)((double)rate * opt.lag_seconds * 1.2) + 100000;
    sp.ns = calloc(sp.cap, sizeof *sp.ns);
    if (!sp.ns || evl_log_watch(log, on_commit_stamp, &sp) != EVL_OK) {
        set_err(lr->error, sizeof lr->error, "out of memory");
        goto out;
    }
    watching = 1;

    pc.log = log;
    pc.rate = rate;
    pc.services = set == LAG_CORE ? (EVL_GEN_JOBS | EVL_GEN_TASKS | EVL_GEN_RUNS) : EVL_GEN_ALL;
    pc.t0 = bench_now_ns();
    pc.deadline = pc.t0 + (uint64_t)(opt.lag_seconds * 1e9);
    pthread_t th;
    if (pthread_create(&th, NULL, pacer_main, &pc) != 0) {
        set_err(lr->error, sizeof lr->error, "pthread_create failed");
        goto out;
    }
    bench_lat cost = {0};
    for (uint64_t k = 1;; k++) {
        uint64_t at = pc.t0 + k * SAMPLE_NS;
        if (at > pc.deadline || g_interrupted)
            break;
        struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !g_interrupted) {
        }
        evl_proj_status *st;
        size_t n;
        uint64_t s0 = bench_now_ns();
        if (evl_proj_status_get(eng, NULL, &st, &n) != EVL_OK)
            continue;
        uint64_t now = bench_now_ns();
        bench_lat_add(&cost, now - s0);
        lr->samples++;
        for (size_t i = 0; i < n && i < MAX_PROJ; i++) {
            lag_proj *lp = &lr->p[i];
            if (!lp->name[0]) {
                snprintf(lp->name, sizeof lp->name, "%s", st[i].name);
                for (size_t c = 0; c < N_CORE; c++)
                    lp->core |= strcmp(CORE[c].name, st[i].name) == 0;
            }
            uint64_t age = 0;
            if (st[i].checkpoint < st[i].head && st[i].checkpoint + 1 < sp.cap) {
                uint64_t c = atomic_load_explicit(&sp.ns[st[i].checkpoint + 1], memory_order_acquire);
                age = c && c < s0 ? s0 - c : 0; /* not stamped yet: committed just now */
            }
            bench_lat_add(&lp->ev, st[i].lag);
            bench_lat_add(&lp->ms, age);
        }
        if (n > lr->n)
            lr->n = n < MAX_PROJ ? n : MAX_PROJ;
        evl_proj_status_free(st, n);
    }
    pthread_join(th, NULL);
    lr->sent = pc.sent;
    lr->achieved = (double)pc.sent / ((double)(pc.t_end - pc.t0) / 1e9);
    lr->head = evl_log_head(log);
    uint64_t d0 = bench_now_ns();
    rc = evl_proj_wait_all(eng, lr->head, 60000);
    lr->drain_ms = (double)(bench_now_ns() - d0) / 1e6;
    bench_lat_sort(&cost);
    if (cost.n) {
        double sum = 0;
        for (size_t i = 0; i < cost.n; i++)
            sum += (double)cost.v[i];
        lr->sample_ms_mean = sum / (double)cost.n / 1e6;
        lr->sample_ms_max = (double)cost.v[cost.n - 1] / 1e6;
    }
    bench_lat_free(&cost);
    int faulted = 0;
    evl_proj_status *st;
    size_t n;
    if (evl_proj_status_get(eng, NULL, &st, &n) == EVL_OK) {
        for (size_t i = 0; i < n && i < lr->n; i++) {
            snprintf(lr->p[i].state, sizeof lr->p[i].state, "%s", evl_proj_state_name(st[i].state));
            lr->p[i].applied = st[i].events_applied;
            if (st[i].state == EVL_PROJ_FAULTED) {
                faulted = 1;
                set_err(lr->error, sizeof lr->error, "%s faulted: %s", st[i].name, st[i].error ? st[i].error : "");
            }
        }
        evl_proj_status_free(st, n);
    }
    for (size_t i = 0; i < lr->n; i++) {
        lag_proj *lp = &lr->p[i];
        bench_lat_sort(&lp->ev);
        bench_lat_sort(&lp->ms);
        lp->p50_ev = bench_percentile(lp->ev.v, lp->ev.n, 50);
        lp->p99_ev = bench_percentile(lp->ev.v, lp->ev.n, 99);
        lp->max_ev = lp->ev.n ? lp->ev.v[lp->ev.n - 1] : 0;
        lp->p50_ns = bench_percentile(lp->ms.v, lp->ms.n, 50);
        lp->p99_ns = bench_percentile(lp->ms.v, lp->ms.n, 99);
        lp->max_ns = lp->ms.n ? lp->ms.v[lp->ms.n - 1] : 0;
        bench_lat_free(&lp->ev);
        bench_lat_free(&lp->ms);
    }
    if (pc.errors)
        set_err(lr->error, sizeof lr->error, "append: %s", pc.error[0] ? pc.error : "failed");
    if (rc != EVL_OK)
        set_err(lr->error, sizeof lr->error, "projections did not catch up: %s", evl_strerror(rc));
    lr->valid = !pc.errors && rc == EVL_OK && !faulted && lr->samples > 0 && !g_interrupted;
out:
    evl_proj_close(eng);
    if (watching)
        evl_log_unwatch(log, on_commit_stamp, &sp);
    evl_log_close(log);
    free(sp.ns);
    drop_rundir();
}

/* ----------------------------------------------------------- the report */

/** Mark, per projection, the batch size at which evlog was fastest. */
static void mark_best(apply_res *ar, int n)
{
    for (int i = 0; i < n; i++) {
        int b = i;
        for (int j = 0; j < n; j++)
            if (ar[j].proj == ar[i].proj && ar[j].ev_med[SYS_EVLOG] > ar[b].ev_med[SYS_EVLOG])
                b = j;
        ar[i].best = b == i;
    }
}

static int ratio_met(const apply_res *ar)
{
    return ar->ratio_med >= RATIO_TARGET;
}

static int jobs_met(const apply_res *ar)
{
    return ar->ev_med[SYS_EVLOG] >= JOBS_TARGET;
}

static void print_apply(apply_res *ars, int n)
{
    bench_table t;
    enum { NCOL = 10 };
    bench_table_init(&t, NCOL);
    size_t h = bench_table_row(&t);
    const char *hdr[NCOL] = {"projection", "events", "matched", "batch", "evlog ev/s",
                             "limit ev/s", "ratio per round", "median", "cpu ratio", "tables"};
    for (size_t i = 0; i < NCOL; i++)
        bench_table_set(&t, h, i, "%s", hdr[i]);
    for (int i = 0; i < n; i++) {
        apply_res *ar = &ars[i];
        size_t r = bench_table_row(&t);
        bench_table_set(&t, r, 0, "%s", CORE[ar->proj].name);
        bench_table_set(&t, r, 1, "%" PRIu64, ar->events);
        bench_table_set(&t, r, 2, has(SYS_LIMIT) ? "%" PRIu64 : "-", ar->matched);
        bench_table_set(&t, r, 3, "%d", ar->batch);
        for (size_t c = 4; c < NCOL; c++)
            bench_table_set(&t, r, c, "-");
        if (has(SYS_EVLOG))
            bench_table_set(&t, r, 4, "%.0f", ar->ev_med[SYS_EVLOG]);
        if (has(SYS_LIMIT))
            bench_table_set(&t, r, 5, "%.0f", ar->ev_med[SYS_LIMIT]);
        if (both()) {
            char rounds[BENCH_CELL] = "";
            size_t off = 0;
            for (int k = 0; k < ar->rounds && off < sizeof rounds; k++)
                off += (size_t)snprintf(rounds + off, sizeof rounds - off, "%s%.2fx", k ? " " : "",
                                        ar->ratio[k]);
            bench_table_set(&t, r, 6, "%s", rounds);
            bench_table_set(&t, r, 7, "%.2fx", ar->ratio_med);
            bench_table_set(&t, r, 8, "%.2fx", ar->cpu_ratio_med);
            bench_table_set(&t, r, 9, "%s", ar->same_rows ? "same" : "DIFFER");
        }
        char tail[200] = "";
        if (ar->best && both())
            snprintf(tail, sizeof tail, "<== TARGET (best batch: >= %.1fx limit): %s", RATIO_TARGET,
                     ratio_met(ar) ? "MET" : "NOT MET");
        if (ar->best && has(SYS_EVLOG) && strcmp(CORE[ar->proj].name, "jobs") == 0)
            snprintf(tail + strlen(tail), sizeof tail - strlen(tail), "%s<== TARGET (>= %.0f ev/s): %s",
                     tail[0] ? "  " : "", JOBS_TARGET, jobs_met(ar) ? "MET" : "NOT MET");
        if (!ar->all_valid)
            snprintf(tail + strlen(tail), sizeof tail - strlen(tail), "%s[INVALID: see stderr]",
                     tail[0] ? " " : "");
        if (tail[0])
            bench_table_tail(&t, r, tail);
    }
    bench_table_print(&t, stdout);
    bench_table_free(&t);
}

static void print_lag(lag_res *lrs, int n)
{
    bench_table t;
    enum { NCOL = 12 };
    bench_table_init(&t, NCOL);
    size_t h = bench_table_row(&t);
    const char *hdr[NCOL] = {"set", "rate ev/s", "achieved", "projection", "applied", "lag p50 ev",
                             "p99 ev", "max ev", "lag p50 ms", "p99 ms", "max ms", "drain ms"};
    for (size_t i = 0; i < NCOL; i++)
        bench_table_set(&t, h, i, "%s", hdr[i]);
    for (int i = 0; i < n; i++) {
        lag_res *lr = &lrs[i];
        for (size_t j = 0; j < lr->n; j++) {
            const lag_proj *lp = &lr->p[j];
            size_t r = bench_table_row(&t);
            bench_table_set(&t, r, 0, "%s", lr->set == LAG_CORE ? "core" : "all");
            bench_table_set(&t, r, 1, "%d", lr->rate);
            bench_table_set(&t, r, 2, "%.0f", lr->achieved);
            bench_table_set(&t, r, 3, "%s%s", lp->name, lp->core ? "" : " *");
            bench_table_set(&t, r, 4, "%" PRIu64, lp->applied);
            bench_table_set(&t, r, 5, "%" PRIu64, lp->p50_ev);
            bench_table_set(&t, r, 6, "%" PRIu64, lp->p99_ev);
            bench_table_set(&t, r, 7, "%" PRIu64, lp->max_ev);
            bench_table_set(&t, r, 8, "%.1f", (double)lp->p50_ns / 1e6);
            bench_table_set(&t, r, 9, "%.1f", (double)lp->p99_ns / 1e6);
            bench_table_set(&t, r, 10, "%.1f", (double)lp->max_ns / 1e6);
            bench_table_set(&t, r, 11, "%.1f", lr->drain_ms);
            if (!lr->valid)
                bench_table_tail(&t, r, "[INVALID: see stderr]");
        }
    }
    bench_table_print(&t, stdout);
    bench_table_free(&t);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', f);
        fputc((unsigned char)*p < 0x20 ? ' ' : *p, f);
    }
    fputc('"', f);
}

static int write_json(const char *file, apply_res *ars, int na, lag_res *lrs, int nl, double total_s)
{
    FILE *f = fopen(file, "w");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s: %s\n", file, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"benchmark\": \"project\",\n  \"evlog_version\": \"%s\",\n", EVL_VERSION_STRING);
    fprintf(f, "  \"sqlite_version\": \"%s\",\n  \"cpus\": %ld,\n", sqlite3_libversion(),
            sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(f, "  \"events\": %" PRIu64 ",\n  \"rounds\": %d,\n  \"quick\": %s,\n  \"seed\": %" PRIu64 ",\n",
            opt.events, opt.rounds, opt.quick ? "true" : "false", opt.seed);
    fprintf(f, "  \"total_seconds\": %.1f,\n", total_s);
    fprintf(f, "  \"targets\": {\"ratio_at_best_batch\": %.2f, \"jobs_events_per_s\": %.0f},\n", RATIO_TARGET,
            JOBS_TARGET);
    fputs("  \"apply\": [\n", f);
    for (int i = 0; i < na; i++) {
        apply_res *ar = &ars[i];
        fprintf(f, "    {\"projection\": \"%s\", \"services\": \"%s\", \"events\": %" PRIu64
                   ", \"matched\": %" PRIu64 ", \"statements\": %" PRIu64 ", \"batch\": %d, \"best_batch\": %s, "
                   "\"valid\": %s,\n",
                CORE[ar->proj].name, evl_gen_service_name(CORE[ar->proj].services), ar->events, ar->matched,
                ar->ops, ar->batch, ar->best ? "true" : "false", ar->all_valid ? "true" : "false");
        for (int s = 0; s < 2; s++)
            if (has(s))
                fprintf(f, "     \"%s_events_per_s\": %.1f,\n", sys_name[s], ar->ev_med[s]);
        if (both()) {
            fputs("     \"ratio_per_round\": [", f);
            for (int k = 0; k < ar->rounds; k++)
                fprintf(f, "%s%.4f", k ? ", " : "", ar->ratio[k]);
            fprintf(f, "],\n     \"median_ratio\": %.4f, \"median_cpu_ratio\": %.4f, \"same_tables\": %s,\n",
                    ar->ratio_med, ar->cpu_ratio_med, ar->same_rows ? "true" : "false");
            if (ar->best)
                fprintf(f, "     \"ratio_target_met\": %s,\n", ratio_met(ar) ? "true" : "false");
        }
        if (ar->best && has(SYS_EVLOG) && strcmp(CORE[ar->proj].name, "jobs") == 0)
            fprintf(f, "     \"jobs_target_met\": %s,\n", jobs_met(ar) ? "true" : "false");
        fputs("     \"rounds\": [", f);
        for (int k = 0; k < ar->rounds; k++) {
            fputs(k ? ",\n       {" : "\n       {", f);
            int first = 1;
            for (int s = 0; s < 2; s++) {
                if (!has(s))
                    continue;
                const apply_round *r = &ar->r[s][k];
                fprintf(f, "%s\"%s\": {\"valid\": %s, \"seconds\": %.6f, \"cpu_seconds\": %.6f, "
                           "\"events_per_s\": %.1f, \"rows\": %" PRIu64,
                        first ? "" : ", ", sys_name[s], r->valid ? "true" : "false", r->secs, r->cpu_secs,
                        r->events_per_s, r->rows);
                if (r->error[0]) {
                    fputs(", \"error\": ", f);
                    json_str(f, r->error);
                }
                fputc('}', f);
                first = 0;
            }
            fputc('}', f);
        }
        fprintf(f, "]}%s\n", i + 1 < na ? "," : "");
    }
    fputs("  ],\n  \"lag\": [\n", f);
    for (int i = 0; i < nl; i++) {
        lag_res *lr = &lrs[i];
        fprintf(f, "    {\"rate\": %d, \"seconds\": %.2f, \"set\": \"%s\", \"valid\": %s, "
                   "\"appended\": %" PRIu64 ", \"achieved_rate\": %.1f, \"samples\": %zu, "
                   "\"sample_cost_ms_mean\": %.3f, \"sample_cost_ms_max\": %.3f, \"drain_ms\": %.1f,",
                lr->rate, lr->seconds, lr->set == LAG_CORE ? "core" : "all", lr->valid ? "true" : "false", lr->sent,
                lr->achieved, lr->samples, lr->sample_ms_mean, lr->sample_ms_max, lr->drain_ms);
        if (lr->error[0]) {
            fputs(" \"error\": ", f);
            json_str(f, lr->error);
            fputc(',', f);
        }
        fputs("\n     \"projections\": [", f);
        for (size_t j = 0; j < lr->n; j++) {
            const lag_proj *lp = &lr->p[j];
            fprintf(f, "%s\n       {\"name\": \"%s\", \"core\": %s, \"applied\": %" PRIu64 ", \"state\": \"%s\", "
                       "\"lag_events\": {\"p50\": %" PRIu64 ", \"p99\": %" PRIu64 ", \"max\": %" PRIu64 "}, "
                       "\"lag_ms\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}}",
                    j ? "," : "", lp->name, lp->core ? "true" : "false", lp->applied, lp->state, lp->p50_ev,
                    lp->p99_ev, lp->max_ev, (double)lp->p50_ns / 1e6, (double)lp->p99_ns / 1e6,
                    (double)lp->max_ns / 1e6);
        }
        fprintf(f, "]}%s\n", i + 1 < nl ? "," : "");
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
            "usage: project [--events N] [--quick] [--rounds N] [--json FILE] [--batch 1,100,10000]\n"
            "               [--projection jobs,tasks,nodes,runs] [--rate 20000,50000] [--lag-seconds S]\n"
            "               [--lag-set core,all] [--only evlog|limit] [--no-lag] [--no-apply] [--seed N]\n"
            "  --events N       generated events per projection (default 200000; 50000 with --quick)\n"
            "  --quick          50k events, 1 round, 2 s lag runs\n"
            "  --rounds N       evlog/limit rounds per batch size, run A B A B (default 3; 1 quick)\n"
            "  --json FILE      also write the results as JSON\n"
            "  --batch L        events per SQLite transaction (comma list, default 1,100,10000)\n"
            "  --projection L   core projections to measure (default jobs,tasks,nodes,runs)\n"
            "  --rate L         sustained append rates of the lag runs, events/s (default 20000,50000)\n"
            "  --lag-seconds S  duration of each lag run (default 5; 2 with --quick)\n"
            "  --lag-set L      engines of the lag runs: core (the four core projections), all (every\n"
            "                   built-in, fed every service) or core,all (default)\n"
            "  --only SYS       apply runs of evlog only or of the limit only (for profiling)\n"
            "  --no-lag, --no-apply  skip a part\n"
            "  --no-readahead  apply in the projector's thread alone (no reader thread)\n"
            "  --seed N         generator seed (default 1)\n"
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

static int parse_projections(const char *s)
{
    char buf[256];
    opt.n_proj = 0;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < N_CORE && strcmp(CORE[i].name, tok) != 0)
            i++;
        if (i == N_CORE || opt.n_proj == (int)N_CORE)
            return -1;
        opt.proj[opt.n_proj++] = (int)i;
    }
    return opt.n_proj ? 0 : -1;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"events", required_argument, 0, 'e'},     {"quick", no_argument, 0, 'q'},
        {"rounds", required_argument, 0, 'r'},     {"json", required_argument, 0, 'j'},
        {"batch", required_argument, 0, 'b'},      {"projection", required_argument, 0, 'p'},
        {"rate", required_argument, 0, 'R'},       {"lag-seconds", required_argument, 0, 'L'},
        {"lag-set", required_argument, 0, 'c'},         {"only", required_argument, 0, 'o'},
        {"no-readahead", no_argument, 0, 'H'},
        {"no-lag", no_argument, 0, 'N'},           {"no-apply", no_argument, 0, 'A'},
        {"seed", required_argument, 0, 'S'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int rounds = 0;
    uint64_t events = 0;
    double lag_s = 0;
    opt.only = -1;
    opt.apply = opt.lag = 1;
    opt.seed = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'e':
            events = strtoull(optarg, &end, 10);
            if (*end || events < 1 || events > 100000000) {
                fprintf(stderr, "project: --events must be 1..100000000\n");
                return 2;
            }
            break;
        case 'q': opt.quick = 1; break;
        case 'H': opt.no_readahead = 1; break;
        case 'r':
            rounds = atoi(optarg);
            if (rounds < 1 || rounds > MAX_ROUNDS) {
                fprintf(stderr, "project: --rounds must be 1..%d\n", MAX_ROUNDS);
                return 2;
            }
            break;
        case 'j': opt.json = optarg; break;
        case 'b':
            if ((opt.n_batches = parse_list(optarg, opt.batches, MAX_LIST, 1, 1000000)) <= 0) {
                fprintf(stderr, "project: bad --batch '%s'\n", optarg);
                return 2;
            }
            break;
        case 'p':
            if (parse_projections(optarg) != 0) {
                fprintf(stderr, "project: --projection takes a list of jobs, tasks, nodes, runs\n");
                return 2;
            }
            break;
        case 'R':
            if ((opt.n_rates = parse_list(optarg, opt.rates, MAX_LIST, 1, 10000000)) <= 0) {
                fprintf(stderr, "project: bad --rate '%s'\n", optarg);
                return 2;
            }
            break;
        case 'L':
            lag_s = strtod(optarg, &end);
            if (*end || !(lag_s >= 0.2 && lag_s <= 3600)) {
                fprintf(stderr, "project: bad --lag-seconds '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c':
            opt.lag_sets = 0;
            if (strcmp(optarg, "core") == 0)
                opt.lag_sets = LAG_CORE;
            else if (strcmp(optarg, "all") == 0)
                opt.lag_sets = LAG_ALL;
            else if (strcmp(optarg, "core,all") == 0 || strcmp(optarg, "all,core") == 0)
                opt.lag_sets = LAG_CORE | LAG_ALL;
            else {
                fprintf(stderr, "project: --lag-set takes core, all or core,all\n");
                return 2;
            }
            break;
        case 'o':
            if (strcmp(optarg, "evlog") == 0)
                opt.only = SYS_EVLOG;
            else if (strcmp(optarg, "limit") == 0)
                opt.only = SYS_LIMIT;
            else {
                fprintf(stderr, "project: --only takes evlog or limit\n");
                return 2;
            }
            break;
        case 'N': opt.lag = 0; break;
        case 'A': opt.apply = 0; break;
        case 'S':
            opt.seed = strtoull(optarg, &end, 10);
            if (*end) {
                fprintf(stderr, "project: bad --seed '%s'\n", optarg);
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
    opt.events = events ? events : opt.quick ? 50000 : 200000;
    opt.rounds = rounds ? rounds : opt.quick ? 1 : 3;
    opt.lag_seconds = lag_s > 0 ? lag_s : opt.quick ? 2.0 : 5.0;
    if (!opt.lag_sets)
        opt.lag_sets = LAG_CORE | LAG_ALL;
    if (!opt.n_batches) {
        static const int b[] = {1, 100, 10000};
        memcpy(opt.batches, b, sizeof b);
        opt.n_batches = 3;
    }
    if (!opt.n_rates) {
        opt.rates[0] = 20000;
        opt.rates[1] = 50000;
        opt.n_rates = 2;
    }
    if (!opt.n_proj)
        for (size_t i = 0; i < N_CORE; i++)
            opt.proj[opt.n_proj++] = (int)i;
    const char *td = getenv("TMPDIR");
    opt.tmpbase = td && *td ? td : "/tmp";

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    printf("evlog %s bench/project: %ld CPUs, SQLite %s, %" PRIu64 " events per projection, %d round%s "
           "(evlog, limit alternately), batches",
           EVL_VERSION_STRING, sysconf(_SC_NPROCESSORS_ONLN), sqlite3_libversion(), opt.events, opt.rounds,
           opt.rounds == 1 ? "" : "s");
    for (int i = 0; i < opt.n_batches; i++)
        printf("%s%d", i ? "," : " ", opt.batches[i]);
    printf(", lag runs %.1f s at", opt.lag_seconds);
    for (int i = 0; i < opt.n_rates; i++)
        printf("%s%d", i ? "," : " ", opt.rates[i]);
    printf(" ev/s, seed %" PRIu64 ", temp dir %s\n", opt.seed, opt.tmpbase);
    fflush(stdout);

    uint64_t t_start = bench_now_ns();
    int failed = 0, na = 0, nl = 0;
    apply_res *ars = calloc((size_t)(opt.n_proj * opt.n_batches), sizeof *ars);
    lag_res *lrs = calloc((size_t)opt.n_rates * 2, sizeof *lrs);
    if (!ars || !lrs) {
        fprintf(stderr, "project: out of memory\n");
        return 1;
    }
    for (int i = 0; opt.apply && i < opt.n_proj && !g_interrupted; i++) {
        if (apply_projection(opt.proj[i], ars + na) != 0)
            failed = 1;
        na += opt.n_batches;
    }
    for (int set = LAG_CORE; opt.lag && set <= LAG_ALL; set <<= 1)
        for (int i = 0; (opt.lag_sets & set) && i < opt.n_rates && !g_interrupted; i++) {
            lag_res *lr = &lrs[nl++];
            lag_run(set, opt.rates[i], lr);
            fprintf(stderr, "  lag (%s) at %d ev/s: %.0f ev/s achieved, %zu samples, status_get %.2f ms mean, "
                    "drain %.1f ms%s%s\n",
                    set == LAG_CORE ? "core" : "all", lr->rate, lr->achieved, lr->samples, lr->sample_ms_mean,
                    lr->drain_ms, lr->valid ? "" : "  INVALID: ", lr->valid ? "" : lr->error);
            if (!lr->valid)
                failed = 1;
        }
    if (g_interrupted) {
        fprintf(stderr, "project: interrupted\n");
        return 130;
    }
    double total_s = (double)(bench_now_ns() - t_start) / 1e9;
    if (na) {
        mark_best(ars, na);
        printf("\nApply rate: events/s from engine start until the checkpoint reaches the head (evlog) vs "
               "the same statements and values bound and stepped by a plain loop (limit); medians over "
               "rounds\n");
        print_apply(ars, na);
        for (int i = 0; i < na; i++) {
            const apply_res *ar = &ars[i];
            if (!ar->best)
                continue;
            if (both())
                printf("%sTARGET  %-5s at its best batch (%d): evlog %.0f ev/s = %.2fx the limit %.0f ev/s "
                       "(target >= %.1fx): %s\n",
                       i == 0 ? "\n" : "", CORE[ar->proj].name, ar->batch, ar->ev_med[SYS_EVLOG],
                       ar->ratio_med, ar->ev_med[SYS_LIMIT], RATIO_TARGET, ratio_met(ar) ? "MET" : "NOT MET");
            if (has(SYS_EVLOG) && strcmp(CORE[ar->proj].name, "jobs") == 0)
                printf("TARGET  jobs lifecycle mix: evlog %.0f ev/s (target >= %.0f ev/s): %s\n",
                       ar->ev_med[SYS_EVLOG], JOBS_TARGET, jobs_met(ar) ? "MET" : "NOT MET");
        }
    }
    if (nl) {
        printf("\nLag under sustained append load (sync none, sampled every 100 ms): lag ev = head - checkpoint, "
               "lag ms = age of the oldest unapplied event; set core = the four core projections fed jobs, tasks "
               "and runs, all = every built-in projection fed every service (* = not a core projection)\n");
        print_lag(lrs, nl);
    }
    printf("(total %.0f s)\n", total_s);
    if (opt.json && write_json(opt.json, ars, na, lrs, nl, total_s) != 0)
        failed = 1;
    free(ars);
    free(lrs);
    return failed ? 1 : 0;
}
