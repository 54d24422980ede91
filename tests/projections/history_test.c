/* Field-level history (`-- @history TABLE`).
 *
 * - Insert, update (changed columns only, old and new), an update that
 *   changes nothing, an upsert, REPLACE, a delete, a key change and a
 *   re-insert are recorded with the positions of their events and the
 *   actor of each (a WITHOUT ROWID table too); ?column narrows; a table
 *   without history is refused.
 * - The parser refuses what it cannot key, with file:line.
 * - A rebuild writes the same history, and goes on recording after the
 *   swap; a point-in-time build at P holds exactly the live history up to P.
 * - The built-in tasks, jobs and saas projections under a generated
 *   workload: the history after a rebuild equals the one the live projector
 *   wrote, and after more events equals a fresh build at the new head. */
#include <sys/stat.h>

#include "bench/workloads/gen.h"
#include "evlog/json.h"
#include "evlog/proj.h"
#include "log/util.h"
#include "projections/dump.h"

static const char SPEC[] =
    "-- @projection things\n"
    "-- @history things\n"
    "-- @history tiers tier\n"
    "-- @history kv\n"
    "-- @history runs EXCEPT ticks,beat\n"
    "CREATE TABLE things (id TEXT PRIMARY KEY, name TEXT, n INTEGER, w REAL);\n"
    "CREATE TABLE tiers (id INTEGER PRIMARY KEY AUTOINCREMENT, tier TEXT NOT NULL UNIQUE, model TEXT);\n"
    "CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT);\n"
    "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;\n"
    "CREATE TABLE runs (id TEXT PRIMARY KEY, state TEXT, ticks INTEGER NOT NULL DEFAULT 0, beat TEXT);\n"
    "-- @on Made\n"
    "INSERT INTO things (id, name, n, w) VALUES (:id, :name, :n, :w);\n"
    "INSERT INTO plain (v) VALUES (:name);\n"
    "-- @on Changed\n"
    "UPDATE things SET name = COALESCE(:name, name), n = COALESCE(:n, n), w = COALESCE(:w, w) WHERE id = :id;\n"
    "-- @on Renamed\n"
    "UPDATE things SET id = :to WHERE id = :id;\n"
    "-- @on Replaced\n"
    "INSERT OR REPLACE INTO things (id, name) VALUES (:id, :name);\n"
    "-- @on Gone\n"
    "DELETE FROM things WHERE id = :id;\n"
    "-- @on Tiered\n"
    "INSERT INTO tiers (tier, model) VALUES (:tier, :model) ON CONFLICT (tier) DO UPDATE SET model = excluded.model;\n"
    "-- @on Kv\n"
    "INSERT INTO kv (k, v) VALUES (:k, :v) ON CONFLICT (k) DO UPDATE SET v = excluded.v;\n"
    "-- @on RunMade\n"
    "INSERT INTO runs (id, state, ticks, beat) VALUES (:id, 'new', 1, :beat);\n"
    "-- @on RunTick\n"
    "UPDATE runs SET ticks = ticks + 1, beat = :beat WHERE id = :id;\n"
    "UPDATE runs SET state = COALESCE(:state, state), ticks = ticks + 1 WHERE id = :id;\n"
    "INSERT INTO kv (k, v) VALUES ('run-' || :id, 0) ON CONFLICT (k) DO NOTHING;\n"
    "-- @on RunGone\n"
    "DELETE FROM runs WHERE id = :id;\n";

