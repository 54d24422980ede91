/* The workload generator (bench/workloads/gen.h) through the built-in
 * projections: 50k events of every service, from two generators sharing one
 * log as two services would, must apply without a single fault; then the
 * tables must hold what the lifecycles imply (valid statuses, terminal rows
 * complete, JSON columns valid, foreign keys intact, retention applied).
 * Also: the generator is deterministic for a seed and rejects bad masks. */
#include <msgpack.h>
#include <pthread.h>
#include <sqlite3.h>

#include "evlog/log.h"
#include "evlog/mp.h"
#include "evlog/proj.h"
#include "gen.h"
#include "test.h"

/* EVL_GEN_TEST_EVENTS and EVL_GEN_TEST_SEED override these for soak runs. */
#define N_EVENTS 50000
#define SEED 7

/* ---------------------------------------------------------------- helpers */

static sqlite3 *open_ro(evl_proj_engine *e, const char *name) {
    const char *path = evl_proj_db_path(e, name);
    CHECK(path);
    sqlite3 *db;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    return db;
}

/* The single integer a query returns. */
static long long q_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        exit(1);
    }
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void expect_zero(sqlite3 *db, const char *what, const char *sql) {
    long long n = q_int(db, sql);
    if (n) fprintf(stderr, "%s: %lld rows break it: %s\n", what, n, sql);
    CHECK(n == 0);
}

/* Print "status=count ..." for a table, so the run shows the mix it produced. */
static void show_mix(sqlite3 *db, const char *label, const char *sql) {
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
    printf("  %-16s", label);
    while (sqlite3_step(st) == SQLITE_ROW)
        printf(" %s=%lld", (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
    printf("\n");
    sqlite3_finalize(st);
}

/* No foreign key violated, file intact. */
static void check_integrity(sqlite3 *db, const char *name) {
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL) == SQLITE_OK);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        fprintf(stderr, "%s: foreign key violated in %s (rowid %lld -> %s)\n", name,
                sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_text(st, 2));
    CHECK(rc == SQLITE_DONE);
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
    sqlite3_finalize(st);
}

static int same_batch(const evl_stream_in *a, size_t na, const evl_stream_in *b, size_t nb) {
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++) {
        if (strcmp(a[i].stream, b[i].stream) || a[i].expected != b[i].expected ||
            a[i].n_events != b[i].n_events)
            return 0;
        for (size_t k = 0; k < a[i].n_events; k++) {
            const evl_event_in *x = &a[i].events[k], *y = &b[i].events[k];
            if (strcmp(x->type, y->type) || x->data_len != y->data_len ||
                memcmp(x->data, y->data, x->data_len) || x->meta_len != y->meta_len ||
                (x->meta_len && memcmp(x->meta, y->meta, x->meta_len)))
                return 0;
        }
    }
    return 1;
}

/* ---------------------------------------------------------------- tests */

static void test_api(void) {
    evl_gen *g;
    unsigned m;
    CHECK_RC(evl_gen_new(1, 0, &g), EVL_EINVAL);
    CHECK(g == NULL);
    CHECK_RC(evl_gen_new(1, 0x40, &g), EVL_EINVAL);
    OK(evl_gen_parse_services("jobs,karr", &m));
    CHECK(m == (EVL_GEN_JOBS | EVL_GEN_KARR));
    OK(evl_gen_parse_services("all", &m));
    CHECK(m == EVL_GEN_ALL);
    CHECK_RC(evl_gen_parse_services("jobs,nope", &m), EVL_EINVAL);
    CHECK_RC(evl_gen_parse_services("", &m), EVL_EINVAL);
    CHECK(strcmp(evl_gen_service_name(EVL_GEN_SAAS), "saas") == 0);
    evl_gen_free(NULL);
}

/* The same seed gives the same bytes; another seed other entities; every
 * batch is well formed and every event's data passes the log's pre-scan. */
