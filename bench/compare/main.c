/* evlog-compare: the workloads of bench/compare.sh, run against evlog and
 * its baselines in alternation (A B C A B C ...), so a slow minute of the
 * machine hits every system alike.  See bench/README.md.
 *
 * usage: evlog-compare --evlogd PATH [--pg CONNINFO] [--nats URL]
 *          [--nats-durable URL --nats-durable-how always|sync-attr]
 *          [--quick] [--rounds N] [--seconds S] [--workloads 1,2,3,4,6]
 *          [--replay-events N] [--materialize-events N] [--json FILE] [--chart FILE]
 *          [--embedded-only] [--cases ID,...]  (e.g. w1-net-64: run only those)
 * Systems whose server is not given (or whose client library was not found
 * at build time) are left out, and the table says so. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>

#include "cmp_run.h"

#define MAX_CASES 24

static cmp_case cases[MAX_CASES];
static int n_cases;

static const cmp_sys *pg_sys(void)
{
#ifdef CMP_HAVE_PG
    return &cmp_pg;
#else
    return NULL;
#endif
}
static const cmp_sys *nats_sys(void)
{
#ifdef CMP_HAVE_NATS
    return &cmp_nats;
#else
    return NULL;
#endif
}
static const cmp_sys *nats_durable_sys(void)
{
#ifdef CMP_HAVE_NATS
    return &cmp_nats_durable;
#else
    return NULL;
#endif
}

static int find(const cmp_case *c, const char *name)
{
    for (int i = 0; i < c->n_sys; i++)
        if (!strcmp(c->sys[i]->name, name))
            return i;
    return -1;
}

/* The systems of a case.  Each baseline is compared with the evlog of the
 * same reach (embedded or network) and the same durability: JetStream that
 * syncs every message with evlogd --sync full, JetStream's default (acked
 * before any fsync) with evlogd --sync none. */
static cmp_case *add_case(const cmp_env *env, int w, int network, const char *id, const char *title)
{
    cmp_case *c = &cases[n_cases++];
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    snprintf(c->title, sizeof c->title, "%s", title);
    c->workload = w;
    c->rounds = env->rounds;
    const cmp_sys *pg = env->pg ? pg_sys() : NULL, *nats = env->nats ? nats_sys() : NULL;
    const cmp_sys *nats_d = env->nats_durable && w <= 3 ? nats_durable_sys() : NULL;
    if (!network) {
        c->sys[c->n_sys++] = &cmp_evlog;
        c->sys[c->n_sys++] = &cmp_sqlite;
    } else {
        c->sys[c->n_sys++] = &cmp_evlog_http;
        if (pg)
            c->sys[c->n_sys++] = pg;
        if (nats_d)
            c->sys[c->n_sys++] = nats_d;
        if (nats)
            c->sys[c->n_sys++] = nats;
        if (nats && w <= 3)
            c->sys[c->n_sys++] = &cmp_evlog_http_nosync;
    }
    for (int i = 0; i < c->n_sys; i++)
        c->ref[i] = c->sys[i]->evlog ? -1 : 0;
    int ns = find(c, "evlog-http-nosync"), ni = find(c, "nats");
    if (ns >= 0 && ni >= 0)
        c->ref[ni] = ns;
    return c;
}

static void progress(const cmp_case *c, int s, int k)
{
    const cmp_res *r = &c->r[s][k];
    fprintf(stderr, "  %-12s round %d %-18s %12.0f ev/s  p50 %8.3f ms  p99 %8.3f ms%s%s\n", c->id,
            k + 1, c->sys[s]->name, r->ev_s, r->p50_ms, r->p99_ms, r->valid ? "" : "  INVALID: ",
            r->valid ? "" : r->err);
}

/* Is id one of the comma-separated names in list? */
static int listed(const char *list, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, id, n) == 0)
            return 1;
        p += len + (e != NULL);
    }
    return 0;
}

static volatile sig_atomic_t interrupted;
static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void run_appends(const cmp_env *env, cmp_case *c, const cmp_pool *pool)
{
    cmp_aparams p = {c->clients, c->batch, c->hot, env->seconds, pool};
    for (int k = 0; k < c->rounds && !interrupted; k++)
        for (int s = 0; s < c->n_sys && !interrupted; s++) {
            cmp_run_appends(env, c->sys[s], &p, &c->r[s][k]);
            progress(c, s, k);
        }
}

/* Every system is loaded once, then the scans alternate round by round,
 * each timed right after an untimed one of the same store. */
