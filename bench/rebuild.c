/** @file rebuild.c
 * @brief bench/rebuild: how fast a projection is rebuilt from the log, beside
 * the log scan alone, the live projector, and the limit — the same SQL with
 * precomputed values run by a plain C loop into SQLite (limit.c).
 *
 * One log of N generated events (the services that feed jobs, tasks, nodes
 * and runs), appended with sync none to a fresh data dir.  Then:
 *  - scan: every event read with evl_iter and its data map walked with
 *    evl_mp (read + decode, no SQL);
 *  - for each set (one projection alone; the four core ones together),
 *    rounds of: live (a fresh engine with only that set, timed until every
 *    checkpoint is the head), rebuild (evl_proj_rebuild of each, timed until
 *    evl_proj_rebuild_wait returns for all), limit (each projection's
 *    statements, one after the other: the set's limit is the sum).
 * The three must build identical tables (every row hashed).  Each phase
 * starts on a freshly opened log (so file pages mapped by the one before do
 * not count) and has its own peak RSS (rss.h).  See bench/REBUILD.md.
 */
#include "rebuild.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "evlog/evlog.h"
#include "evlog/log.h"
#include "evlog/mp.h"
#include "evlog/proj.h"
#include "gen.h"
#include "limit.h"

#define SERVICES (EVL_GEN_JOBS | EVL_GEN_TASKS | EVL_GEN_RUNS)
#define WAIT_MS (3 * 60 * 60 * 1000) /* 10M events on a loaded machine: minutes, not hours */

static const char *const CORE[] = {"jobs", "tasks", "nodes", "runs"};
#define N_CORE 4

static struct {
    uint64_t events, seed;
    int quick, rounds, sets; /* sets: 1 alone, 2 core, 0 none (the scan only) */
    int live_batch, limit_batch;
    const char *alone, *json, *tmp;
} opt;

static volatile sig_atomic_t g_interrupted;
static char g_rundir[4096], g_data[4200];
static evl_log *g_log;

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void cleanup(void)
{
    bench_rm_rf(g_rundir);
}

/* Let the disk settle before a timed phase, so that no phase pays for the
 * writeback of the one before. */
static void settle(void)
{
    sync();
}

/* A fresh handle for each phase: closing the log unmaps it, so the file
 * pages an earlier phase touched leave the process's RSS. */
static int reopen_log(void)
{
    evl_log_close(g_log);
    g_log = NULL;
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    int rc = evl_log_open(g_data, &lo, &g_log);
    if (rc)
        fprintf(stderr, "rebuild: evl_log_open %s: %s\n", g_data, evl_strerror(rc));
    return rc ? -1 : 0;
}

/* ------------------------------------------------------ filling the log */

/* Asynchronous appends, a bounded number in flight: one thread keeps the
 * writer's queue full without waiting for each commit. */
typedef struct inflight {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
    uint64_t acked, errors;
    char error[160];
} inflight;

static void on_appended(void *arg, const evl_append_result *res)
{
    inflight *f = arg;
    pthread_mutex_lock(&f->mu);
    if (res->err) {
        f->errors++;
        set_err(f->error, sizeof f->error, "append: %s", evl_strerror(res->err));
    } else {
        f->acked += res->n_acks;
    }
    f->n--;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int fill_log(uint64_t n, uint64_t *head)
{
    evl_gen *g;
    inflight f = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    int rc = evl_gen_new(opt.seed, SERVICES, &g);
    if (rc) {
        fprintf(stderr, "rebuild: evl_gen_new: %s\n", evl_strerror(rc));
        return -1;
    }
    uint64_t sent = 0, next_note = 1000000;
    while (sent < n && !g_interrupted) {
        const evl_stream_in *s;
        size_t ns;
        if ((rc = evl_gen_next(g, &s, &ns)) != EVL_OK)
            break;
        pthread_mutex_lock(&f.mu);
        while (f.n >= 4096)
            pthread_cond_wait(&f.cv, &f.mu);
        f.n++;
        pthread_mutex_unlock(&f.mu);
        if ((rc = evl_log_append_async(g_log, s, ns, on_appended, &f)) != EVL_OK) {
            pthread_mutex_lock(&f.mu);
            f.n--;
            pthread_mutex_unlock(&f.mu);
            break;
        }
        for (size_t i = 0; i < ns; i++)
            sent += s[i].n_events;
        if (sent >= next_note) {
            fprintf(stderr, "  appended %" PRIu64 " events\n", sent);
            next_note += 1000000;
        }
    }
    pthread_mutex_lock(&f.mu);
    while (f.n)
        pthread_cond_wait(&f.cv, &f.mu);
    pthread_mutex_unlock(&f.mu);
    evl_gen_free(g);
    *head = evl_log_head(g_log);
    if (rc)
        fprintf(stderr, "rebuild: filling the log: %s\n", evl_strerror(rc));
    if (f.errors)
        fprintf(stderr, "rebuild: filling the log: %s\n", f.error);
    return rc || f.errors || g_interrupted || *head != f.acked ? -1 : 0;
}

static uint64_t g_du;
static int du_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path, (void)flag, (void)ftw;
    g_du += (uint64_t)sb->st_blocks * 512u;
    return 0;
}