static void test_deterministic(void) {
    evl_gen *a, *b, *c;
    OK(evl_gen_new(42, EVL_GEN_ALL, &a));
    OK(evl_gen_new(42, EVL_GEN_ALL, &b));
    OK(evl_gen_new(43, EVL_GEN_ALL, &c));
    int differ = 0;
    for (int i = 0; i < 5000; i++) {
        const evl_stream_in *sa, *sb, *sc;
        size_t na, nb, nc;
        OK(evl_gen_next(a, &sa, &na));
        OK(evl_gen_next(b, &sb, &nb));
        OK(evl_gen_next(c, &sc, &nc));
        CHECK(same_batch(sa, na, sb, nb));
        differ |= !same_batch(sa, na, sc, nc);
        CHECK(na >= 1);
        for (size_t s = 0; s < na; s++) {
            CHECK(sa[s].n_events >= 1);
            for (size_t k = 0; k < sa[s].n_events; k++) {
                const evl_event_in *e = &sa[s].events[k];
                OK(evl_mp_check(e->data, e->data_len, EVL_MAX_DEPTH, EVL_MP_STRING_KEYS, NULL));
                if (e->meta) OK(evl_mp_check(e->meta, e->meta_len, EVL_MAX_DEPTH, EVL_MP_STRING_KEYS, NULL));
                evl_mp at;
                OK(evl_mp_map_find(e->data, e->data_len, "at", 2, &at)); /* every event says when */
            }
        }
    }
    CHECK(differ);
    CHECK(evl_gen_clock(a) == evl_gen_clock(b));
    evl_gen_free(a);
    evl_gen_free(b);
    evl_gen_free(c);
}

/* The `before` of the last JobsPurged in the log, or "" when there is none. */
static void last_purge(evl_log *log, char out[64]) {
    evl_iter *it;
    evl_event ev;
    out[0] = 0;
    OK(evl_iter_open(log, &(evl_query){.type = "JobsPurged"}, &it));
    while (evl_iter_next(it, &ev) == EVL_OK) {
        evl_mp m;
        evl_mp_val v;
        OK(evl_mp_map_find(ev.data, ev.data_len, "before", 6, &m));
        OK(evl_mp_read(&m, &v));
        CHECK(v.kind == EVL_MP_STR && v.v.s.len < 64);
        memcpy(out, v.v.s.ptr, v.v.s.len);
        out[v.v.s.len] = 0;
    }
    evl_iter_close(it);
}

static uint64_t count_events(evl_log *log, const char *type, const char *category) {
    evl_iter *it;
    evl_event ev;
    uint64_t n = 0;
    OK(evl_iter_open(log, &(evl_query){.type = type, .category = category}, &it));
    while (evl_iter_next(it, &ev) == EVL_OK) n++;
    evl_iter_close(it);
    return n;
}

/* Appends in flight and the first failure, shared with the writer's callback. */
typedef struct pending {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
    int err;
} pending;

