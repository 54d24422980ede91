/* The projection engine through its C API: every binding rule, parse
 * errors with lines, fault isolation, read-your-writes, query limits, and
 * a spec change rebuilding the table. */
#include <msgpack.h>
#include <sys/stat.h>

#include "evlog/json.h"
#include "evlog/proj.h"
#include "log/util.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

static const char BIND_SQL[] =
    "-- @projection bind\n"
    "CREATE TABLE seen (pos INTEGER PRIMARY KEY, s, i, f, b, n, missing, obj, arr, actor, no_meta,\n"
    "  stream, type, rev, id, time, time_ns, category, data, meta);\n"
    "-- @on *\n"
    "INSERT INTO seen VALUES (@position, :s, :i, :f, :b, :n, :missing, :obj, :arr, $actor, $nope,\n"
    "  @stream, @type, @revision, @id, @time, @time_ns, @category, @data, @meta);\n";

static const char FRAGILE_SQL[] =
    "-- @projection fragile\n"
    "CREATE TABLE things (id TEXT PRIMARY KEY, name TEXT NOT NULL);\n"
    "-- @on ThingMade\n"
    "INSERT INTO things (id, name) VALUES (@stream, :name);\n";

static const char COUNT_SQL[] =
    "-- @projection counter\n"
    "CREATE TABLE counts (type TEXT PRIMARY KEY, n INTEGER NOT NULL);\n"
    "-- @on ThingMade\n"
    "-- @on Pinged\n"
    "INSERT INTO counts VALUES (@type, 1) ON CONFLICT(type) DO UPDATE SET n = n + 1;\n"
    "-- this comment between handlers is fine\n"
    "-- @on Reset\n"
    "DELETE FROM counts;\n"
    "INSERT INTO counts VALUES ('reset', 1);\n";

/* Run a query; return the JSON text of its rows (caller frees). */
static char *rows_of(evl_proj_engine *e, const char *proj, const char *sql) {
    json_t *res;
    char err[256];
    int rc = evl_proj_query(e, proj, sql, NULL, NULL, &res, err, sizeof err);
    if (rc) fprintf(stderr, "query %s: %s\n", sql, err);
    CHECK(rc == EVL_OK);
    char *s = json_dumps(json_object_get(res, "rows"), JSON_COMPACT);
    json_decref(res);
    return s;
}

static void expect_rows(evl_proj_engine *e, const char *proj, const char *sql, const char *want) {
    char *got = rows_of(e, proj, sql);
    if (strcmp(got, want)) fprintf(stderr, "%s\n  got  %s\n  want %s\n", sql, got, want);
    CHECK(strcmp(got, want) == 0);
    free(got);
}

