/* The reader thread ahead of the projector (projections/source.c): the
 * tables it builds equal those of the projector reading alone, byte for
 * byte, for every built-in projection and for batch sizes that stop the
 * projector in the middle of what the reader read; a handler that fails in
 * the middle of a long batch faults at exactly its event, with every event
 * before it applied once, and maps and arrays bound as the same JSON text. */
#include <dirent.h>
#include <jansson.h>
#include <msgpack.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump.h"
#include "gen.h"
#include "evlog/log.h"
#include "evlog/proj.h"
#include "test.h"

#define N_EVENTS 40000

static void quiet(void *arg, const char *line) {
    (void)arg;
    (void)line;
}

/* Every projection file of DATA/projections dumped, "NAME=dump" lines in
 * name order; the files are removed afterwards, so the next build starts
 * from position 1.  Caller frees. */
static char *build_all(evl_log *log, const char *data, size_t batch, int no_readahead) {
    evl_proj_options po = {.report = quiet, .batch_events = batch, .no_readahead = no_readahead};
    evl_proj_engine *eng;
    OK(evl_proj_open(log, &po, &eng));
    OK(evl_proj_wait_all(eng, evl_log_head(log), 120000));
    evl_proj_status *st;
    size_t n;
    OK(evl_proj_status_get(eng, NULL, &st, &n));
    CHECK(n >= 7);
    for (size_t i = 0; i < n; i++) {
        if (st[i].state == EVL_PROJ_FAULTED) fprintf(stderr, "%s: %s\n", st[i].name, st[i].error);
        CHECK(st[i].state != EVL_PROJ_FAULTED);
        CHECK(st[i].checkpoint == evl_log_head(log));
    }
    evl_proj_status_free(st, n);
    evl_proj_close(eng);

    char dir[600], path[1200];
    snprintf(dir, sizeof dir, "%s/projections", data);
    struct dirent **names;
    int nn = scandir(dir, &names, NULL, alphasort);
    CHECK(nn > 0);
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    CHECK(out);
    out[0] = 0;
    for (int i = 0; i < nn; i++) {
        const char *f = names[i]->d_name;
        size_t fl = strlen(f);
        if (fl > 3 && !strcmp(f + fl - 3, ".db")) {
            snprintf(path, sizeof path, "%s/%s", dir, f);
            char *d = dump(path);
            size_t need = len + fl + strlen(d) + 3;
            if (need > cap) {
                cap = need * 2;
                CHECK((out = realloc(out, cap)));
            }
            len += (size_t)sprintf(out + len, "%s=%s\n", f, d);
            free(d);
        }
    }
    for (int i = 0; i < nn; i++) {
        if (names[i]->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            CHECK(unlink(path) == 0);
        }
        free(names[i]);
    }
    free(names);
    return out;
}

static void test_same_tables(void) {
    const char *data = test_path("gen");
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    evl_log *log;
    OK(evl_log_open(data, &lo, &log));
    evl_gen *g;
    OK(evl_gen_new(7, EVL_GEN_ALL, &g));
    for (uint64_t appended = 0; appended < N_EVENTS;) {
        const evl_stream_in *s;
        size_t n;
        evl_append_result res;
        OK(evl_gen_next(g, &s, &n));
        OK(evl_log_append(log, s, n, &res));
        appended += res.n_acks;
        evl_free(res.acks);
    }
    evl_gen_free(g);
    char *alone = build_all(log, data, 10000, 1);
    char *ahead = build_all(log, data, 10000, 0);
    /* the projector stops every 5000 events, mid-chunk, with the reader ahead of it */
    char *stops = build_all(log, data, 5000, 0);
    CHECK(strlen(alone) > 1000);
    CHECK(!strcmp(alone, ahead));
    CHECK(!strcmp(alone, stops));
    printf("read-ahead: %zu bytes of tables, identical at batch 10000 and 5000\n", strlen(alone));
    free(alone);
    free(ahead);
    free(stops);
    evl_log_close(log);
}