static uint64_t post(evl_log *log, const char *stream, const char *type, const char *data, const char *actor) {
    json_error_t je;
    json_t *j = json_loads(data, 0, &je);
    CHECK(j != NULL);
    msgpack_sbuffer d, m;
    msgpack_sbuffer_init(&d);
    msgpack_sbuffer_init(&m);
    OK(evl_json_to_msgpack(j, &d));
    json_decref(j);
    json_t *meta = actor ? json_pack("{s:s}", "actor", actor) : json_object();
    OK(evl_json_to_msgpack(meta, &m));
    json_decref(meta);
    evl_event_in ev = {.type = type, .data = d.data, .data_len = d.size, .meta = m.data, .meta_len = m.size};
    evl_stream_in s = {.stream = stream, .expected = EVL_REV_ANY, .events = &ev, .n_events = 1};
    evl_append_result r;
    OK(evl_log_append(log, &s, 1, &r));
    uint64_t pos = r.acks[0].position;
    evl_free(r.acks);
    msgpack_sbuffer_destroy(&d);
    msgpack_sbuffer_destroy(&m);
    return pos;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* The history of one key as compact JSON of [position, op, actor, [[column, old, new]...]] per entry. */
static char *hist(evl_proj_engine *e, const char *table, const char *key, const char *column) {
    json_t *res;
    char err[512];
    int rc = evl_proj_history(e, "things", table, key, column, &res, err, sizeof err);
    if (rc) fprintf(stderr, "history: %s\n", err);
    CHECK(rc == EVL_OK);
    json_t *out = json_array();
    size_t i, k;
    json_t *en, *c;
    json_array_foreach(json_object_get(res, "entries"), i, en) {
        json_t *ch = json_array();
        json_array_foreach(json_object_get(en, "changes"), k, c)
            json_array_append_new(ch, json_pack("[OOO]", json_object_get(c, "column"), json_object_get(c, "old"),
                                                json_object_get(c, "new")));
        json_array_append_new(out, json_pack("[OOOo]", json_object_get(en, "position"), json_object_get(en, "op"),
                                             json_object_get(en, "actor"), ch));
        CHECK(json_is_string(json_object_get(en, "time")) && json_is_string(json_object_get(en, "type")));
    }
    json_decref(res);
    char *s = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    return s;
}

static void expect(char *got, const char *want) {
    if (strcmp(got, want)) fprintf(stderr, "got  %s\nwant %s\n", got, want);
    CHECK(strcmp(got, want) == 0);
    free(got);
}

static void parse_fails(const char *text, const char *want) {
    evl_proj_spec *sp = NULL;
    char err[512];
    CHECK_RC(evl_proj_spec_parse(text, strlen(text), "h.sql", &sp, err, sizeof err), EVL_ESPEC);
    if (!strstr(err, want)) fprintf(stderr, "error '%s' lacks '%s'\n", err, want);
    CHECK(strstr(err, want) != NULL);
}

static json_t *query(evl_proj_engine *e, const char *proj, const char *sql) {
    json_t *res;
    char err[512];
    int rc = evl_proj_query(e, proj, sql, NULL, NULL, &res, err, sizeof err);
    if (rc) fprintf(stderr, "query %s: %s\n", sql, err);
    CHECK(rc == EVL_OK);
    json_t *rows = json_incref(json_object_get(res, "rows"));
    json_decref(res);
    return rows;
}

static void expect_rows(json_t *rows, const char *want) {
    char *got = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    expect(got, want);
}

/* `-- @history runs EXCEPT ticks,beat`: an insert and a delete record the
 * other columns, an update of only ticks and beat records nothing (no
 * entry, no seq), an update of state and ticks records state; the table
 * itself still gets every value; asking for an EXCEPT column is refused.
 * Returns the last position. */
static uint64_t except_columns(evl_log *log, evl_proj_engine *e) {
    uint64_t q1 = post(log, "run-r", "RunMade", "{\"id\":\"r\",\"beat\":\"t1\"}", "ann");
    uint64_t q2 = post(log, "run-r", "RunTick", "{\"id\":\"r\",\"beat\":\"t2\"}", "ben");
    uint64_t q3 = post(log, "run-r", "RunTick", "{\"id\":\"r\",\"beat\":\"t3\",\"state\":\"running\"}", "cat");
    OK(evl_proj_wait(e, "things", q3, 10000));
    expect_rows(query(e, "things", "SELECT state, ticks, beat FROM runs WHERE id = 'r'"), "[[\"running\",5,\"t3\"]]");
    /* q2 changed only EXCEPT columns of runs: its kv insert is the event's first change */
    char sql[256], want[1024];
    snprintf(sql, sizeof sql, "SELECT DISTINCT table_name, position, seq FROM _evl_history WHERE position IN (%llu, %llu)"
             " ORDER BY position, seq", (unsigned long long)q2, (unsigned long long)q3);
    snprintf(want, sizeof want, "[[\"kv\",%llu,0],[\"runs\",%llu,0]]", (unsigned long long)q2, (unsigned long long)q3);
    expect_rows(query(e, "things", sql), want);
    uint64_t q4 = post(log, "run-r", "RunGone", "{\"id\":\"r\"}", "dan");
    OK(evl_proj_wait(e, "things", q4, 10000));
    snprintf(want, sizeof want,
             "[[%llu,\"insert\",\"ann\",[[\"id\",null,\"r\"],[\"state\",null,\"new\"]]],"
             "[%llu,\"update\",\"cat\",[[\"state\",\"new\",\"running\"]]],"
             "[%llu,\"delete\",\"dan\",[[\"id\",\"r\",null],[\"state\",\"running\",null]]]]",
             (unsigned long long)q1, (unsigned long long)q3, (unsigned long long)q4);
    expect(hist(e, "runs", "r", NULL), want);
    expect_rows(query(e, "things", "SELECT count(*) FROM _evl_history WHERE table_name = 'runs' AND"
                                   " column_name IN ('ticks', 'beat')"), "[[0]]");
    json_t *res = NULL;
    char err[512];
    CHECK_RC(evl_proj_history(e, "things", "runs", "r", "ticks", &res, err, sizeof err), EVL_EINVAL);
    CHECK(strstr(err, "column ticks of table runs is not recorded") != NULL);
    CHECK_RC(evl_proj_history(e, "things", "runs", "r", "beat", &res, err, sizeof err), EVL_EINVAL);
    snprintf(want, sizeof want,
             "[[%llu,\"insert\",\"ann\",[[\"state\",null,\"new\"]]],"
             "[%llu,\"update\",\"cat\",[[\"state\",\"new\",\"running\"]]],"
             "[%llu,\"delete\",\"dan\",[[\"state\",\"running\",null]]]]",
             (unsigned long long)q1, (unsigned long long)q3, (unsigned long long)q4);
    expect(hist(e, "runs", "r", "state"), want);
    /* the other tables of the spec record every column */
    expect_rows(query(e, "things", "SELECT * FROM _evl_history_except"), "[[\"runs\",\"beat\"],[\"runs\",\"ticks\"]]");
    return q4;
}

static void parser(void) {
    parse_fails("-- @projection p\n-- @history nope\nCREATE TABLE t (id INTEGER PRIMARY KEY);\n",
                "h.sql:2: @history nope: the DDL creates no table");
    parse_fails("-- @projection p\nCREATE TABLE t (a INTEGER);\n-- @history t\n", "h.sql:3: @history t: the table has no PRIMARY KEY");
    parse_fails("-- @projection p\n-- @history t\nCREATE TABLE t (a INTEGER, b INTEGER, PRIMARY KEY (a, b));\n",
                "h.sql:2: @history t: a composite PRIMARY KEY");
    parse_fails("-- @projection p\n-- @history t b\nCREATE TABLE t (a INTEGER PRIMARY KEY, b INTEGER);\n",
                "h.sql:2: @history t b: b is neither the PRIMARY KEY nor UNIQUE");
    parse_fails("-- @projection p\n-- @history t c\nCREATE TABLE t (a INTEGER PRIMARY KEY, b INTEGER);\n",
                "h.sql:2: @history t c: the table has no column c");
    parse_fails("-- @projection p\n-- @history t\n-- @history t\nCREATE TABLE t (a INTEGER PRIMARY KEY);\n",
                "h.sql:3: a second @history line for table t");
    parse_fails("-- @history t\n-- @projection p\nCREATE TABLE t (a INTEGER PRIMARY KEY);\n",
                "h.sql:1: @history before the @projection line");
    parse_fails("-- @projection p\n-- @history _evl_checkpoint\nCREATE TABLE t (a INTEGER PRIMARY KEY);\n",
                "h.sql:2: @history _evl_checkpoint: evlog's and SQLite's own tables");
    parse_fails("-- @projection p\n-- @history v\nCREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE VIEW v AS SELECT * FROM t;\n",
                "h.sql:2: @history v: the DDL creates no table");
    /* EXCEPT: columns of the table, not the key, once each, separated by commas */
    const char *t = "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE, c INTEGER);\n";
    char text[512];
    static const struct { const char *line, *want; } bad[] = {
        {"t EXCEPT nope", "h.sql:2: @history t: EXCEPT nope: the table has no column nope"},
        {"t EXCEPT c, a", "h.sql:2: @history t: EXCEPT a: a is the key the history is found by"},
        {"t b EXCEPT b", "h.sql:2: @history t: EXCEPT b: b is the key the history is found by"},
        {"t EXCEPT c, b, c", "h.sql:2: @history t: EXCEPT lists c twice"},
        {"t EXCEPT c, C", "h.sql:2: @history t: EXCEPT lists C twice"},
        {"t EXCEPT", "h.sql:2: @history t: EXCEPT wants a list of columns separated by commas"},
        {"t EXCEPT b,", "h.sql:2: @history t: EXCEPT wants a list of columns separated by commas"},
        {"t EXCEPT b c", "h.sql:2: @history t: EXCEPT wants a list of columns separated by commas"},
        {"t EXCEPT ,b", "h.sql:2: @history t: EXCEPT wants a list of columns separated by commas"},
        {"t b c", "h.sql:2: @history wants TABLE [KEY_COLUMN] [EXCEPT COLUMN, ...]"},
        {"t, b", "h.sql:2: @history wants TABLE [KEY_COLUMN] [EXCEPT COLUMN, ...]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "-- @projection p\n-- @history %s\n%s", bad[i].line, t);
        parse_fails(text, bad[i].want);
    }
    /* a UNIQUE column, a composite key with a unique column, WITHOUT ROWID: fine */
    evl_proj_spec *sp;
    char err[512];
    const char *ok = "-- @projection p\n-- @history t b\n-- @history u\n"
                     "CREATE TABLE t (a INTEGER, b TEXT UNIQUE, c INTEGER, PRIMARY KEY (a, c));\n"
                     "CREATE TABLE u (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;\n";
    OK(evl_proj_spec_parse(ok, strlen(ok), "h.sql", &sp, err, sizeof err));
    evl_proj_spec_free(sp);
    static const char *const good[] = {"t EXCEPT c", "t b except c", "t b EXCEPT a,c", "t\tEXCEPT  c ,\tB "};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(text, sizeof text, "-- @projection p\n-- @history %s\n%s", good[i], t);
        int rc = evl_proj_spec_parse(text, strlen(text), "h.sql", &sp, err, sizeof err);
        if (rc) fprintf(stderr, "'%s': %s\n", good[i], err);
        OK(rc);
        evl_proj_spec_free(sp);
    }
}

int main(void) {
    parser();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/specs", test_tmpdir());
    CHECK(mkdir(dir, 0755) == 0);
    char file[700];
    snprintf(file, sizeof file, "%s/things.sql", dir);
    write_file(file, SPEC);
    evl_log *log;
    evl_proj_engine *e;
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    OK(evl_log_open(test_path("data"), &lo, &log));
    const char *dirs[] = {dir};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1};
    OK(evl_proj_open(log, &po, &e));

    uint64_t p1 = post(log, "thing-a", "Made", "{\"id\":\"a\",\"name\":\"x\",\"n\":1,\"w\":0.5}", "alice");
    uint64_t p2 = post(log, "thing-a", "Changed", "{\"id\":\"a\",\"n\":2}", "bob");
    uint64_t p3 = post(log, "thing-a", "Changed", "{\"id\":\"a\",\"n\":2}", "bob"); /* changes nothing */
    uint64_t p4 = post(log, "thing-a", "Changed", "{\"id\":\"a\",\"name\":\"y\",\"w\":1.5}", NULL);
    uint64_t p5 = post(log, "thing-b", "Made", "{\"id\":\"b\",\"name\":\"bee\"}", "carol");
    uint64_t p6 = post(log, "thing-a", "Replaced", "{\"id\":\"a\",\"name\":\"z\"}", "dave");
    uint64_t p7 = post(log, "thing-a", "Renamed", "{\"id\":\"a\",\"to\":\"a2\"}", "erin");
    uint64_t p8 = post(log, "thing-a", "Gone", "{\"id\":\"a2\"}", "frank");
    uint64_t p9 = post(log, "thing-a", "Made", "{\"id\":\"a\",\"name\":\"again\"}", "alice");
    uint64_t p10 = post(log, "tier-fast", "Tiered", "{\"tier\":\"fast\",\"model\":\"m1\"}", "ops");
    uint64_t p11 = post(log, "tier-fast", "Tiered", "{\"tier\":\"fast\",\"model\":\"m2\"}", "bob");
    uint64_t p11b = post(log, "kv-x", "Kv", "{\"k\":\"x\",\"v\":1}", "kim");
    uint64_t p11c = post(log, "kv-x", "Kv", "{\"k\":\"x\",\"v\":2}", "lee");
    CHECK(p3 == p2 + 1);
    OK(evl_proj_wait(e, "things", p11c, 10000));

    char want[2048];
    /* REPLACE deletes the old row then inserts the new one: both recorded */
    snprintf(want, sizeof want,
             "[[%llu,\"insert\",\"alice\",[[\"id\",null,\"a\"],[\"name\",null,\"x\"],[\"n\",null,1],[\"w\",null,0.5]]],"
             "[%llu,\"update\",\"bob\",[[\"n\",1,2]]],"
             "[%llu,\"update\",null,[[\"name\",\"x\",\"y\"],[\"w\",0.5,1.5]]],"
             "[%llu,\"delete\",\"dave\",[[\"id\",\"a\",null],[\"name\",\"y\",null],[\"n\",2,null],[\"w\",1.5,null]]],"
             "[%llu,\"insert\",\"dave\",[[\"id\",null,\"a\"],[\"name\",null,\"z\"]]],"
             "[%llu,\"delete\",\"erin\",[[\"id\",\"a\",null],[\"name\",\"z\",null]]],"
             "[%llu,\"insert\",\"alice\",[[\"id\",null,\"a\"],[\"name\",null,\"again\"]]]]",
             (unsigned long long)p1, (unsigned long long)p2, (unsigned long long)p4, (unsigned long long)p6,
             (unsigned long long)p6, (unsigned long long)p7, (unsigned long long)p9);
    expect(hist(e, "things", "a", NULL), want);
    /* the renamed row's own list: inserted by the rename, deleted at p8 */
    snprintf(want, sizeof want,
             "[[%llu,\"insert\",\"erin\",[[\"id\",null,\"a2\"],[\"name\",null,\"z\"]]],"
             "[%llu,\"delete\",\"frank\",[[\"id\",\"a2\",null],[\"name\",\"z\",null]]]]",
             (unsigned long long)p7, (unsigned long long)p8);
    expect(hist(e, "things", "a2", NULL), want);
    /* one column */
    snprintf(want, sizeof want,
             "[[%llu,\"insert\",\"alice\",[[\"n\",null,1]]],[%llu,\"update\",\"bob\",[[\"n\",1,2]]],"
             "[%llu,\"delete\",\"dave\",[[\"n\",2,null]]]]",
             (unsigned long long)p1, (unsigned long long)p2, (unsigned long long)p6);
    expect(hist(e, "things", "a", "n"), want);
    /* keyed by a UNIQUE column; the upsert's update is one change */
    snprintf(want, sizeof want,
             "[[%llu,\"insert\",\"ops\",[[\"id\",null,1],[\"tier\",null,\"fast\"],[\"model\",null,\"m1\"]]],"
             "[%llu,\"update\",\"bob\",[[\"model\",\"m1\",\"m2\"]]]]",
             (unsigned long long)p10, (unsigned long long)p11);
    expect(hist(e, "tiers", "fast", NULL), want);
    /* a WITHOUT ROWID table */
    snprintf(want, sizeof want, "[[%llu,\"insert\",\"kim\",[[\"k\",null,\"x\"],[\"v\",null,1]]],"
             "[%llu,\"update\",\"lee\",[[\"v\",1,2]]]]", (unsigned long long)p11b, (unsigned long long)p11c);
    expect(hist(e, "kv", "x", NULL), want);
    expect(hist(e, "things", "nobody", NULL), "[]");
    /* refused: a table without history, a column the table lacks */
    json_t *res = NULL;
    char err[512];
    CHECK_RC(evl_proj_history(e, "things", "plain", "1", NULL, &res, err, sizeof err), EVL_ENOTFOUND);
    CHECK(strstr(err, "-- @history plain") != NULL);
    CHECK_RC(evl_proj_history(e, "things", "things", "a", "nope", &res, err, sizeof err), EVL_EINVAL);
    CHECK_RC(evl_proj_history(e, "nothing", "things", "a", NULL, &res, err, sizeof err), EVL_ENOTFOUND);
    uint64_t last = except_columns(log, e);

    /* A rebuild writes the same history, ids included; a build at P has the
     * live history up to P. */
    char *before = dump(evl_proj_db_path(e, "things"));
    CHECK(strstr(before, "\"_evl_history\"") != NULL);
    OK(evl_proj_rebuild(e, "things"));
    OK(evl_proj_rebuild_wait(e, "things", 30000));
    OK(evl_proj_wait(e, "things", last, 10000));
    char *after = dump(evl_proj_db_path(e, "things"));
    if (strcmp(before, after)) fprintf(stderr, "before %s\nafter  %s\n", before, after);
    CHECK(strcmp(before, after) == 0);
    free(after);
    /* and the rebuilt table goes on recording */
    uint64_t p12 = post(log, "thing-b", "Changed", "{\"id\":\"b\",\"n\":5}", "gina");
    OK(evl_proj_wait(e, "things", p12, 10000));
    snprintf(want, sizeof want,
             "[[%llu,\"insert\",\"carol\",[[\"id\",null,\"b\"],[\"name\",null,\"bee\"]]],"
             "[%llu,\"update\",\"gina\",[[\"n\",null,5]]]]",
             (unsigned long long)p5, (unsigned long long)p12);
    expect(hist(e, "things", "b", NULL), want);
    evl_proj_spec *sp;
    OK(evl_proj_spec_parse(SPEC, strlen(SPEC), "things.sql", &sp, err, sizeof err));
    char out[700];
    snprintf(out, sizeof out, "%s/at.db", test_tmpdir());
    uint64_t at;
    OK(evl_proj_build(log, sp, p6, out, &at, err, sizeof err));
    CHECK(at == p6);
    json_t *a, *b;
    evl_proj_query_opts qo = {.max_rows = 100000};
    const char *q = "SELECT * FROM _evl_history WHERE position <= 6 ORDER BY table_name, pk, position, seq, col";
    OK(evl_proj_query_file(out, "SELECT * FROM _evl_history ORDER BY table_name, pk, position, seq, col", NULL, &qo, &a, err, sizeof err));
    OK(evl_proj_query_file(evl_proj_db_path(e, "things"), q, NULL, &qo, &b, err, sizeof err));
    CHECK(p6 == 6 && json_equal(json_object_get(a, "rows"), json_object_get(b, "rows")));
    CHECK(json_array_size(json_object_get(a, "rows")) > 10);
    json_decref(a);
    json_decref(b);
    OK(evl_proj_history_file(log, out, "things", "a", "name", &res, err, sizeof err));
    CHECK(json_array_size(json_object_get(res, "entries")) == 4 && json_integer_value(json_object_get(res, "position")) == 6);
    json_decref(res);
    evl_proj_spec_free(sp);
    free(before);
    evl_proj_close(e);

    /* The built-in tasks projection, fed a generated workload live, then rebuilt. */
    po = (evl_proj_options){0};
    OK(evl_proj_open(log, &po, &e));
    evl_gen *g;
    OK(evl_gen_new(11, EVL_GEN_ALL, &g));
    for (int i = 0; i < 3000; i++) {
        const evl_stream_in *s;
        size_t n;
        OK(evl_gen_next(g, &s, &n));
        evl_append_result r;
        int rc = evl_log_append(log, s, n, &r);
        CHECK(rc == EVL_OK || rc == EVL_ECONFLICT);
        evl_free(r.acks);
    }
    uint64_t head = evl_log_head(log);
    OK(evl_proj_wait_all(e, head, 60000));
    const char *names[] = {"tasks", "jobs", "saas"};
    for (size_t k = 0; k < 3; k++) {
        json_t *cnt;
        /* the earlier rounds appended events that only their projection was waited for */
        OK(evl_proj_wait(e, names[k], head, 60000));
        OK(evl_proj_query(e, names[k], "SELECT count(*) FROM _evl_history", NULL, NULL, &cnt, err, sizeof err));
        json_int_t n = json_integer_value(json_array_get(json_array_get(json_object_get(cnt, "rows"), 0), 0));
        json_decref(cnt);
        printf("%s: %lld history rows\n", names[k], (long long)n);
        CHECK(n > 0);
        /* the EXCEPT columns of the built-in specs: moved by the workload, never recorded */
        static const char *const noise[][3] = {
            {"jobs", "SELECT count(*) FROM jobs WHERE progress > 0 AND downloaded_bytes > 0",
             "SELECT count(*) FROM _evl_history WHERE column_name IN ('progress', 'downloaded_bytes')"},
            {"saas", "SELECT count(*) FROM simulation_jobs WHERE live_status IS NOT NULL AND last_heartbeat IS NOT NULL",
             "SELECT count(*) FROM _evl_history WHERE column_name IN ('last_heartbeat', 'live_status')"},
        };
        for (size_t x = 0; x < 2; x++) {
            if (strcmp(noise[x][0], names[k])) continue;
            json_t *moved = query(e, names[k], noise[x][1]);
            CHECK(json_integer_value(json_array_get(json_array_get(moved, 0), 0)) > 0);
            json_decref(moved);
            expect_rows(query(e, names[k], noise[x][2]), "[[0]]");
            expect_rows(query(e, names[k], "SELECT count(*) > 0 FROM _evl_history WHERE column_name = 'status'"
                                           " AND op = 'update'"), "[[1]]");
        }
        char *live = dump(evl_proj_db_path(e, names[k]));
        OK(evl_proj_rebuild(e, names[k]));
        OK(evl_proj_rebuild_wait(e, names[k], 60000));
        OK(evl_proj_wait(e, names[k], head, 60000));
        char *rebuilt = dump(evl_proj_db_path(e, names[k]));
        if (strcmp(live, rebuilt)) fprintf(stderr, "%s: history differs after a rebuild\n", names[k]);
        CHECK(strcmp(live, rebuilt) == 0);
        /* the rebuilt file goes on recording: equal to a build to the new head */
        for (int i = 0; i < 200; i++) {
            const evl_stream_in *s;
            size_t n;
            OK(evl_gen_next(g, &s, &n));
            evl_append_result r;
            int rc = evl_log_append(log, s, n, &r);
            CHECK(rc == EVL_OK || rc == EVL_ECONFLICT);
            evl_free(r.acks);
        }
        head = evl_log_head(log);
        OK(evl_proj_wait(e, names[k], head, 60000));
        size_t nb;
        const evl_proj_builtin *b = evl_proj_builtins(&nb);
        for (size_t x = 0; x < nb; x++) {
            evl_proj_spec *bs;
            OK(evl_proj_spec_parse(b[x].text, b[x].len, b[x].file, &bs, err, sizeof err));
            if (!strcmp(evl_proj_spec_name(bs), names[k])) {
                snprintf(out, sizeof out, "%s/%s-head.db", test_tmpdir(), names[k]);
                OK(evl_proj_build(log, bs, head, out, &at, err, sizeof err));
                char *fresh = dump(out), *now = dump(evl_proj_db_path(e, names[k]));
                if (strcmp(fresh, now)) fprintf(stderr, "%s: after the swap the history stopped\n", names[k]);
                CHECK(strcmp(fresh, now) == 0);
                free(fresh);
                free(now);
            }
            evl_proj_spec_free(bs);
        }
        free(live);
        free(rebuilt);
    }
    evl_gen_free(g);
    evl_proj_close(e);
    evl_log_close(log);
    TEST_PASS();
}