static uint64_t append_json(evl_log *log, const char *stream, const char *type, const char *data, const char *meta) {
    json_error_t je;
    json_t *d = json_loads(data, 0, &je), *m = meta ? json_loads(meta, 0, &je) : NULL;
    msgpack_sbuffer db, mb;
    msgpack_sbuffer_init(&db);
    msgpack_sbuffer_init(&mb);
    OK(evl_json_to_msgpack(d, &db));
    if (m) OK(evl_json_to_msgpack(m, &mb));
    evl_event_in ev = {.type = type, .data = db.data, .data_len = db.size,
                       .meta = m ? mb.data : NULL, .meta_len = m ? mb.size : 0};
    evl_stream_in s = {.stream = stream, .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
    evl_append_result r;
    OK(evl_log_append(log, &s, 1, &r));
    uint64_t pos = r.acks[0].position;
    evl_free(r.acks);
    msgpack_sbuffer_destroy(&db);
    msgpack_sbuffer_destroy(&mb);
    json_decref(d);
    json_decref(m);
    return pos;
}

static void test_parse_errors(void) {
    static const struct { const char *src, *want; } cases[] = {
        {"CREATE TABLE t (a);\n", "x.sql:1: SQL before the '-- @projection NAME' line"},
        {"-- @projection Bad-Name\nCREATE TABLE t (a);\n", "x.sql:1: projection name"},
        {"-- @projection p\n-- @on A\nINSERT INTO t VALUES (1);\n", "x.sql:2: handler before any DDL"},
        {"-- @projection p\nCREATE TABLE t (a);\n-- @frobnicate\n", "x.sql:3: unknown directive @frobnicate"},
        {"-- @projection p\nCREATE TABLE t (a);\n\n-- @on A\nINSERT INTO nope VALUES (1);\n", "x.sql:5: no such table: nope"},
        {"-- @projection p\nCREATE TABLE t (a);\n-- @on A\nINSERT INTO t VALUES (@bogus);\n", "x.sql:4: unknown parameter @bogus"},
        {"-- @projection p\nCREATE TABLE t (a);\n-- @on A\nINSERT INTO t VALUES (?);\n", "x.sql:4: positional parameter"},
        {"-- @projection p\nCREATE TABLE t (a);\nCREATE TABLE t (b);\n", "x.sql:3: table t already exists"},
        {"-- @projection p\nCREATE TABLE t (a);\n-- @on A\n", "x.sql:3: handler has no SQL statement"},
        {"-- @projection p\nCREATE TABLE t (a);\n-- @on A\nATTACH 'x.db' AS x;\n", "x.sql:4: not authorized"},
        {"-- @projection p\nCREATE TABLE t (a);\n-- @on A\nBEGIN;\n", "x.sql:4: not authorized"},
        {"-- @projection p\n-- @projection q\nCREATE TABLE t (a);\n", "x.sql:2: a second @projection line"},
        {"", "x.sql:1: missing '-- @projection NAME' line"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        evl_proj_spec *sp;
        char err[512];
        int rc = evl_proj_spec_parse(cases[i].src, strlen(cases[i].src), "x.sql", &sp, err, sizeof err);
        if (rc != EVL_ESPEC || strncmp(err, cases[i].want, strlen(cases[i].want)))
            fprintf(stderr, "case %zu: rc %s, err '%s', want '%s'\n", i, evl_errname(rc), err, cases[i].want);
        CHECK(rc == EVL_ESPEC && !strncmp(err, cases[i].want, strlen(cases[i].want)));
    }
    evl_proj_spec *sp;
    char err[256];
    OK(evl_proj_spec_parse(COUNT_SQL, strlen(COUNT_SQL), "c.sql", &sp, err, sizeof err));
    CHECK(!strcmp(evl_proj_spec_name(sp), "counter") && strlen(evl_proj_spec_hash(sp)) == 16);
    evl_proj_spec_free(sp);
}

/* Appends Pinged events until told to stop. */
static void *pinger(void *p) {
    struct { evl_log *log; volatile int *stop; } *a = p;
    while (!*a->stop) {
        evl_event_in ev = {.type = "Pinged"};
        evl_stream_in s = {.stream = "ping-1", .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
        evl_append_result r;
        OK(evl_log_append(a->log, &s, 1, &r));
        evl_free(r.acks);
    }
    return NULL;
}

typedef struct reports { int n; char last[512]; } reports;
static void on_report(void *arg, const char *line) {
    reports *r = arg;
    r->n++;
    snprintf(r->last, sizeof r->last, "%s", line);
}

int main(void) {
    test_parse_errors();
    const char *data = test_path("data"), *specs = test_path("specs");
    mkdir(specs, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/bind.sql", specs);   write_file(path, BIND_SQL);
    snprintf(path, sizeof path, "%s/fragile.sql", specs); write_file(path, FRAGILE_SQL);
    snprintf(path, sizeof path, "%s/counter.sql", specs); write_file(path, COUNT_SQL);
    snprintf(path, sizeof path, "%s/broken.sql", specs);
    write_file(path, "-- @projection broken\nCREATE TABLE b (x);\n-- @on X\nINSERT INTO b VALUES (:x\n");
    snprintf(path, sizeof path, "%s/dup.sql", specs);
    write_file(path, "-- @projection counter\nCREATE TABLE z (x);\n");

    evl_log *log;
    OK(evl_log_open(data, NULL, &log));
    reports rep = {0, ""};
    const char *dirs[] = {specs};
    evl_proj_options opt = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1, .report = on_report, .report_arg = &rep};
    evl_proj_engine *e;
    OK(evl_proj_open(log, &opt, &e));
    CHECK(rep.n == 2); /* broken.sql and dup.sql skipped, with reasons */
    evl_proj_status *st;
    size_t n;
    OK(evl_proj_status_get(e, NULL, &st, &n));
    CHECK(n == 3);
    evl_proj_status_free(st, n);
    CHECK_RC(evl_proj_status_get(e, "broken", &st, &n), EVL_ENOTFOUND);

    /* binding rules */
    uint64_t p1 = append_json(log, "thing-1", "ThingMade",
        "{\"s\":\"text\",\"i\":-42,\"f\":1.5,\"b\":true,\"n\":null,\"obj\":{\"x\":[1,2]},\"arr\":[\"a\",{\"b\":1}],\"name\":\"one\"}",
        "{\"actor\":\"alice\"}");
    OK(evl_proj_wait(e, "bind", p1, 5000));
    expect_rows(e, "bind", "SELECT pos, s, i, f, b, n, missing, actor, no_meta, stream, type, rev, category FROM seen",
                "[[1,\"text\",-42,1.5,1,null,null,\"alice\",null,\"thing-1\",\"ThingMade\",0,\"thing\"]]");
    expect_rows(e, "bind", "SELECT typeof(s), typeof(i), typeof(f), typeof(b), typeof(n), typeof(obj) FROM seen",
                "[[\"text\",\"integer\",\"real\",\"integer\",\"null\",\"text\"]]");
    expect_rows(e, "bind", "SELECT obj, json_extract(obj, '$.x[1]'), arr ->> '$[1].b', json_valid(data), meta FROM seen",
                "[[\"{\\\"x\\\":[1,2]}\",2,1,1,\"{\\\"actor\\\":\\\"alice\\\"}\"]]");
    expect_rows(e, "bind", "SELECT length(id), substr(id, 15, 1), time LIKE '____-__-__T__:__:__.___Z', time_ns > 0 FROM seen",
                "[[36,\"7\",1,1]]");
    {   /* @time is the commit time, in milliseconds */
        uint8_t *raw;
        size_t len;
        evl_event ev;
        char t[40];
        OK(evl_log_get(log, p1, &raw, &len));
        OK(evl_log_decode(raw, len, &ev));
        evl_time_format(ev.time_ns, 3, t);
        char want[128];
        snprintf(want, sizeof want, "[[\"%s\",%lld]]", t, (long long)ev.time_ns);
        expect_rows(e, "bind", "SELECT time, time_ns FROM seen", want);
        evl_free(raw);
    }
    /* fault isolation: a NOT NULL violation faults "fragile" at that event alone */
    uint64_t p2 = append_json(log, "thing-2", "ThingMade", "{\"name\":\"two\"}", NULL);
    uint64_t p3 = append_json(log, "thing-3", "ThingMade", "{}", NULL); /* no name */
    uint64_t p4 = append_json(log, "thing-4", "Pinged", "{}", NULL);
    CHECK_RC(evl_proj_wait(e, "fragile", p4, 5000), EVL_EFAULTED);
    OK(evl_proj_wait(e, "counter", p4, 5000));
    OK(evl_proj_wait(e, "bind", p4, 5000));
    OK(evl_proj_status_get(e, "fragile", &st, &n));
    CHECK(n == 1 && st[0].state == EVL_PROJ_FAULTED && st[0].fault_position == p3);
    CHECK(st[0].checkpoint == p3 - 1); /* the events before it are applied */
    CHECK(!strcmp(st[0].fault_type, "ThingMade"));
    CHECK(strstr(st[0].error, "NOT NULL constraint failed: things.name") && strstr(st[0].error, "fragile.sql:4"));
    evl_proj_status_free(st, n);
    CHECK(strstr(rep.last, "fragile faulted at position"));
    expect_rows(e, "fragile", "SELECT id, name FROM things ORDER BY id", "[[\"thing-1\",\"one\"],[\"thing-2\",\"two\"]]");
    expect_rows(e, "counter", "SELECT type, n FROM counts ORDER BY type", "[[\"Pinged\",1],[\"ThingMade\",3]]");
    (void)p2;
    /* status of a healthy projection */
    OK(evl_proj_status_get(e, "counter", &st, &n));
    CHECK(st[0].state == EVL_PROJ_LIVE && st[0].checkpoint == p4 && st[0].lag == 0 && st[0].events_applied == 4);
    CHECK(st[0].n_tables == 1 && !strcmp(st[0].tables[0].name, "counts") && st[0].tables[0].rows == 2);
    evl_proj_status_free(st, n);
    /* several statements per handler run in order */
    uint64_t p5 = append_json(log, "thing-5", "Reset", "{}", NULL);
    OK(evl_proj_wait(e, "counter", p5, 5000));
    expect_rows(e, "counter", "SELECT type, n FROM counts", "[[\"reset\",1]]");

    /* queries: read-only, bounded */
    json_t *res;
    char err[256];
    CHECK_RC(evl_proj_query(e, "counter", "INSERT INTO counts VALUES ('x', 1)", NULL, NULL, &res, err, sizeof err), EVL_EWRITESQL);
    CHECK_RC(evl_proj_query(e, "counter", "DELETE FROM counts", NULL, NULL, &res, err, sizeof err), EVL_EWRITESQL);
    CHECK_RC(evl_proj_query(e, "counter", "ATTACH '/tmp/x.db' AS x", NULL, NULL, &res, err, sizeof err), EVL_ESQL);
    CHECK_RC(evl_proj_query(e, "counter", "PRAGMA journal_mode=DELETE", NULL, NULL, &res, err, sizeof err), EVL_ESQL);
    CHECK_RC(evl_proj_query(e, "counter", "SELECT load_extension('x')", NULL, NULL, &res, err, sizeof err), EVL_ESQL);
    CHECK_RC(evl_proj_query(e, "counter", "SELECT 1; SELECT 2", NULL, NULL, &res, err, sizeof err), EVL_ESQL);
    CHECK_RC(evl_proj_query(e, "counter", "SELEC 1", NULL, NULL, &res, err, sizeof err), EVL_ESQL);
    CHECK(strstr(err, "syntax error"));
    CHECK_RC(evl_proj_query(e, "nope", "SELECT 1", NULL, NULL, &res, err, sizeof err), EVL_ENOTFOUND);
    evl_proj_query_opts lim = {.max_rows = 5, .timeout_ms = 200};
    OK(evl_proj_query(e, "counter", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100) SELECT x FROM c",
                      NULL, &lim, &res, err, sizeof err));
    CHECK(json_array_size(json_object_get(res, "rows")) == 5 && json_is_true(json_object_get(res, "truncated")));
    json_decref(res);
    CHECK_RC(evl_proj_query(e, "counter", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                            NULL, &lim, &res, err, sizeof err), EVL_ELIMIT);
    json_t *params = json_pack("{s:s}", "t", "reset");
    OK(evl_proj_query(e, "counter", "SELECT n FROM counts WHERE type = :t", params, NULL, &res, err, sizeof err));
    CHECK(json_integer_value(json_array_get(json_array_get(json_object_get(res, "rows"), 0), 0)) == 1);
    CHECK(json_integer_value(json_object_get(res, "position")) == (json_int_t)p5);
    json_decref(res);
    json_decref(params);
    CHECK_RC(evl_proj_query(e, "counter", "SELECT n FROM counts WHERE type = :t", NULL, NULL, &res, err, sizeof err), EVL_EINVAL);
    {   /* the stock sqlite3 tool reads a projection file while the projector writes it */
        pthread_t t;
        volatile int stop = 0;
        struct { evl_log *log; volatile int *stop; } arg = {log, &stop};
        CHECK(pthread_create(&t, NULL, pinger, &arg) == 0);
        long last = -1;
        for (int i = 0; i < 20; i++) {
            char cmd[1024], out[64] = "";
            snprintf(cmd, sizeof cmd, "sqlite3 -readonly '%s' \"SELECT coalesce(sum(n), 0) FROM counts WHERE type = 'Pinged'\" 2>&1",
                     evl_proj_db_path(e, "counter"));
            FILE *pf = popen(cmd, "r");
            CHECK(pf && fgets(out, sizeof out, pf));
            int st_ = pclose(pf);
            if (st_ != 0) fprintf(stderr, "sqlite3 failed: %s\n", out);
            CHECK(st_ == 0);
            char *end;
            long v = strtol(out, &end, 10);
            if (end == out) fprintf(stderr, "sqlite3 said: %s\n", out);
            CHECK(end != out && v >= last); /* a number, never going back */
            last = v;
        }
        stop = 1;
        pthread_join(t, NULL);
        CHECK(last >= 0);
    }
    evl_proj_close(e);

    /* restart: resumes from the checkpoint (no double counting), and a
     * changed spec is rebuilt from position 1 */
    OK(evl_proj_open(log, &opt, &e));
    uint64_t p6 = append_json(log, "thing-6", "Pinged", "{}", NULL);
    OK(evl_proj_wait(e, "counter", p6, 5000));
    uint64_t pings = count_query(log, &(evl_query){.type = "Pinged", .from_position = p5});
    char want[128];
    snprintf(want, sizeof want, "[[\"Pinged\",%llu],[\"reset\",1]]", (unsigned long long)pings);
    expect_rows(e, "counter", "SELECT type, n FROM counts ORDER BY type", want);
    evl_proj_close(e);
    snprintf(path, sizeof path, "%s/counter.sql", specs);
    write_file(path, "-- @projection counter\nCREATE TABLE counts (type TEXT PRIMARY KEY, n INTEGER NOT NULL, last INTEGER);\n"
                     "-- @on *\nINSERT INTO counts VALUES (@type, 1, @position) ON CONFLICT(type) DO UPDATE SET n = n + 1, last = @position;\n");
    rep.n = 0;
    OK(evl_proj_open(log, &opt, &e));
    OK(evl_proj_rebuild_wait(e, "counter", 10000));
    OK(evl_proj_wait(e, "counter", p6, 5000));
    snprintf(want, sizeof want, "[[\"Pinged\",%llu,%llu],[\"Reset\",1,5],[\"ThingMade\",3,3]]",
             (unsigned long long)pings + 1, (unsigned long long)p6);
    expect_rows(e, "counter", "SELECT type, n, last FROM counts ORDER BY type", want);
    CHECK(strstr(rep.last, "spec changed") || rep.n >= 3);
    evl_proj_close(e);
    evl_log_close(log);
    TEST_PASS();
}
