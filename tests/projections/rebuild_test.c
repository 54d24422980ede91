/* Rebuilds without downtime.
 *
 * - Schema change under load: appenders run throughout while a spec gains a
 *   column and changes a rule (a reload); a reader queries all the while.
 *   It never sees an error, an empty table or a position going back; after
 *   the swap the table equals a from-scratch build and the events applied
 *   equal the head.
 * - An on-demand rebuild with the same spec: a new generation, same rows,
 *   the old generation's files gone.
 * - A new spec that fails: the old table keeps serving and being fed.
 * - A faulted projection rebuilt after its file is fixed.
 * - A new file on reload starts a new projection.
 * - kill -9 in the middle of a rebuild: on restart the old table serves,
 *   the rebuild starts again and ends equal to a from-scratch build. */
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "evlog/proj.h"
#include "log/util.h"
#include "projections/dump.h"

static const char V1[] =
    "-- @projection things\n"
    "CREATE TABLE things (stream TEXT PRIMARY KEY, n INTEGER NOT NULL, last INTEGER NOT NULL);\n"
    "-- @on *\n"
    "INSERT INTO things VALUES (@stream, 1, @position)\n"
    "  ON CONFLICT(stream) DO UPDATE SET n = n + 1, last = @position;\n";
/* a new column, and a rule that reads a field v1 ignored */
static const char V2[] =
    "-- @projection things\n"
    "CREATE TABLE things (stream TEXT PRIMARY KEY, n INTEGER NOT NULL, last INTEGER NOT NULL,\n"
    "                     total INTEGER NOT NULL);\n"
    "CREATE INDEX things_total ON things (total);\n"
    "-- @on *\n"
    "INSERT INTO things VALUES (@stream, 1, @position, coalesce(:n, 0))\n"
    "  ON CONFLICT(stream) DO UPDATE SET n = n + 1, last = @position, total = total + coalesce(:n, 0);\n";
/* fails at the second event of any stream */
static const char V3_BROKEN[] =
    "-- @projection things\n"
    "CREATE TABLE things (stream TEXT PRIMARY KEY, n INTEGER NOT NULL, last INTEGER NOT NULL,\n"
    "                     total INTEGER NOT NULL);\n"
    "-- @on *\n"
    "INSERT INTO things VALUES (@stream, 1, @position, 0);\n";

static int64_t evl__mono_ns_test(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

static void append_some(evl_log *log, int64_t from, int n_batches) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int b = 0; b < n_batches; b++) {
        evl_event_in ev[50];
        char stream[32];
        snprintf(stream, sizeof stream, "thing-%d", (int)((from + b) % 97));
        pack_data(&sb, from + b, "x");
        for (int k = 0; k < 50; k++) ev[k] = (evl_event_in){.type = k % 2 ? "Ticked" : "Tocked", .data = sb.data, .data_len = sb.size};
        evl_stream_in s = {.stream = stream, .expected = EVL_REV_ANY, .events = ev, .n_events = 50};
        evl_append_result r;
        OK(evl_log_append(log, &s, 1, &r));
        evl_free(r.acks);
    }
    msgpack_sbuffer_destroy(&sb);
}