static void run_replay(const cmp_env *env, cmp_case *c)
{
    cmp_run runs[CMP_MAX_SYS];
    int up[CMP_MAX_SYS] = {0};
    for (int s = 0; s < c->n_sys && !interrupted; s++) {
        runs[s] = (cmp_run){.env = env};
        uint64_t t0 = bench_now_ns();
        fprintf(stderr, "  %-12s loading %llu events into %s\n", c->id,
                (unsigned long long)c->events, c->sys[s]->name);
        up[s] = c->sys[s]->start(&runs[s]) == 0 && c->sys[s]->load(&runs[s], c->events, 7) == 0;
        c->load_s[s] = (double)(bench_now_ns() - t0) / 1e9;
        if (!up[s])
            fprintf(stderr, "  %-12s %s: load failed: %s\n", c->id, c->sys[s]->name, runs[s].err);
    }
    for (int k = 0; k < c->rounds && !interrupted; k++)
        for (int s = 0; s < c->n_sys && !interrupted; s++) {
            cmp_res *r = &c->r[s][k];
            memset(r, 0, sizeof *r);
            if (!up[s]) {
                cmp_err(r->err, "not loaded: %s", runs[s].err);
                continue;
            }
            uint64_t n = 0, bytes = 0, t0;
            runs[s].err[0] = 0;
            /* WHY an untimed scan first: the stores of 10M events together
             * are about as large as this machine's memory, so without it
             * the store loaded last scans from the page cache and the
             * others from disk.  After its own scan every system is
             * measured warm, as on a machine with room for them all. */
            int rc = c->sys[s]->scan(&runs[s], &n, &bytes);
            n = bytes = 0;
            t0 = bench_now_ns();
            if (rc == 0)
                rc = c->sys[s]->scan(&runs[s], &n, &bytes);
            r->seconds = (double)(bench_now_ns() - t0) / 1e9;
            r->events = n;
            r->ev_s = (double)n / r->seconds;
            r->valid = rc == 0 && n == c->events;
            if (!r->valid)
                cmp_err(r->err, "read %llu of %llu events %s", (unsigned long long)n,
                        (unsigned long long)c->events, runs[s].err);
            progress(c, s, k);
        }
    for (int s = 0; s < c->n_sys; s++)
        if (runs[s].env)
            c->sys[s]->stop(&runs[s]);
}

static void run_feed(const cmp_env *env, cmp_case *c, const cmp_pool *pool)
{
    for (int k = 0; k < c->rounds && !interrupted; k++)
        for (int s = 0; s < c->n_sys && !interrupted; s++) {
            cmp_feed f = {.subscribers = c->clients, .events = (int)c->events, .rate = 100,
                          .evs = pool->ev};
            cmp_res *r = &c->r[s][k];
            memset(r, 0, sizeof *r);
            int rc = c->sys[s]->feed(env, &f);
            bench_lat_sort(&f.lat);
            r->p50_ms = (double)bench_percentile(f.lat.v, f.lat.n, 50) / 1e6;
            r->p99_ms = (double)bench_percentile(f.lat.v, f.lat.n, 99) / 1e6;
            r->events = f.received;
            r->valid = rc == 0 && f.received == f.expected;
            if (!r->valid)
                cmp_err(r->err, "%llu of %llu deliveries %s", (unsigned long long)f.received,
                        (unsigned long long)f.expected, f.err);
            bench_lat_free(&f.lat);
            cmp_feed_end(&f);
            progress(c, s, k);
        }
}

