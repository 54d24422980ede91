/* Workload 5: materialise the jobs, tasks, nodes and runs tables from N
 * generated events.
 *
 *   evlog     the projection engine with the four built-in specs, timed from
 *             evl_proj_open until every checkpoint is the log's head;
 *   sqlite    the same statements, each event's values decoded before the
 *             clock starts, bound and stepped by a plain loop into SQLite
 *             files opened as the engine opens them (bench/limit.c);
 *   postgres  the same statements translated to PostgreSQL (mat_pg.c),
 *             issued by a libpq client, values also decoded beforehand.
 *
 * Both baselines get the decoding for free; evlog decodes every event inside
 * its timing.  Every system uses transactions of MAT_BATCH events, and each
 * round's tables must match evlog's (row counts and a digest of key columns).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmp_run.h"
#include "gen.h"
#include "mat.h"

#define WAIT_MS (30 * 60 * 1000)

const mat_table mat_tables[MAT_N] = {
    {"jobs", "id, status, downloaded_bytes, started_at, finished_at, error", "id", 1},
    {"tasks", "task_id, status, assigned_node, assignment_suspicion_count, exit_code, completed_at",
     "task_id", 0},
    {"nodes", "hostname, status, last_heartbeat, memory_used_bytes, runner_version", "hostname", 1},
    {"runs", "id, status, pid, current_iteration, total_iterations, completed_at", "id", 1},
};

/* FNV-1a over the values, with separators so that ("ab","c") != ("a","bc"). */
static void fnv(uint64_t *h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * 0x100000001b3ULL;
}
void mat_digest_init(mat_digest *d, const char *table)
{
    d->h = 0xcbf29ce484222325ULL;
    fnv(&d->h, table, strlen(table) + 1);
}
void mat_digest_value(mat_digest *d, const char *v, size_t len)
{
    static const uint8_t null_mark = 0xff, sep = 0x1f;
    if (!v)
        fnv(&d->h, &null_mark, 1);
    else
        fnv(&d->h, v, len);
    fnv(&d->h, &sep, 1);
}
void mat_digest_row_end(mat_digest *d)
{
    static const uint8_t sep = 0x1e;
    fnv(&d->h, &sep, 1);
}

/* The four tables' digest from SQLite files @p dir/@p prefix<name>.db;
 * chained in mat_tables order, as mat_pg.c does. */
static int sqlite_digest(const char *dir, const char *prefix, uint64_t *digest, uint64_t rows[MAT_N],
                         char *err)
{
    uint64_t h = 0;
    for (int t = 0; t < MAT_N; t++) {
        char path[4300], sql[512];
        snprintf(path, sizeof path, "%s/%s%s.db", dir, prefix, mat_tables[t].name);
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY %s", mat_tables[t].cols,
                 mat_tables[t].name, mat_tables[t].key);
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
            cmp_err(err, "digest of %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
            sqlite3_close(db);
            return -1;
        }
        mat_digest d;
        mat_digest_init(&d, mat_tables[t].name);
        fnv(&d.h, &h, sizeof h);
        rows[t] = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const char *v = (const char *)sqlite3_column_text(st, c);
                mat_digest_value(&d, v, v ? (size_t)sqlite3_column_bytes(st, c) : 0);
            }
            mat_digest_row_end(&d);
            rows[t]++;
        }
        h = d.h;
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (rc != SQLITE_DONE) {
            cmp_err(err, "digest of %s: step failed", path);
            return -1;
        }
    }
    *digest = h;
    return 0;
}

/* ----------------------------------------------------- loading the log */

typedef struct inflight {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
    int err;
} inflight;