static evl_proj_spec *parse(const char *text) {
    evl_proj_spec *sp;
    char err[512];
    int rc = evl_proj_spec_parse(text, strlen(text), "test.sql", &sp, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    OK(rc);
    return sp;
}

/* The live table equals a from-scratch build of spec text at the same head. */
static void equals_scratch(evl_log *log, evl_proj_engine *e, const char *text, const char *name) {
    uint64_t head = evl_log_head(log), at;
    OK(evl_proj_wait(e, "things", head, 30000));
    evl_proj_spec *sp = parse(text);
    char err[512];
    const char *out = test_path(name);
    OK(evl_proj_build(log, sp, head, out, &at, err, sizeof err));
    CHECK(at == head);
    char *live = dump(evl_proj_db_path(e, "things")), *scratch = dump(out);
    if (strcmp(live, scratch)) fprintf(stderr, "live:    %.300s\nscratch: %.300s\n", live, scratch);
    CHECK(strcmp(live, scratch) == 0);
    free(live);
    free(scratch);
    evl_proj_spec_free(sp);
}

static int64_t scalar(evl_proj_engine *e, const char *name, const char *sql, int *rc_out) {
    json_t *res;
    char err[256];
    int rc = evl_proj_query(e, name, sql, NULL, NULL, &res, err, sizeof err);
    if (rc_out) *rc_out = rc;
    if (rc) {
        if (!rc_out) fprintf(stderr, "%s: %s\n", sql, err);
        return -1;
    }
    int64_t v = json_integer_value(json_array_get(json_array_get(json_object_get(res, "rows"), 0), 0));
    json_decref(res);
    return v;
}

static int has_column(evl_proj_engine *e, const char *col) {
    json_t *res, *c;
    char err[256];
    size_t i;
    int found = 0;
    int rc = evl_proj_query(e, "things", "SELECT * FROM things LIMIT 1", NULL, NULL, &res, err, sizeof err);
    if (rc) fprintf(stderr, "has_column: %s\n", err);
    OK(rc);
    json_array_foreach(json_object_get(res, "columns"), i, c) found |= !strcmp(json_string_value(c), col);
    json_decref(res);
    return found;
}

static evl_proj_status status(evl_proj_engine *e, const char *name) {
    evl_proj_status *st, copy;
    size_t n;
    OK(evl_proj_status_get(e, name, &st, &n));
    CHECK(n == 1);
    copy = st[0];
    copy.name = copy.file = copy.fault_type = copy.error = NULL;
    copy.tables = NULL;
    copy.n_tables = 0;
    copy.rebuild_error = st[0].rebuild_error ? strdup(st[0].rebuild_error) : NULL;
    evl_proj_status_free(st, n);
    return copy;
}

/* The generation files of projection things: how many "things.db.*" entries. */
static int generation_files(const char *dir, char *names, size_t len) {
    DIR *d = opendir(dir);
    CHECK(d);
    struct dirent *de;
    int n = 0;
    names[0] = 0;
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, "things.db.", 10)) {
            n++;
            strncat(names, de->d_name, len - strlen(names) - 2);
            strncat(names, " ", len - strlen(names) - 1);
        }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ load */

typedef struct load {
    evl_log *log;
    evl_proj_engine *e;
    atomic_int stop;
    atomic_long appended, queries, errors, empties, backwards, saw_new;
} load;

static void *appender(void *arg) {
    load *l = arg;
    int64_t i = 1000000;
    while (!atomic_load(&l->stop)) {
        append_some(l->log, i, 1);
        i++;
        atomic_fetch_add(&l->appended, 50);
        /* as fast as the live projection keeps up, give or take 5000 events:
         * appenders far outrunning every projector test nothing more */
        uint64_t head = evl_log_head(l->log);
        if (head > 5000) evl_proj_wait(l->e, "things", head - 5000, 10000);
        /* and no more than 30k events ahead of a rebuild, so that it reaches
         * the head on a slow machine too (a sanitizer build) */
        while (i % 20 == 0 && !atomic_load(&l->stop)) {
            evl_proj_status *st;
            size_t n;
            OK(evl_proj_status_get(l->e, "things", &st, &n));
            int ahead = st[0].rebuild_active && head > st[0].rebuild_position + 30000;
            evl_proj_status_free(st, n);
            if (!ahead) break;
            evl_proj_rebuild_wait(l->e, "things", 20);
        }
    }
    return NULL;
}