static const char *usage_text =
    "usage: evlog-compare --evlogd PATH [--pg CONNINFO] [--nats URL]\n"
    "         [--nats-durable URL --nats-durable-how always|sync-attr]\n"
    "         [--quick] [--rounds N] [--seconds S] [--workloads 1,2,3,4,5,6]\n"
    "         [--replay-events N] [--materialize-events N] [--json FILE] [--chart FILE]\n"
    "         [--embedded-only] [--cases ID,...]\n";

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"evlogd", required_argument, 0, 'e'},   {"pg", required_argument, 0, 'p'},
        {"nats", required_argument, 0, 'n'},     {"nats-durable", required_argument, 0, 'D'},
        {"nats-durable-how", required_argument, 0, 'H'},
        {"quick", no_argument, 0, 'q'},          {"rounds", required_argument, 0, 'r'},
        {"seconds", required_argument, 0, 's'},  {"workloads", required_argument, 0, 'w'},
        {"replay-events", required_argument, 0, 'R'}, {"json", required_argument, 0, 'j'},
        {"chart", required_argument, 0, 'c'},    {"embedded-only", no_argument, 0, 'E'},
        {"materialize-events", required_argument, 0, 'M'}, {"cases", required_argument, 0, 'C'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    cmp_env env = {0};
    const char *json = NULL, *chart = NULL, *wl = "1,2,3,4,5,6", *only = NULL;
    int rounds = 0, embedded_only = 0;
    double seconds = 0;
    uint64_t replay_n = 0, mat_n = 0;
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 'e': env.evlogd = optarg; break;
        case 'p': env.pg = optarg; break;
        case 'n': env.nats = optarg; break;
        case 'D': env.nats_durable = optarg; break;
        case 'H':
            env.nats_durable_how = !strcmp(optarg, "always")      ? CMP_NATS_SYNC_INTERVAL
                                   : !strcmp(optarg, "sync-attr") ? CMP_NATS_SYNC_ATTR
                                                                  : -1;
            break;
        case 'q': env.quick = 1; break;
        case 'r': rounds = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'w': wl = optarg; break;
        case 'R': replay_n = strtoull(optarg, NULL, 10); break;
        case 'M': mat_n = strtoull(optarg, NULL, 10); break;
        case 'j': json = optarg; break;
        case 'c': chart = optarg; break;
        case 'E': embedded_only = 1; break;
        case 'C': only = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: fputs(usage_text, stderr); return 2;
        }
    }
    if (optind != argc || (!env.evlogd && !embedded_only) || rounds < 0 ||
        (env.nats_durable && env.nats_durable_how <= 0) ||
        rounds > CMP_MAX_ROUNDS) {
        fputs(usage_text, stderr);
        return 2;
    }
    env.rounds = rounds ? rounds : env.quick ? 2 : 3;
    env.seconds = seconds > 0 ? seconds : env.quick ? 0.5 : 3.0;
    const char *td = getenv("TMPDIR");
    env.tmp = td && *td ? td : "/var/tmp";
    if (embedded_only)
        env.pg = env.nats = env.nats_durable = NULL;
    if (!replay_n)
        replay_n = env.quick ? 100000 : 10000000;
    if (!mat_n)
        mat_n = env.quick ? 20000 : 1000000;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    cmp_pool pool;
    if (cmp_pool_make(&pool, 100000, 1) != 0) {
        fprintf(stderr, "compare: cannot generate the events\n");
        return 1;
    }
    static const int cl_full[] = {1, 16, 64};
    char id[24], title[96];
    for (int net = 0; net < 2; net++) {
        if (net && embedded_only)
            break;
        const char *where = net ? "net" : "emb", *reach = net ? "network" : "embedded";
        if (strchr(wl, '1'))
            for (int i = 0; i < 3; i++) {
                snprintf(id, sizeof id, "w1-%s-%d", where, cl_full[i]);
                snprintf(title, sizeof title, "1 durable appends, %s, %d client%s", reach,
                         cl_full[i], cl_full[i] > 1 ? "s" : "");
                cmp_case *c = add_case(&env, 1, net, id, title);
                c->clients = cl_full[i];
                c->batch = 1;
            }
        if (strchr(wl, '2')) {
            snprintf(id, sizeof id, "w2-%s-16", where);
            snprintf(title, sizeof title, "2 batches of 100, %s, 16 clients", reach);
            cmp_case *c = add_case(&env, 2, net, id, title);
            c->clients = 16;
            c->batch = 100;
        }
        if (strchr(wl, '3')) {
            snprintf(id, sizeof id, "w3-%s-16", where);
            snprintf(title, sizeof title, "3 expected revision, 1000 hot streams, %s, 16 clients",
                     reach);
            cmp_case *c = add_case(&env, 3, net, id, title);
            c->clients = 16;
            c->batch = 1;
            c->hot = 1000;
        }
    }
    if (strchr(wl, '4')) {
        cmp_case *c = add_case(&env, 4, 0, "w4-replay", "");
        snprintf(c->title, sizeof c->title, "4 full replay of %llu events",
                 (unsigned long long)replay_n);
        c->events = replay_n;
        if (!embedded_only) { /* evlog embedded, sqlite, then over the network */
            c->sys[c->n_sys] = &cmp_evlog_http, c->ref[c->n_sys++] = -1;
            if (env.pg && pg_sys())
                c->sys[c->n_sys] = pg_sys(), c->ref[c->n_sys++] = 2;
            if (env.nats && nats_sys())
                c->sys[c->n_sys] = nats_sys(), c->ref[c->n_sys++] = 2;
        }
    }
    if (strchr(wl, '5')) { /* evlog's engine, the limit in SQLite, PostgreSQL: no network side */
        cmp_case *c = add_case(&env, 5, 0, "w5", "");
        c->events = mat_n;
        snprintf(c->title, sizeof c->title, "5 materialize jobs/tasks/nodes/runs, %llu events",
                 (unsigned long long)mat_n);
        if (env.pg && pg_sys())
            c->sys[c->n_sys] = pg_sys(), c->ref[c->n_sys++] = 0;
    }
    if (strchr(wl, '6') && !embedded_only) {
        cmp_case *c = add_case(&env, 6, 1, "w6-feed-100", "6 feed latency, 100 subscribers");
        c->clients = 100;
        c->events = env.quick ? 100 : 300;
    }

    if (only) { /* keep the listed cases only (to profile one of them) */
        int k = 0;
        for (int i = 0; i < n_cases; i++)
            if (listed(only, cases[i].id))
                cases[k++] = cases[i];
        n_cases = k;
    }
    fprintf(stderr, "evlog-compare: %d configurations, %d round%s, %.1f s per append run, temp dirs under %s\n",
            n_cases, env.rounds, env.rounds > 1 ? "s" : "", env.seconds, env.tmp);
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < n_cases && !interrupted; i++) {
        cmp_case *c = &cases[i];
        if (c->workload <= 3)
            run_appends(&env, c, &pool);
        else if (c->workload == 4)
            run_replay(&env, c);
        else if (c->workload == 5)
            cmp_run_materialize(&env, c, &interrupted);
        else
            run_feed(&env, c, &pool);
        cmp_summarise(c);
    }
    if (interrupted) {
        fprintf(stderr, "compare: interrupted\n");
        cmp_pool_free(&pool);
        return 130;
    }
    double total = (double)(bench_now_ns() - t0) / 1e9;
    cmp_target t[] = {
        {"1: 64 clients, evlog embedded >= 20x the SQLite events table", "w1-emb-64", "evlog", "sqlite", 20, NULL, 0, 0, 0},
        {"1: 64 clients, evlog HTTP >= 3x PostgreSQL", "w1-net-64", "evlog-http", "postgres", 3, NULL, 0, 0, 0},
        {"1: 64 clients, evlog HTTP >= 2x JetStream syncing every message", "w1-net-64", "evlog-http",
         "nats-durable", 2,
         !env.nats_durable ? "no JetStream that syncs every message was given (--nats-durable)"
         : env.nats_durable_how == CMP_NATS_SYNC_ATTR
             ? "JetStream 2.9 has no sync_interval: its store directory has chattr +S instead"
             : NULL,
         0, 0, 0},
        {"2: batches of 100, evlog HTTP >= 2x PostgreSQL", "w2-net-16", "evlog-http", "postgres", 2, NULL, 0, 0, 0},
        {"2: batches of 100, evlog embedded >= 500k events/s", "w2-emb-16", "evlog", NULL, 500000, NULL, 0, 0, 0},
        {"4: replay, evlog log scan >= 3x PostgreSQL", "w4-replay", "evlog", "postgres", 3,
         "evlog in-process, PostgreSQL over a socket", 0, 0, 0},
        {"4: replay, evlog log scan >= 3x a JetStream consumer", "w4-replay", "evlog", "nats", 3,
         "evlog in-process, JetStream over a socket", 0, 0, 0},
        {"5: materialize, evlog projections >= 2x the PostgreSQL UPSERT loop", "w5", "evlog", "postgres", 2,
         "PostgreSQL over a socket, one round trip per statement", 0, 0, 0},
        {"6: feed, evlog p99 below PostgreSQL LISTEN/NOTIFY's", "w6-feed-100", "evlog-http", "postgres", 1, NULL, 0, 0, 0},
    };
    int nt = (int)(sizeof t / sizeof t[0]);
    cmp_targets(cases, n_cases, t, nt);
    cmp_print(stdout, &env, cases, n_cases, t, nt);
    printf("(total %.0f s)\n", total);
    int rc = 0;
    if (json && cmp_write_json(json, &env, cases, n_cases, t, nt, total) != 0)
        rc = 1;
    if (chart && cmp_write_chart(chart, cases, n_cases) != 0)
        rc = 1;
    for (int i = 0; i < n_cases; i++)
        for (int s = 0; s < cases[i].n_sys; s++)
            if (!cases[i].valid[s])
                rc = 1;
    cmp_pool_free(&pool);
    return rc;
}