static void on_appended(void *arg, const evl_append_result *res)
{
    inflight *f = arg;
    pthread_mutex_lock(&f->mu);
    if (res->err && !f->err)
        f->err = res->err;
    f->n--;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* At least @p n events of the services behind the four tables (jobs, the
 * cluster's tasks and nodes, simulation runs), in the generator's order,
 * appended asynchronously (sync none: loading is not what is measured). */
static int fill(evl_log *log, uint64_t n, char *err)
{
    evl_gen *g;
    if (evl_gen_new(7, EVL_GEN_JOBS | EVL_GEN_TASKS | EVL_GEN_RUNS, &g) != EVL_OK) {
        cmp_err(err, "generator: out of memory");
        return -1;
    }
    inflight f = {.n = 0};
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    uint64_t sent = 0;
    int rc = EVL_OK;
    while (sent < n && rc == EVL_OK) {
        const evl_stream_in *s;
        size_t ns;
        if ((rc = evl_gen_next(g, &s, &ns)) != EVL_OK)
            break;
        pthread_mutex_lock(&f.mu);
        while (f.n >= 4096)
            pthread_cond_wait(&f.cv, &f.mu);
        f.n++;
        pthread_mutex_unlock(&f.mu);
        if ((rc = evl_log_append_async(log, s, ns, on_appended, &f)) != EVL_OK) {
            pthread_mutex_lock(&f.mu);
            f.n--;
            pthread_mutex_unlock(&f.mu);
            break;
        }
        for (size_t i = 0; i < ns; i++)
            sent += s[i].n_events;
    }
    pthread_mutex_lock(&f.mu);
    while (f.n)
        pthread_cond_wait(&f.cv, &f.mu);
    pthread_mutex_unlock(&f.mu);
    if (rc == EVL_OK)
        rc = f.err;
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
    evl_gen_free(g);
    if (rc != EVL_OK)
        cmp_err(err, "loading the log: %s", evl_strerror(rc));
    return rc == EVL_OK ? 0 : -1;
}

/* ------------------------------------------------------------- the rounds */

typedef struct mat_ctx {
    char dir[4096];          /* the case's temp dir */
    char logdir[4200], specdir[4200];
    evl_log *log;
    uint64_t head;
    evl_proj_spec *spec[MAT_N];
    program prog[MAT_N];
    int built[MAT_N];
} mat_ctx;

static void on_report(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "  w5 engine: %s\n", line);
}

static void evlog_round(mat_ctx *m, cmp_res *r)
{
    char pdir[4300];
    snprintf(pdir, sizeof pdir, "%s/projections", m->logdir);
    for (int t = 0; t < MAT_N; t++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s.db", pdir, mat_tables[t].name);
        remove_db(path);
    }
    const char *dirs[1] = {m->specdir};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1, .batch_events = MAT_BATCH,
                           .report = on_report};
    evl_proj_engine *eng = NULL;
    double c0 = cpu_now();
    uint64_t t0 = bench_now_ns();
    int rc = evl_proj_open(m->log, &po, &eng);
    for (int t = 0; t < MAT_N && rc == EVL_OK; t++)
        rc = evl_proj_wait(eng, mat_tables[t].name, m->head, WAIT_MS);
    r->seconds = (double)(bench_now_ns() - t0) / 1e9;
    r->cpu_s = cpu_now() - c0;
    if (rc != EVL_OK)
        cmp_err(r->err, "evlog engine: %s", evl_strerror(rc));
    for (int t = 0; t < MAT_N && rc == EVL_OK; t++) {
        evl_proj_status *st;
        size_t n;
        if (evl_proj_status_get(eng, mat_tables[t].name, &st, &n) != EVL_OK || n != 1) {
            cmp_err(r->err, "evlog: no status for %s", mat_tables[t].name);
            rc = -1;
            break;
        }
        if (st->state == EVL_PROJ_FAULTED || st->checkpoint != m->head) {
            cmp_err(r->err, "evlog: %s %s at %" PRIu64 ": %s", mat_tables[t].name,
                    evl_proj_state_name(st->state), st->checkpoint, st->error ? st->error : "");
            rc = -1;
        }
        evl_proj_status_free(st, n);
    }
    evl_proj_close(eng);
    if (rc == EVL_OK && sqlite_digest(pdir, "", &r->digest, r->rows, r->err) == 0)
        r->valid = 1;
}

static void sqlite_round(mat_ctx *m, cmp_res *r)
{
    char e[CMP_ERR_LEN] = "";
    for (int t = 0; t < MAT_N; t++) {
        char path[4400];
        double s = 0, c = 0;
        snprintf(path, sizeof path, "%s/limit-%s.db", m->dir, mat_tables[t].name);
        if (limit_run(&m->prog[t], path, MAT_BATCH, &s, &c, e, sizeof e) != 0) {
            cmp_err(r->err, "sqlite %s: %s", mat_tables[t].name, e);
            return;
        }
        r->seconds += s;
        r->cpu_s += c;
    }
    if (sqlite_digest(m->dir, "limit-", &r->digest, r->rows, r->err) == 0)
        r->valid = 1;
}