static void *reader(void *arg) {
    load *l = arg;
    json_int_t last = 0;
    while (!atomic_load(&l->stop)) {
        json_t *res;
        char err[256];
        int rc = evl_proj_query(l->e, "things", "SELECT count(*), sum(n) FROM things", NULL, NULL, &res, err, sizeof err);
        atomic_fetch_add(&l->queries, 1);
        if (rc) {
            fprintf(stderr, "reader: %s\n", err);
            atomic_fetch_add(&l->errors, 1);
            continue;
        }
        json_t *row = json_array_get(json_object_get(res, "rows"), 0);
        json_int_t pos = json_integer_value(json_object_get(res, "position"));
        if (json_integer_value(json_array_get(row, 0)) == 0) atomic_fetch_add(&l->empties, 1);
        if (pos < last) atomic_fetch_add(&l->backwards, 1);
        last = pos;
        json_decref(res);
        if (has_column(l->e, "total")) atomic_store(&l->saw_new, 1);
    }
    return NULL;
}

static void schema_change_under_load(const char *data, const char *specs) {
    char spec[600], pdir[600], names[2048];
    snprintf(spec, sizeof spec, "%s/things.sql", specs);
    snprintf(pdir, sizeof pdir, "%s/projections", data);
    write_file(spec, V1);
    evl_log *log;
    evl_proj_engine *e;
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    OK(evl_log_open(data, &lo, &log));
    append_some(log, 0, 2000); /* 100k events */
    const char *dirs[] = {specs};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1};
    OK(evl_proj_open(log, &po, &e));
    OK(evl_proj_rebuild_wait(e, "things", 30000)); /* nothing to rebuild: a new file */
    OK(evl_proj_wait(e, "things", evl_log_head(log), 30000));
    CHECK(!has_column(e, "total"));

    load l = {.log = log, .e = e};
    pthread_t ta[3], tr;
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&ta[i], NULL, appender, &l) == 0);
    CHECK(pthread_create(&tr, NULL, reader, &l) == 0);
    write_file(spec, V2);
    size_t changed = 0;
    OK(evl_proj_reload(e, &changed));
    CHECK(changed == 1);
    evl_proj_status st = status(e, "things");
    CHECK(st.state == EVL_PROJ_REBUILDING && st.rebuild_active);
    evl_proj_spec *v2 = parse(V2);
    CHECK(!strcmp(st.rebuild_hash, evl_proj_spec_hash(v2)));
    evl_proj_spec_free(v2);
    OK(evl_proj_rebuild_wait(e, "things", 120000));
    /* keep appending a little after the swap: the new file is fed */
    long after = atomic_load(&l.appended) + 5000;
    int64_t deadline = evl__mono_ns_test() + 30000000000LL;
    while ((atomic_load(&l.appended) < after || !atomic_load(&l.saw_new)) && evl__mono_ns_test() < deadline) sched_yield();
    atomic_store(&l.stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(ta[i], NULL);
    pthread_join(tr, NULL);
    printf("under load: %ld events appended during the rebuild, %ld queries, %ld errors, %ld empty answers\n",
           atomic_load(&l.appended), atomic_load(&l.queries), atomic_load(&l.errors), atomic_load(&l.empties));
    CHECK(atomic_load(&l.errors) == 0 && atomic_load(&l.empties) == 0 && atomic_load(&l.backwards) == 0);
    CHECK(atomic_load(&l.queries) > 0 && atomic_load(&l.saw_new));
    CHECK(has_column(e, "total"));
    equals_scratch(log, e, V2, "scratch-v2.db");
    st = status(e, "things");
    CHECK(st.generation == 1 && st.state == EVL_PROJ_LIVE && !st.rebuild_active && !st.rebuild_error);
    CHECK(st.events_applied == evl_log_head(log)); /* an @on * spec: one per position, none twice */
    CHECK(generation_files(pdir, names, sizeof names) >= 1 && strstr(names, "things.db.g1 "));
    CHECK(!strstr(names, "things.db.g2"));
    struct stat sb;
    CHECK(lstat(evl_proj_db_path(e, "things"), &sb) == 0 && S_ISLNK(sb.st_mode));

    /* on demand, same spec: generation 2 replaces 1, whose files go */
    OK(evl_proj_rebuild(e, "things"));
    OK(evl_proj_rebuild_wait(e, "things", 60000));
    st = status(e, "things");
    CHECK(st.generation == 2);
    equals_scratch(log, e, V2, "scratch-v2b.db");
    /* no handler reads through things_total, so the shadow built it only
     * after its bulk load: the file it handed over has it all the same */
    int qrc;
    CHECK(scalar(e, "things", "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'things_total' "
                              "AND sql LIKE 'CREATE INDEX things_total ON things (total)'", &qrc) == 1 && qrc == EVL_OK);
    generation_files(pdir, names, sizeof names);
    CHECK(strstr(names, "things.db.g2 ") && !strstr(names, "things.db.g1"));

    /* a broken new spec: the rebuild fails, v2 keeps serving and being fed */
    write_file(spec, V3_BROKEN);
    OK(evl_proj_reload(e, &changed));
    CHECK(changed == 1);
    CHECK_RC(evl_proj_rebuild_wait(e, "things", 60000), EVL_EFAULTED);
    st = status(e, "things");
    CHECK(st.rebuild_error && strstr(st.rebuild_error, "UNIQUE"));
    CHECK(st.state != EVL_PROJ_FAULTED && st.generation == 2);
    free(st.rebuild_error);
    append_some(log, 5000000, 10);
    equals_scratch(log, e, V2, "scratch-v2c.db");
    generation_files(pdir, names, sizeof names);
    CHECK(!strstr(names, "things.db.g3"));
    /* and fixed again: a reload with v2 is "no change", since v2 serves */
    write_file(spec, V2);
    OK(evl_proj_reload(e, &changed));
    CHECK(changed == 0);

    evl_proj_close(e);
    evl_log_close(log);
}