/* ------------------------------------------------------------- the scan */

/* Every value of the data map: scalars read, containers skipped whole.
 * Returns the number of fields, or -1 when the map does not decode. */
static long walk_map(const uint8_t *p, size_t len)
{
    evl_mp m = {p, p + len};
    evl_mp_val v;
    if (!len)
        return 0;
    if (evl_mp_read(&m, &v) || v.kind != EVL_MP_MAP)
        return -1;
    for (uint32_t i = 0; i < v.v.n; i++) {
        evl_mp_val k, x;
        if (evl_mp_read(&m, &k) || k.kind != EVL_MP_STR)
            return -1;
        evl_mp at = m;
        if (evl_mp_read(&m, &x))
            return -1;
        if ((x.kind == EVL_MP_ARRAY || x.kind == EVL_MP_MAP) && evl_mp_skip(&at, 64) == EVL_OK)
            m = at;
        else if (x.kind == EVL_MP_ARRAY || x.kind == EVL_MP_MAP)
            return -1;
    }
    return (long)v.v.n;
}

static void scan_round(rb_phase *r, uint64_t head, uint64_t *fields)
{
    rss_meter mt;
    evl_iter *it = NULL;
    evl_event ev;
    uint64_t n = 0, f = 0;
    int rc;
    if (reopen_log() != 0) {
        set_err(r->error, sizeof r->error, "cannot open the log");
        return;
    }
    settle();
    rss_begin(&mt, &r->rss);
    double c0 = cpu_now();
    uint64_t t0 = bench_now_ns();
    rc = evl_iter_open(g_log, &(evl_query){.from_position = 1}, &it);
    while (rc == EVL_OK && (rc = evl_iter_next(it, &ev)) == EVL_OK) {
        long k = walk_map(ev.data, ev.data_len);
        if (k < 0) {
            rc = EVL_EMSGPACK;
            break;
        }
        f += (uint64_t)k;
        n++;
    }
    evl_iter_close(it);
    uint64_t t1 = bench_now_ns();
    r->cpu_secs = cpu_now() - c0;
    rss_end(&mt, &r->rss);
    r->secs = (double)(t1 - t0) / 1e9;
    r->events_per_s = r->secs > 0 ? (double)n / r->secs : 0;
    *fields = f;
    if (rc != EVL_END)
        set_err(r->error, sizeof r->error, "scan: %s at event %" PRIu64, evl_strerror(rc), n + 1);
    else if (n != head)
        set_err(r->error, sizeof r->error, "scan: %" PRIu64 " events, head %" PRIu64, n, head);
    r->valid = !r->error[0] && !g_interrupted;
}

/* ----------------------------------------------------------- the engine */

/* The engine's report lines go to stderr; a finished rebuild's own time is
 * kept, to tell each projection's share of a set's rebuild. */
static pthread_mutex_t g_rep_mu = PTHREAD_MUTEX_INITIALIZER;
static double g_rep_secs[RB_MAX_PROJ];
static const rb_set *g_rep_set;