static void on_appended(void *arg, const evl_append_result *res) {
    pending *p = arg;
    pthread_mutex_lock(&p->mu);
    if (res->err && !p->err) p->err = res->err;
    p->n--;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void report_line(void *arg, const char *line) {
    (void)arg;
    fprintf(stderr, "  engine: %s\n", line);
}

static void test_through_projections(uint64_t n_events, uint64_t seed) {
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    evl_log *log;
    OK(evl_log_open(test_path("data"), &lo, &log));
    evl_proj_options po = {.report = report_line};
    evl_proj_engine *eng;
    OK(evl_proj_open(log, &po, &eng));

    /* two services' generators feeding one log, batches interleaved; appended
     * without waiting for each commit (the log keeps their order), as a busy
     * service would, while the projectors follow live */
    evl_gen *g[2];
    OK(evl_gen_new(seed, EVL_GEN_ALL, &g[0]));
    OK(evl_gen_new(seed + 1, EVL_GEN_ALL, &g[1]));
    uint64_t appended = 0, batches = 0;
    pending p = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    while (appended < n_events) {
        const evl_stream_in *s;
        size_t n;
        OK(evl_gen_next(g[batches & 1], &s, &n));
        pthread_mutex_lock(&p.mu);
        while (p.n >= 512) pthread_cond_wait(&p.cv, &p.mu);
        p.n++;
        pthread_mutex_unlock(&p.mu);
        OK(evl_log_append_async(log, s, n, on_appended, &p));
        for (size_t i = 0; i < n; i++) appended += s[i].n_events;
        batches++;
    }
    pthread_mutex_lock(&p.mu);
    while (p.n) pthread_cond_wait(&p.cv, &p.mu);
    pthread_mutex_unlock(&p.mu);
    if (p.err) fprintf(stderr, "append: %s\n", evl_strerror(p.err));
    OK(p.err);
    uint64_t head = evl_log_head(log);
    CHECK(head == appended);
    OK(evl_proj_wait_all(eng, head, 120000));

    evl_proj_status *st;
    size_t n_st;
    OK(evl_proj_status_get(eng, NULL, &st, &n_st));
    CHECK(n_st >= 7);
    printf("%llu events in %llu batches; projections:\n", (unsigned long long)appended,
           (unsigned long long)batches);
    for (size_t i = 0; i < n_st; i++) {
        printf("  %-6s %-11s checkpoint %llu, %llu events applied;", st[i].name,
               evl_proj_state_name(st[i].state), (unsigned long long)st[i].checkpoint,
               (unsigned long long)st[i].events_applied);
        for (size_t t = 0; t < st[i].n_tables; t++)
            printf(" %s=%llu", st[i].tables[t].name, (unsigned long long)st[i].tables[t].rows);
        printf("\n");
        if (st[i].state == EVL_PROJ_FAULTED)
            fprintf(stderr, "projection %s FAULTED at %llu (%s): %s\n", st[i].name,
                    (unsigned long long)st[i].fault_position, st[i].fault_type ? st[i].fault_type : "?",
                    st[i].error ? st[i].error : "");
        CHECK(st[i].state != EVL_PROJ_FAULTED);
        CHECK(st[i].checkpoint == head);
        CHECK(st[i].events_applied > 0);
    }
    evl_proj_status_free(st, n_st);

    /* ---- jobs */
    sqlite3 *db = open_ro(eng, "jobs");
    check_integrity(db, "jobs");
    show_mix(db, "jobs.status", "SELECT status, count(*) FROM jobs GROUP BY 1 ORDER BY 1");
    expect_zero(db, "job status", "SELECT count(*) FROM jobs WHERE status NOT IN "
                                  "('queued','running','succeeded','failed')");
    expect_zero(db, "succeeded jobs are complete",
                "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND (progress != 1.0 OR "
                "finished_at IS NULL OR local_path IS NULL OR downloaded_bytes != total_bytes "
                "OR started_at IS NULL)");
    expect_zero(db, "failed jobs say why",
                "SELECT count(*) FROM jobs WHERE status = 'failed' AND (error IS NULL OR finished_at IS NULL)");
    expect_zero(db, "progress within bounds", "SELECT count(*) FROM jobs WHERE progress < 0 OR progress > 1");
    CHECK(q_int(db, "SELECT count(*) FROM jobs WHERE status = 'succeeded'") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM jobs WHERE status = 'failed' AND traceback IS NOT NULL") > 0);
    char before[64];
    last_purge(log, before);
    CHECK(before[0] || n_events < N_EVENTS); /* long enough (in simulated time) for sweeps */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE julianday(created_at) < julianday('%s')", before);
    expect_zero(db, "retention", sql);
    CHECK((uint64_t)q_int(db, "SELECT count(*) FROM jobs") < count_events(log, "JobQueued", NULL));
    sqlite3_close(db);

    /* ---- tasks and nodes */
    db = open_ro(eng, "tasks");
    check_integrity(db, "tasks");
    show_mix(db, "tasks.status", "SELECT status, count(*) FROM tasks GROUP BY 1 ORDER BY 1");
    expect_zero(db, "task status", "SELECT count(*) FROM tasks WHERE status NOT IN ('pending_approval',"
                                   "'rejected','pending','assigning','running','paused','completed',"
                                   "'failed','killed','killed_oom','lost','stopped')");
    expect_zero(db, "finished tasks have completed_at",
                "SELECT count(*) FROM tasks WHERE status IN ('completed','failed','killed','killed_oom',"
                "'lost','stopped') AND completed_at IS NULL");
    expect_zero(db, "completed tasks exit 0",
                "SELECT count(*) FROM tasks WHERE status = 'completed' AND exit_code != 0");
    expect_zero(db, "rejections say why",
                "SELECT count(*) FROM tasks WHERE status = 'rejected' AND (rejection_reason IS NULL "
                "OR approval_status != 'rejected')");
    expect_zero(db, "running tasks are placed",
                "SELECT count(*) FROM tasks WHERE status IN ('running','paused') AND "
                "(assigned_node IS NULL OR started_at IS NULL)");
    expect_zero(db, "JSON fields", "SELECT count(*) FROM tasks WHERE NOT (json_valid(arguments) AND "
                                   "json_valid(env_vars) AND json_valid(required_gpus) AND "
                                   "json_valid(COALESCE(docker_mount_dirs, '[]')))");
    expect_zero(db, "VPS sessions have a backend",
                "SELECT count(*) FROM tasks WHERE task_type = 'vps' AND vps_backend NOT IN ('docker','qemu')");
    CHECK(q_int(db, "SELECT count(*) FROM tasks WHERE status = 'completed'") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM tasks WHERE status = 'running'") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM tasks WHERE approval_status = 'approved'") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM tasks WHERE batch_id IS NOT NULL") > 0);
    sqlite3_close(db);
    db = open_ro(eng, "nodes");
    check_integrity(db, "nodes");
    show_mix(db, "nodes.status", "SELECT status, count(*) FROM nodes GROUP BY 1 ORDER BY 1");
    CHECK(q_int(db, "SELECT count(*) FROM nodes") == 12);
    expect_zero(db, "node JSON", "SELECT count(*) FROM nodes WHERE NOT json_valid(numa_topology) OR "
                                 "(gpu_info IS NOT NULL AND NOT json_valid(gpu_info)) OR "
                                 "(vfio_gpus IS NOT NULL AND NOT json_valid(vfio_gpus))");
    expect_zero(db, "heartbeats", "SELECT count(*) FROM nodes WHERE cpu_percent IS NULL");
    CHECK(q_int(db, "SELECT count(*) FROM nodes WHERE vm_capable = 1 AND vfio_gpus IS NOT NULL") > 0);
    sqlite3_close(db);

    /* ---- auth */
    db = open_ro(eng, "auth");
    check_integrity(db, "auth");
    show_mix(db, "users.role", "SELECT role, count(*) FROM users GROUP BY 1 ORDER BY 1");
    CHECK(q_int(db, "SELECT count(*) FROM users WHERE role = 'admin'") == 2); /* one per generator */
    expect_zero(db, "invitation usage", "SELECT count(*) FROM invitations WHERE usage_count > max_usage");
    expect_zero(db, "group limits JSON", "SELECT count(*) FROM groups WHERE NOT json_valid(limits_json)");
    expect_zero(db, "hashes only", "SELECT count(*) FROM tokens WHERE length(token_hash) != 128");
    CHECK(q_int(db, "SELECT count(*) FROM user_groups") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM invitations WHERE usage_count > 0") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM tokens WHERE last_used IS NOT NULL") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM vps_assignments") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM user_role_levels WHERE role_level IS NULL") == 0);
    sqlite3_close(db);

    /* ---- FUSION runs */
    db = open_ro(eng, "runs");
    check_integrity(db, "runs");
    show_mix(db, "runs.status", "SELECT status, count(*) FROM runs GROUP BY 1 ORDER BY 1");
    expect_zero(db, "run status", "SELECT count(*) FROM runs WHERE status NOT IN "
                                  "('PENDING','RUNNING','COMPLETED','FAILED','CANCELLED')");
    expect_zero(db, "completed runs finished every iteration",
                "SELECT count(*) FROM runs WHERE status = 'COMPLETED' AND (current_iteration != "
                "total_iterations OR completed_at IS NULL OR pid IS NULL)");
    expect_zero(db, "config JSON", "SELECT count(*) FROM runs WHERE NOT json_valid(config_json)");
    expect_zero(db, "failures say why",
                "SELECT count(*) FROM runs WHERE status = 'FAILED' AND error_message IS NULL");
    CHECK(q_int(db, "SELECT count(*) FROM runs WHERE status = 'COMPLETED'") > 0);
    sqlite3_close(db);

    /* ---- KARR */
    db = open_ro(eng, "karr");
    check_integrity(db, "karr");
    show_mix(db, "campaigns", "SELECT status, count(*) FROM web_campaigns GROUP BY 1 ORDER BY 1");
    show_mix(db, "quick_tests", "SELECT status, count(*) FROM quick_tests GROUP BY 1 ORDER BY 1");
    uint64_t karr_events = count_events(log, NULL, "kittagent") + count_events(log, NULL, "kittrun") +
                           count_events(log, NULL, "kittcampaign") + count_events(log, NULL, "kittquicktest");
    CHECK((uint64_t)q_int(db, "SELECT count(*) FROM events") == karr_events);
    expect_zero(db, "events mirror the log",
                "SELECT count(*) FROM events WHERE source_id IS NULL OR NOT json_valid(data) "
                "OR created_at NOT LIKE '____-__-__T__:__:__.___Z'");
    CHECK(q_int(db, "SELECT count(*) FROM agents") == 12);
    expect_zero(db, "one hardware snapshot per run",
                "SELECT count(*) FROM runs r WHERE (SELECT count(*) FROM hardware h WHERE h.run_id = r.id) != 1");
    expect_zero(db, "finished runs add up",
                "SELECT count(*) FROM runs WHERE raw_json IS NOT NULL AND (NOT json_valid(raw_json) OR "
                "total_benchmarks != passed_count + failed_count OR total_benchmarks != "
                "(SELECT count(*) FROM benchmarks b WHERE b.run_id = runs.id))");
    expect_zero(db, "completed quick tests name a run (or it was deleted)",
                "SELECT count(*) FROM quick_tests WHERE status = 'completed' AND result_id IS NOT NULL "
                "AND result_id NOT IN (SELECT id FROM runs)");
    CHECK(q_int(db, "SELECT count(*) FROM metrics") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM quick_tests WHERE result_id IS NOT NULL") > 0);
    sqlite3_close(db);

    /* ---- SaaS */
    db = open_ro(eng, "saas");
    check_integrity(db, "saas");
    show_mix(db, "simulation_jobs", "SELECT status, count(*) FROM simulation_jobs GROUP BY 1 ORDER BY 1");
    expect_zero(db, "dead column stays dead", "SELECT count(*) FROM simulation_jobs WHERE credits_charged != 0");
    expect_zero(db, "REFUNDED is never reached", "SELECT count(*) FROM simulation_jobs WHERE status = 'REFUNDED'");
    expect_zero(db, "completed jobs have results",
                "SELECT count(*) FROM simulation_jobs WHERE status = 'COMPLETED' AND (completed_at IS NULL "
                "OR result_report IS NULL OR NOT json_valid(result_graph) OR NOT json_valid(result_structured) "
                "OR NOT json_valid(result_chat_log) OR sim_data_available != 1)");
    expect_zero(db, "retries point back",
                "SELECT count(*) FROM simulation_jobs WHERE retry_of IS NOT NULL AND retry_count < 1");
    CHECK(q_int(db, "SELECT count(*) FROM simulation_jobs WHERE status = 'COMPLETED'") > 0);
    CHECK(q_int(db, "SELECT count(*) FROM model_routing") >= 4);
    CHECK(q_int(db, "SELECT count(*) FROM error_events WHERE job_id IS NOT NULL") > 0);
    sqlite3_close(db);

    evl_proj_close(eng);
    evl_gen_free(g[0]);
    evl_gen_free(g[1]);
    evl_log_close(log);
}

/* Each service alone: the generator must not rely on another service's events. */
static void test_single_services(void) {
    for (unsigned bit = 1; bit <= EVL_GEN_ALL; bit <<= 1) {
        char dir[64];
        snprintf(dir, sizeof dir, "solo-%s", evl_gen_service_name(bit));
        evl_log_options lo;
        evl_log_options_init(&lo);
        lo.sync = EVL_SYNC_NONE;
        evl_log *log;
        OK(evl_log_open(test_path(dir), &lo, &log));
        evl_gen *g;
        OK(evl_gen_new(bit * 1000003u, bit, &g));
        for (uint64_t appended = 0; appended < 6000;) {
            const evl_stream_in *s;
            size_t n;
            evl_append_result res;
            OK(evl_gen_next(g, &s, &n));
            OK(evl_log_append(log, s, n, &res));
            appended += res.n_acks;
            evl_free(res.acks);
        }
        evl_proj_engine *eng;
        OK(evl_proj_open(log, &(evl_proj_options){.report = report_line}, &eng));
        OK(evl_proj_wait_all(eng, evl_log_head(log), 60000));
        evl_proj_status *st;
        size_t n_st;
        OK(evl_proj_status_get(eng, NULL, &st, &n_st));
        uint64_t applied = 0;
        for (size_t i = 0; i < n_st; i++) {
            CHECK(st[i].state != EVL_PROJ_FAULTED);
            /* karr's catch-all handler matches every event; count the others */
            if (strcmp(st[i].name, "karr") || bit == EVL_GEN_KARR) applied += st[i].events_applied;
        }
        CHECK(applied > 0);
        printf("%s alone: %llu events applied, no fault\n", evl_gen_service_name(bit), (unsigned long long)applied);
        evl_proj_status_free(st, n_st);
        evl_proj_close(eng);
        evl_gen_free(g);
        evl_log_close(log);
    }
}

int main(void) {
    test_api();
    test_deterministic();
    test_single_services();
    const char *ne = getenv("EVL_GEN_TEST_EVENTS"), *sd = getenv("EVL_GEN_TEST_SEED");
    test_through_projections(ne ? strtoull(ne, NULL, 0) : N_EVENTS, sd ? strtoull(sd, NULL, 0) : SEED);
    TEST_PASS();
}