/* ------------------------------------------------------------ faults, new files */

static void faulted_then_fixed(const char *data, const char *specs) {
    char spec[600];
    snprintf(spec, sizeof spec, "%s/fragile.sql", specs);
    write_file(spec, "-- @projection fragile\nCREATE TABLE bad (v TEXT NOT NULL);\n"
                     "-- @on Bad\nINSERT INTO bad VALUES (:missing);\n");
    evl_log *log;
    evl_proj_engine *e;
    OK(evl_log_open(data, NULL, &log));
    const char *dirs[] = {specs};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1};
    OK(evl_proj_open(log, &po, &e));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_data(&sb, 1, "y");
    uint64_t pos = 0;
    evl_ack ack = {0};
    OK(append1(log, "fragile-1", EVL_REV_ANY, "Bad", sb.data, sb.size, NULL, &ack, NULL));
    pos = ack.position;
    CHECK_RC(evl_proj_wait(e, "fragile", pos, 10000), EVL_EFAULTED);
    write_file(spec, "-- @projection fragile\nCREATE TABLE bad (v TEXT NOT NULL);\n"
                     "-- @on Bad\nINSERT INTO bad VALUES (coalesce(:missing, :s));\n");
    /* and a new file beside it */
    char extra[600];
    snprintf(extra, sizeof extra, "%s/extra.sql", specs);
    write_file(extra, "-- @projection extra\nCREATE TABLE n (k INTEGER PRIMARY KEY CHECK (k = 1), c INTEGER);\n"
                      "-- @on *\nINSERT INTO n VALUES (1, 1) ON CONFLICT(k) DO UPDATE SET c = c + 1;\n");
    size_t changed;
    OK(evl_proj_reload(e, &changed));
    CHECK(changed >= 2);
    OK(evl_proj_rebuild_wait(e, "fragile", 60000));
    OK(evl_proj_wait(e, "fragile", pos, 10000));
    evl_proj_status st = status(e, "fragile");
    CHECK(st.state == EVL_PROJ_LIVE && st.fault_position == 0 && st.generation == 1);
    CHECK(scalar(e, "fragile", "SELECT count(*) FROM bad WHERE v = 'y'", NULL) == 1);
    OK(evl_proj_wait(e, "extra", evl_log_head(log), 30000));
    CHECK(scalar(e, "extra", "SELECT c FROM n", NULL) == (int64_t)evl_log_head(log));
    msgpack_sbuffer_destroy(&sb);
    evl_proj_close(e);
    evl_log_close(log);
}