/* {"n": n, "g": [n, {"a": 1.5, "s": "x"}]} */
static void pack_tick(msgpack_sbuffer *sb, int64_t n) {
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_int64(&pk, n);
    msgpack_pack_str_with_body(&pk, "g", 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int64(&pk, n);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_double(&pk, 1.5 + (double)n / 1024.0);
    msgpack_pack_str_with_body(&pk, "s", 1);
    msgpack_pack_str_with_body(&pk, "x\"y", 3);
}

static void test_fault_mid_batch(int no_readahead) {
    char name[64];
    snprintf(name, sizeof name, "fault-%d", no_readahead);
    const char *data = test_path(name);
    snprintf(name, sizeof name, "specs-%d", no_readahead);
    const char *specs = test_path(name);
    CHECK(mkdir(specs, 0755) == 0);
    char file[600];
    snprintf(file, sizeof file, "%s/boom.sql", specs);
    FILE *f = fopen(file, "w");
    CHECK(f);
    fputs("-- @projection boom\n"
          "CREATE TABLE seen (pos INTEGER PRIMARY KEY, n INTEGER NOT NULL CHECK (n <> 7777), g TEXT);\n"
          "-- @on Tick\n"
          "INSERT INTO seen (pos, n, g) VALUES (@position, :n, :g);\n", f);
    CHECK(fclose(f) == 0);

    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    evl_log *log;
    OK(evl_log_open(data, &lo, &log));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    /* Ticks with an Other between them now and then: an event no handler
     * wants also moves the checkpoint */
    uint64_t fail_pos = 0;
    for (int64_t n = 0; n < 20000; n++) {
        pack_tick(&sb, n);
        evl_event_in ev[2] = {{.type = "Tick", .data = sb.data, .data_len = sb.size}, {.type = "Other"}};
        evl_stream_in s = {.stream = "ticks", .expected = EVL_REV_ANY, .events = ev, .n_events = n % 3 ? 1 : 2};
        evl_append_result res;
        OK(evl_log_append(log, &s, 1, &res));
        if (n == 7777) fail_pos = res.acks[0].position;
        evl_free(res.acks);
    }
    msgpack_sbuffer_destroy(&sb);
    const char *dirs[1] = {specs};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1, .report = quiet,
                           .no_readahead = no_readahead};
    evl_proj_engine *eng;
    OK(evl_proj_open(log, &po, &eng));
    CHECK_RC(evl_proj_wait(eng, "boom", evl_log_head(log), 60000), EVL_EFAULTED);
    evl_proj_status *st;
    size_t n;
    OK(evl_proj_status_get(eng, "boom", &st, &n));
    CHECK(n == 1 && st[0].state == EVL_PROJ_FAULTED);
    CHECK(st[0].fault_position == fail_pos);
    CHECK(st[0].checkpoint == fail_pos - 1);
    CHECK(st[0].fault_type && !strcmp(st[0].fault_type, "Tick"));
    CHECK(st[0].error && strstr(st[0].error, "CHECK constraint failed"));
    evl_proj_status_free(st, n);
    json_t *res;
    char err[256];
    OK(evl_proj_query(eng, "boom", "SELECT count(*), count(DISTINCT n), min(n), max(n), max(pos) FROM seen",
                      NULL, NULL, &res, err, sizeof err));
    json_t *row = json_array_get(json_object_get(res, "rows"), 0);
    CHECK(json_integer_value(json_array_get(row, 0)) == 7777);
    CHECK(json_integer_value(json_array_get(row, 1)) == 7777);
    CHECK(json_integer_value(json_array_get(row, 2)) == 0);
    CHECK(json_integer_value(json_array_get(row, 3)) == 7776);
    CHECK((uint64_t)json_integer_value(json_array_get(row, 4)) < fail_pos);
    json_decref(res);
    /* the array bound as JSON text, as the reference conversion writes it */
    OK(evl_proj_query(eng, "boom", "SELECT g FROM seen WHERE n = 4097", NULL, NULL, &res, err, sizeof err));
    const char *g = json_string_value(json_array_get(json_array_get(json_object_get(res, "rows"), 0), 0));
    CHECK(g && !strcmp(g, "[4097,{\"a\":5.5009765625,\"s\":\"x\\\"y\"}]"));
    json_decref(res);
    evl_proj_close(eng);
    evl_log_close(log);
}

int main(void) {
    test_same_tables();
    test_fault_mid_batch(0);
    test_fault_mid_batch(1);
    TEST_PASS();
}