static void on_report(void *arg, const char *line)
{
    (void)arg;
    char name[EVL_PROJ_MAX_NAME + 1];
    unsigned long long pos;
    double secs;
    fprintf(stderr, "  engine: %s\n", line);
    if (sscanf(line, "projection %63[^:]: rebuilt to position %llu in %lf s", name, &pos, &secs) != 3)
        return;
    pthread_mutex_lock(&g_rep_mu);
    for (int i = 0; g_rep_set && i < g_rep_set->n_proj; i++)
        if (strcmp(g_rep_set->proj[i], name) == 0)
            g_rep_secs[i] = secs;
    pthread_mutex_unlock(&g_rep_mu);
}

/* Without their `-- @history` lines: see bench_builtin(). */
static const evl_proj_builtin *builtin(const char *name)
{
    return bench_builtin(name);
}

/* The set's built-in specs written into a directory of their own, so that
 * an engine opened with no_builtin and that directory runs the set alone. */
static int write_specs(const rb_set *s, char *dir, size_t n)
{
    snprintf(dir, n, "%s/specs-%s", g_rundir, s->name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "rebuild: mkdir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < s->n_proj; i++) {
        const evl_proj_builtin *b = builtin(s->proj[i]);
        char path[4400];
        if (!b)
            return -1;
        snprintf(path, sizeof path, "%s/%s", dir, b->file);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(b->text, 1, b->len, f) != b->len || fclose(f) != 0) {
            fprintf(stderr, "rebuild: cannot write %s: %s\n", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int open_engine(const char *specdir, evl_proj_engine **eng)
{
    const char *dirs[1] = {specdir};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1, .batch_events = (size_t)opt.live_batch,
                           .report = on_report};
    return evl_proj_open(g_log, &po, eng);
}

/* evl_proj_wait in slices, so that Ctrl-C is noticed. */
static int wait_head(evl_proj_engine *eng, const char *name, uint64_t head)
{
    int rc = EVL_ETIMEDOUT;
    for (int ms = 0; rc == EVL_ETIMEDOUT && ms < WAIT_MS && !g_interrupted; ms += 1000)
        rc = evl_proj_wait(eng, name, head, 1000);
    return rc;
}

static int wait_rebuilt(evl_proj_engine *eng, const char *name)
{
    int rc = EVL_ETIMEDOUT;
    for (int ms = 0; rc == EVL_ETIMEDOUT && ms < WAIT_MS && !g_interrupted; ms += 1000)
        rc = evl_proj_rebuild_wait(eng, name, 1000);
    return rc;
}

/* Every projection of the set at the head, live, and (after a rebuild)
 * in a new generation. */
static int check_status(evl_proj_engine *eng, const rb_set *s, uint64_t head, int rebuilt, char *err, size_t n)
{
    for (int i = 0; i < s->n_proj; i++) {
        evl_proj_status *st;
        size_t k;
        if (evl_proj_status_get(eng, s->proj[i], &st, &k) != EVL_OK || k != 1) {
            set_err(err, n, "%s: no status", s->proj[i]);
            return -1;
        }
        int bad = st->state == EVL_PROJ_FAULTED || st->checkpoint != head || (rebuilt && st->generation < 1) ||
                  st->rebuild_error;
        if (bad)
            set_err(err, n, "%s: %s at %" PRIu64 ", generation %" PRIu64 ": %s", s->proj[i],
                    evl_proj_state_name(st->state), st->checkpoint, st->generation,
                    st->rebuild_error ? st->rebuild_error : st->error ? st->error : "");
        evl_proj_status_free(st, k);
        if (bad)
            return -1;
    }
    return 0;
}

static int digest_all(evl_proj_engine *eng, rb_set *s, int k, int which, char *err, size_t n)
{
    for (int i = 0; i < s->n_proj; i++) {
        evl_proj_spec *spec;
        const evl_proj_builtin *b = builtin(s->proj[i]);
        const char *path = evl_proj_db_path(eng, s->proj[i]);
        rb_proj_fig *pf = &s->pf[i][k];
        char e2[256];
        if (!b || !path || evl_proj_spec_parse(b->text, b->len, b->file, &spec, e2, sizeof e2) != EVL_OK) {
            set_err(err, n, "%s: no spec or file", s->proj[i]);
            return -1;
        }
        int rc = which == PH_LIVE ? table_digest(path, spec, &pf->live_digest, &pf->live_rows)
                                  : table_digest(path, spec, &pf->rebuild_digest, &pf->rebuild_rows);
        evl_proj_spec_free(spec);
        if (rc) {
            set_err(err, n, "cannot read %s", path);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ the rounds */

static void live_round(rb_set *s, int k, const char *specdir, uint64_t head)
{
    rb_phase *r = &s->ph[PH_LIVE][k];
    char projdir[4300];
    evl_proj_engine *eng = NULL;
    rss_meter mt;
    int rc = EVL_OK;
    if (reopen_log() != 0) {
        set_err(r->error, sizeof r->error, "cannot open the log");
        return;
    }
    snprintf(projdir, sizeof projdir, "%s/projections", g_data);
    bench_rm_rf(projdir); /* every round builds from nothing */
    settle();
    rss_begin(&mt, &r->rss);
    double c0 = cpu_now();
    uint64_t t0 = bench_now_ns();
    rc = open_engine(specdir, &eng);
    for (int i = 0; rc == EVL_OK && i < s->n_proj; i++)
        rc = wait_head(eng, s->proj[i], head);
    uint64_t t1 = bench_now_ns();
    r->cpu_secs = cpu_now() - c0;
    rss_end(&mt, &r->rss);
    r->secs = (double)(t1 - t0) / 1e9;
    r->events_per_s = r->secs > 0 ? (double)head / r->secs : 0;
    if (rc)
        set_err(r->error, sizeof r->error, "live: %s", evl_strerror(rc));
    else if (check_status(eng, s, head, 0, r->error, sizeof r->error) == 0)
        digest_all(eng, s, k, PH_LIVE, r->error, sizeof r->error);
    evl_proj_close(eng);
    r->valid = !r->error[0] && !g_interrupted;
}

/* On the files the live round of the same round left: a rebuild replaces
 * tables that serve, as it does in a server. */
static void rebuild_round(rb_set *s, int k, const char *specdir, uint64_t head)
{
    rb_phase *r = &s->ph[PH_REBUILD][k];
    evl_proj_engine *eng = NULL;
    rss_meter mt;
    int rc;
    if (reopen_log() != 0) {
        set_err(r->error, sizeof r->error, "cannot open the log");
        return;
    }
    if ((rc = open_engine(specdir, &eng)) != EVL_OK) {
        set_err(r->error, sizeof r->error, "evl_proj_open: %s", evl_strerror(rc));
        return;
    }
    for (int i = 0; rc == EVL_OK && i < s->n_proj; i++)
        rc = wait_head(eng, s->proj[i], head);
    pthread_mutex_lock(&g_rep_mu);
    g_rep_set = s;
    memset(g_rep_secs, 0, sizeof g_rep_secs);
    pthread_mutex_unlock(&g_rep_mu);
    settle();
    rss_begin(&mt, &r->rss);
    double c0 = cpu_now();
    uint64_t t0 = bench_now_ns();
    for (int i = 0; rc == EVL_OK && i < s->n_proj; i++)
        rc = evl_proj_rebuild(eng, s->proj[i]);
    for (int i = 0; rc == EVL_OK && i < s->n_proj; i++)
        rc = wait_rebuilt(eng, s->proj[i]);
    uint64_t t1 = bench_now_ns();
    r->cpu_secs = cpu_now() - c0;
    rss_end(&mt, &r->rss);
    r->secs = (double)(t1 - t0) / 1e9;
    r->events_per_s = r->secs > 0 ? (double)head / r->secs : 0;
    pthread_mutex_lock(&g_rep_mu);
    for (int i = 0; i < s->n_proj; i++)
        s->pf[i][k].rebuild_secs = g_rep_secs[i];
    g_rep_set = NULL;
    pthread_mutex_unlock(&g_rep_mu);
    if (rc)
        set_err(r->error, sizeof r->error, "rebuild: %s", evl_strerror(rc));
    else if (check_status(eng, s, head, 1, r->error, sizeof r->error) == 0)
        digest_all(eng, s, k, PH_REBUILD, r->error, sizeof r->error);
    evl_proj_close(eng);
    r->valid = !r->error[0] && !g_interrupted;
}

/* Each projection's statements in turn, one program in memory at a time
 * (at 10M events the four would take gigabytes): the set's limit is the
 * sum of the timed loops.  Decoding the program is not timed. */
static void limit_round(rb_set *s, int k, uint64_t head)
{
    rb_phase *r = &s->ph[PH_LIMIT][k];
    rss_meter mt;
    if (reopen_log() != 0) {
        set_err(r->error, sizeof r->error, "cannot open the log");
        return;
    }
    rss_begin(&mt, &r->rss);
    for (int i = 0; i < s->n_proj && !r->error[0] && !g_interrupted; i++) {
        rb_proj_fig *pf = &s->pf[i][k];
        const evl_proj_builtin *b = builtin(s->proj[i]);
        evl_proj_spec *spec = NULL;
        program pg;
        char path[4300], e2[256];
        memset(&pg, 0, sizeof pg);
        snprintf(path, sizeof path, "%s/limit-%s.db", g_rundir, s->proj[i]);
        uint64_t b0 = bench_now_ns();
        if (!b || evl_proj_spec_parse(b->text, b->len, b->file, &spec, e2, sizeof e2) != EVL_OK ||
            build_program(g_log, spec, &pg) != 0) {
            set_err(r->error, sizeof r->error, "limit: cannot decode the log for %s", s->proj[i]);
        } else {
            pf->matched = pg.matched;
            pf->statements = pg.n_ops;
            double decode_s = (double)(bench_now_ns() - b0) / 1e9;
            settle();
            if (limit_run(&pg, path, (size_t)opt.limit_batch, &pf->limit_secs, &pf->limit_cpu, r->error,
                          sizeof r->error) == 0 &&
                table_digest(path, spec, &pf->limit_digest, &pf->limit_rows) != 0)
                set_err(r->error, sizeof r->error, "limit: cannot read %s", path);
            r->secs += pf->limit_secs;
            r->cpu_secs += pf->limit_cpu;
            fprintf(stderr, "    limit %-5s %9.0f ev/s  %7.3f s  (%" PRIu64 " events matched, %zu statements, "
                    "decoded in %.1f s, untimed)\n", s->proj[i], pf->limit_secs > 0 ? (double)head / pf->limit_secs : 0,
                    pf->limit_secs, pg.matched, pg.n_ops, decode_s);
        }
        remove_db(path);
        free_program(&pg);
        evl_proj_spec_free(spec);
    }
    rss_end(&mt, &r->rss);
    r->events_per_s = r->secs > 0 ? (double)head / r->secs : 0;
    r->valid = !r->error[0] && !g_interrupted;
}

static void same_tables(rb_set *s, int k)
{
    for (int i = 0; i < s->n_proj; i++) {
        const rb_proj_fig *p = &s->pf[i][k];
        if (p->rebuild_digest != p->live_digest || p->rebuild_rows != p->live_rows ||
            p->limit_digest != p->live_digest || p->limit_rows != p->live_rows) {
            fprintf(stderr, "  %s round %d: DIFFERENT tables: live %016" PRIx64 " (%" PRIu64 " rows), rebuild %016"
                    PRIx64 " (%" PRIu64 "), limit %016" PRIx64 " (%" PRIu64 ")\n", s->proj[i], k + 1,
                    p->live_digest, p->live_rows, p->rebuild_digest, p->rebuild_rows, p->limit_digest,
                    p->limit_rows);
            s->same_tables = 0;
        }
    }
}

static const char *const ph_name[N_PH] = {"live", "rebuild", "limit"};

static void note(const rb_set *s, int ph, int k)
{
    const rb_phase *r = &s->ph[ph][k];
    fprintf(stderr, "  %-5s round %d %-7s %9.0f ev/s  %8.3f s  cpu %8.3f s  peak RSS %6.1f MB (anon %.1f, file %.1f)%s%s\n",
            s->name, k + 1, ph_name[ph], r->events_per_s, r->secs, r->cpu_secs, (double)r->rss.hwm_kb / 1024,
            (double)r->rss.anon_kb / 1024, (double)r->rss.file_kb / 1024, r->valid ? "" : "  INVALID: ",
            r->valid ? "" : r->error);
}

static int run_set(rb_set *s, uint64_t head)
{
    char specdir[4300];
    if (write_specs(s, specdir, sizeof specdir) != 0)
        return -1;
    s->rounds = opt.rounds;
    s->same_tables = 1;
    /* A B C A B C: a drift of the machine hits every system */
    for (int k = 0; k < opt.rounds && !g_interrupted; k++) {
        live_round(s, k, specdir, head);
        note(s, PH_LIVE, k);
        if (s->ph[PH_LIVE][k].valid) {
            rebuild_round(s, k, specdir, head);
            note(s, PH_REBUILD, k);
        }
        limit_round(s, k, head);
        note(s, PH_LIMIT, k);
        same_tables(s, k);
    }
    rb_summarise(s);
    return s->valid && s->same_tables ? 0 : -1;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rebuild [--events N] [--quick] [--set alone|core|both|none] [--projection NAME] [--rounds N]\n"
            "               [--json FILE] [--tmp DIR] [--seed N]\n"
            "  --events N       generated events in the log (default 1000000; 200000 with --quick)\n"
            "  --quick          200k events, 1 round\n"
            "  --set S          alone (one projection), core (jobs, tasks, nodes, runs together), both (default)\n"
            "                   or none (the log scan only)\n"
            "  --projection P   the projection of the alone set: jobs, tasks, nodes or runs (default jobs)\n"
            "  --rounds N       live/rebuild/limit rounds, run A B C A B C (default 2; 1 with --quick)\n"
            "  --json FILE      also write the results as JSON\n"
            "  --tmp DIR        where the scratch data dir is made (default $TMPDIR or /tmp); 10M events\n"
            "                   need several GB there\n"
            "  --seed N         generator seed (default 1)\n");
}

static int parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"events", required_argument, 0, 'e'}, {"quick", no_argument, 0, 'q'},
        {"set", required_argument, 0, 's'},    {"projection", required_argument, 0, 'p'},
        {"rounds", required_argument, 0, 'r'}, {"json", required_argument, 0, 'j'},
        {"tmp", required_argument, 0, 't'},    {"seed", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int c;
    char *end;
    opt.seed = 1;
    opt.sets = 3;
    opt.alone = "jobs";
    opt.live_batch = opt.limit_batch = 10000;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'e':
            opt.events = strtoull(optarg, &end, 10);
            if (*end || opt.events < 1 || opt.events > 1000000000) {
                fprintf(stderr, "rebuild: --events must be 1..1000000000\n");
                return 2;
            }
            break;
        case 'q': opt.quick = 1; break;
        case 's':
            opt.sets = !strcmp(optarg, "alone") ? 1 : !strcmp(optarg, "core") ? 2 : !strcmp(optarg, "both") ? 3
                       : !strcmp(optarg, "none") ? 0 : -1;
            if (opt.sets < 0) {
                fprintf(stderr, "rebuild: --set takes alone, core, both or none\n");
                return 2;
            }
            break;
        case 'p': {
            int i = 0;
            while (i < N_CORE && strcmp(CORE[i], optarg))
                i++;
            if (i == N_CORE) {
                fprintf(stderr, "rebuild: --projection takes jobs, tasks, nodes or runs\n");
                return 2;
            }
            opt.alone = CORE[i];
            break;
        }
        case 'r':
            opt.rounds = atoi(optarg);
            if (opt.rounds < 1 || opt.rounds > RB_MAX_ROUNDS) {
                fprintf(stderr, "rebuild: --rounds must be 1..%d\n", RB_MAX_ROUNDS);
                return 2;
            }
            break;
        case 'j': opt.json = optarg; break;
        case 't': opt.tmp = optarg; break;
        case 'S':
            opt.seed = strtoull(optarg, &end, 10);
            if (*end) {
                fprintf(stderr, "rebuild: bad --seed '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!opt.events)
        opt.events = opt.quick ? 200000 : 1000000;
    if (!opt.rounds)
        opt.rounds = opt.quick ? 1 : 2;
    if (!opt.tmp) {
        const char *td = getenv("TMPDIR");
        opt.tmp = td && *td ? td : "/tmp";
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv), failed = 0, n = 0;
    if (rc)
        return rc;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    static rb_run run;
    static rb_scan sc;
    static rb_set sets[2];
    time_t now = time(NULL);
    strftime(run.date, sizeof run.date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    run.tmp = opt.tmp;
    run.cpus = sysconf(_SC_NPROCESSORS_ONLN);
    run.events = opt.events;
    run.seed = opt.seed;
    run.quick = opt.quick;
    run.rounds = opt.rounds;
    run.live_batch = opt.live_batch;
    run.limit_batch = opt.limit_batch;
    run.alone = opt.alone;
    printf("evlog %s bench/rebuild %s: %ld CPUs, SQLite %s, %" PRIu64 " events (jobs, tasks, runs services), "
           "%d round%s, temp dir %s\n",
           EVL_VERSION_STRING, run.date, run.cpus, sqlite3_libversion(), opt.events, opt.rounds,
           opt.rounds == 1 ? "" : "s", opt.tmp);
    fflush(stdout);

    uint64_t t_start = bench_now_ns();
    if (bench_make_rundir(g_rundir, sizeof g_rundir, opt.tmp) != 0)
        return 1;
    atexit(cleanup);
    snprintf(g_data, sizeof g_data, "%s/data", g_rundir);
    if (reopen_log() != 0 || fill_log(opt.events, &run.head) != 0)
        return 1;
    run.fill_secs = (double)(bench_now_ns() - t_start) / 1e9;
    /* sync none flushes 100 ms after the last commit: let it */
    struct timespec quiet = {0, 300000000};
    nanosleep(&quiet, NULL);
    nftw(g_data, du_cb, 32, FTW_PHYS);
    run.log_mb = (double)g_du / (1 << 20);
    fprintf(stderr, "%" PRIu64 " events appended in %.1f s; the log takes %.0f MB\n", run.head, run.fill_secs,
            run.log_mb);

    sc.rounds = opt.rounds;
    for (int k = 0; k < opt.rounds && !g_interrupted; k++) {
        scan_round(&sc.r[k], run.head, &sc.fields);
        fprintf(stderr, "  scan  round %d %10.0f ev/s  %7.3f s  cpu %7.3f s  peak RSS %.1f MB (anon %.1f, file %.1f), "
                "%" PRIu64 " fields%s%s\n", k + 1, sc.r[k].events_per_s, sc.r[k].secs, sc.r[k].cpu_secs,
                (double)sc.r[k].rss.hwm_kb / 1024, (double)sc.r[k].rss.anon_kb / 1024,
                (double)sc.r[k].rss.file_kb / 1024, sc.fields, sc.r[k].valid ? "" : "  INVALID: ",
                sc.r[k].valid ? "" : sc.r[k].error);
        failed |= !sc.r[k].valid;
    }
    rb_scan_summarise(&sc);
    if (opt.sets & 1) {
        rb_set *s = &sets[n++];
        s->name = "alone";
        s->n_proj = 1;
        s->proj[0] = opt.alone;
    }
    if (opt.sets & 2) {
        rb_set *s = &sets[n++];
        s->name = "core";
        s->n_proj = N_CORE;
        for (int i = 0; i < N_CORE; i++)
            s->proj[i] = CORE[i];
    }
    for (int i = 0; i < n && !g_interrupted; i++)
        if (run_set(&sets[i], run.head) != 0)
            failed = 1;
    evl_log_close(g_log);
    g_log = NULL;
    if (g_interrupted) {
        fprintf(stderr, "rebuild: interrupted\n");
        return 130;
    }
    run.total_secs = (double)(bench_now_ns() - t_start) / 1e9;
    rb_print(stdout, &run, &sc, sets, n);
    if (opt.json && rb_write_json(opt.json, &run, &sc, sets, n) != 0)
        failed = 1;
    return failed ? 1 : 0;
}