/* ------------------------------------------------------------ kill -9 mid-rebuild */

static void crash_during_rebuild(const char *data, const char *specs) {
    char spec[600], pdir[600], names[2048];
    snprintf(spec, sizeof spec, "%s/things.sql", specs);
    snprintf(pdir, sizeof pdir, "%s/projections", data);
    write_file(spec, V1);
    evl_log *log;
    evl_proj_engine *e;
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    const char *dirs[] = {specs};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1};
    OK(evl_log_open(data, &lo, &log));
    append_some(log, 0, 3000); /* 150k events: a rebuild long enough to be cut after its first batch */
    OK(evl_proj_open(log, &po, &e));
    OK(evl_proj_wait(e, "things", evl_log_head(log), 60000));
    evl_proj_close(e);
    evl_log_close(log);
    write_file(spec, V2);

    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) { /* the child: a rebuild under way, then it waits to be killed */
        close(fds[0]);
        if (evl_log_open(data, &lo, &log) || evl_proj_open(log, &po, &e)) _exit(2);
        for (;;) {
            evl_proj_status *st;
            size_t n;
            if (evl_proj_status_get(e, "things", &st, &n)) _exit(3);
            int mid = st[0].rebuild_active && st[0].rebuild_position > 0;
            int done = st[0].generation > 0;
            evl_proj_status_free(st, n);
            if (done) _exit(4); /* too fast to cut: the test proves nothing */
            if (mid) break;
            evl_proj_rebuild_wait(e, "things", 5); /* a bounded wait between looks */
        }
        char c = 1;
        if (write(fds[1], &c, 1) != 1) _exit(5);
        for (;;) pause();
    }
    close(fds[1]);
    char c;
    ssize_t got = read(fds[0], &c, 1);
    int wst;
    if (got == 1) kill(pid, SIGKILL);
    CHECK(waitpid(pid, &wst, 0) == pid);
    if (got != 1) fprintf(stderr, "child exited with %d\n", WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
    CHECK(got == 1 && WIFSIGNALED(wst));
    close(fds[0]);
    CHECK(generation_files(pdir, names, sizeof names) >= 1 && strstr(names, "things.db.g1"));

    /* restart: the old table serves at once, the rebuild starts again */
    OK(evl_log_open(data, &lo, &log));
    OK(evl_proj_open(log, &po, &e));
    int rc;
    int64_t rows = scalar(e, "things", "SELECT count(*) FROM things", &rc);
    OK(rc);
    CHECK(rows == 97);
    evl_proj_status st = status(e, "things");
    printf("after kill -9 mid-rebuild: state %s, generation %llu\n", evl_proj_state_name(st.state),
           (unsigned long long)st.generation);
    append_some(log, 7000000, 20);
    OK(evl_proj_rebuild_wait(e, "things", 120000));
    CHECK(has_column(e, "total"));
    equals_scratch(log, e, V2, "scratch-crash.db");
    st = status(e, "things");
    CHECK(st.events_applied == evl_log_head(log) && st.generation == 1);
    evl_proj_close(e);
    evl_log_close(log);
}

int main(void) {
    const char *specs = test_path("specs");
    mkdir(specs, 0755);
    /* first, while this process has no threads to lose in a fork */
    crash_during_rebuild(test_path("data-crash"), specs);
    const char *specs2 = test_path("specs2");
    mkdir(specs2, 0755);
    schema_change_under_load(test_path("data-load"), specs2);
    const char *specs3 = test_path("specs3");
    mkdir(specs3, 0755);
    faulted_then_fixed(test_path("data-fault"), specs3);
    TEST_PASS();
}