static int setup(const cmp_env *env, cmp_case *c, mat_ctx *m, char *err)
{
    cmp_run run = {.env = env};
    if (cmp_mkdir(&run) != 0) {
        cmp_err(err, "%s", run.err);
        return -1;
    }
    snprintf(m->dir, sizeof m->dir, "%s", run.dir);
    snprintf(m->logdir, sizeof m->logdir, "%s/log", m->dir);
    snprintf(m->specdir, sizeof m->specdir, "%s/specs", m->dir);
    if (mkdir(m->specdir, 0700) != 0) {
        cmp_err(err, "mkdir %s: %s", m->specdir, strerror(errno));
        return -1;
    }
    evl_log_options o;
    evl_log_options_init(&o);
    o.sync = EVL_SYNC_NONE;
    int rc = evl_log_open(m->logdir, &o, &m->log);
    if (rc != EVL_OK) {
        cmp_err(err, "evl_log_open: %s", evl_strerror(rc));
        return -1;
    }
    uint64_t t0 = bench_now_ns();
    if (fill(m->log, c->events, err) != 0)
        return -1;
    m->head = evl_log_head(m->log);
    c->events = m->head;
    fprintf(stderr, "  w5           loaded %" PRIu64 " events in %.1f s\n", m->head,
            (double)(bench_now_ns() - t0) / 1e9);
    /* the built-in specs, as files: the engine runs these four alone */
    size_t nb;
    const evl_proj_builtin *b = evl_proj_builtins(&nb);
    for (int t = 0; t < MAT_N; t++) {
        char file[64], perr[256], path[4400];
        snprintf(file, sizeof file, "%s.sql", mat_tables[t].name);
        const evl_proj_builtin *bi = NULL;
        for (size_t i = 0; i < nb; i++)
            if (!strcmp(b[i].file, file))
                bi = &b[i];
        if (!bi) {
            cmp_err(err, "no built-in projection %s", file);
            return -1;
        }
        snprintf(path, sizeof path, "%s/%s", m->specdir, file);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(bi->text, 1, bi->len, f) != bi->len || fclose(f) != 0) {
            cmp_err(err, "cannot write %s", path);
            return -1;
        }
        if (evl_proj_spec_parse(bi->text, bi->len, bi->file, &m->spec[t], perr, sizeof perr) != EVL_OK) {
            cmp_err(err, "%s", perr);
            return -1;
        }
        t0 = bench_now_ns();
        if (build_program(m->log, m->spec[t], &m->prog[t]) != 0) {
            cmp_err(err, "decoding the events for %s failed", file);
            return -1;
        }
        m->built[t] = 1;
        fprintf(stderr, "  w5           %-5s: %" PRIu64 " events match, %zu statements (decoded in %.1f s)\n",
                mat_tables[t].name, m->prog[t].matched, m->prog[t].n_ops,
                (double)(bench_now_ns() - t0) / 1e9);
    }
    return 0;
}

static void teardown(mat_ctx *m)
{
    for (int t = 0; t < MAT_N; t++) {
        if (m->built[t])
            free_program(&m->prog[t]);
        evl_proj_spec_free(m->spec[t]);
    }
    if (m->log)
        evl_log_close(m->log);
    if (m->dir[0])
        bench_rm_rf(m->dir);
}

static void progress(const cmp_case *c, int s, int k)
{
    const cmp_res *r = &c->r[s][k];
    fprintf(stderr, "  %-12s round %d %-9s %10.0f ev/s  %7.2f s  cpu %7.2f s  rows %" PRIu64 "/%" PRIu64
                    "/%" PRIu64 "/%" PRIu64 "  digest %016" PRIx64 "%s%s\n",
            c->id, k + 1, c->sys[s]->name, r->ev_s, r->seconds, r->cpu_s, r->rows[0], r->rows[1],
            r->rows[2], r->rows[3], r->digest, r->valid ? "" : "  INVALID: ", r->valid ? "" : r->err);
}

void cmp_run_materialize(const cmp_env *env, cmp_case *c, volatile sig_atomic_t *interrupted)
{
    static mat_ctx m; /* large; one case at a time */
    memset(&m, 0, sizeof m);
    char err[CMP_ERR_LEN] = "";
    int up = setup(env, c, &m, err) == 0;
    if (!up)
        fprintf(stderr, "  %-12s setup failed: %s\n", c->id, err);
    for (int k = 0; k < c->rounds && !*interrupted; k++)
        for (int s = 0; s < c->n_sys && !*interrupted; s++) {
            cmp_res *r = &c->r[s][k];
            memset(r, 0, sizeof *r);
            if (!up) {
                cmp_err(r->err, "not loaded: %s", err);
                continue;
            }
            sync(); /* neither system pays for the other's writeback */
            const char *name = c->sys[s]->name;
            if (!strcmp(name, "evlog"))
                evlog_round(&m, r);
            else if (!strcmp(name, "sqlite"))
                sqlite_round(&m, r);
#ifdef CMP_HAVE_PG
            else if (!strcmp(name, "postgres")) {
                char e[CMP_ERR_LEN] = "";
                r->valid = mat_pg_round(env->pg, (program *const[]){&m.prog[0], &m.prog[1], &m.prog[2],
                                                                     &m.prog[3]},
                                        &r->seconds, &r->cpu_s, &r->digest, r->rows, e, sizeof e) == 0;
                if (!r->valid)
                    cmp_err(r->err, "%s", e);
            }
#endif
            else
                cmp_err(r->err, "%s cannot materialise", name);
            r->events = m.head;
            r->ev_s = r->valid && r->seconds > 0 ? (double)m.head / r->seconds : 0;
            /* the same tables as evlog built, or the figure means nothing */
            const cmp_res *ref = &c->r[0][k];
            if (r->valid && s > 0 && ref->valid && ref->digest != r->digest) {
                r->valid = 0;
                cmp_err(r->err, "tables differ from evlog's (digest %016" PRIx64 " vs %016" PRIx64 ")",
                        r->digest, ref->digest);
            }
            progress(c, s, k);
        }
    teardown(&m);
}
