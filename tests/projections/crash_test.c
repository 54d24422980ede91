/* kill -9 in the middle of projection batches, then exact resume.
 * A child appends events while its projector applies them in batches; the
 * parent SIGKILLs it at random moments.  After each restart the projection
 * must equal the log exactly: a counting table shows a double apply, a
 * table keyed by position shows a skip (and a double apply would fault it
 * on its primary key). */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "evlog/proj.h"
#include "log/util.h"

static const char SPEC[] =
    "-- @projection tally\n"
    "CREATE TABLE counts (type TEXT PRIMARY KEY, n INTEGER NOT NULL);\n"
    "CREATE TABLE seen (position INTEGER PRIMARY KEY, stream TEXT NOT NULL);\n"
    "-- @on *\n"
    "INSERT INTO counts VALUES (@type, 1) ON CONFLICT(type) DO UPDATE SET n = n + 1;\n"
    "INSERT INTO seen VALUES (@position, @stream);\n";

static void child(const char *data, const char *specs, int fd) {
    evl_log *log;
    evl_proj_engine *e;
    const char *dirs[] = {specs};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1, .batch_events = 300};
    if (evl_log_open(data, NULL, &log) || evl_proj_open(log, &po, &e)) _exit(2);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int64_t i = 0;; i++) {
        evl_event_in ev[20];
        char stream[32];
        snprintf(stream, sizeof stream, "tally-%d", (int)(i % 7));
        pack_data(&sb, i, "x");
        for (int k = 0; k < 20; k++) ev[k] = (evl_event_in){.type = k % 3 ? "Ticked" : "Tocked", .data = sb.data, .data_len = sb.size};
        evl_stream_in s = {.stream = stream, .expected = EVL_REV_ANY, .events = ev, .n_events = 20};
        evl_append_result r;
        if (evl_log_append(log, &s, 1, &r)) _exit(3);
        evl_free(r.acks);
        char c = 1;
        if (write(fd, &c, 1) != 1) _exit(4);
    }
}

static int64_t scalar(evl_proj_engine *e, const char *sql) {
    json_t *res;
    char err[256];
    int rc = evl_proj_query(e, "tally", sql, NULL, NULL, &res, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", sql, err);
    CHECK(rc == EVL_OK);
    int64_t v = json_integer_value(json_array_get(json_array_get(json_object_get(res, "rows"), 0), 0));
    json_decref(res);
    return v;
}

int main(void) {
    const char *data = test_path("data"), *specs = test_path("specs");
    mkdir(specs, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/tally.sql", specs);
    FILE *f = fopen(path, "w");
    fputs(SPEC, f);
    fclose(f);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int behind = 0;
    for (int round = 0; round < 8; round++) {
        int p[2];
        CHECK(pipe(p) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            child(data, specs, p[1]);
        }
        close(p[1]);
        int want = 20 + rand() % 200, got = 0;
        char c;
        while (got < want && read(p[0], &c, 1) == 1) got++;
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        close(p[0]);
        CHECK(WIFSIGNALED(status));

        evl_log *log;
        evl_proj_engine *e;
        const char *dirs[] = {specs};
        evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1};
        OK(evl_log_open(data, NULL, &log));
        OK(evl_proj_open(log, &po, &e));
        uint64_t head = evl_log_head(log);
        evl_proj_status *st0;
        size_t n0;
        OK(evl_proj_status_get(e, "tally", &st0, &n0));
        behind += st0[0].checkpoint < head; /* the kill left work for the restart */
        evl_proj_status_free(st0, n0);
        int wrc = evl_proj_wait(e, "tally", head, 30000);
        if (wrc) {
            OK(evl_proj_status_get(e, "tally", &st0, &n0));
            fprintf(stderr, "round %d: %s at %llu (checkpoint %llu, head %llu): %s\n", round, evl_errname(wrc),
                    (unsigned long long)st0[0].fault_position, (unsigned long long)st0[0].checkpoint,
                    (unsigned long long)head, st0[0].error ? st0[0].error : "");
        }
        OK(wrc);
        int64_t total = scalar(e, "SELECT sum(n) FROM counts");
        int64_t rows = scalar(e, "SELECT count(*) FROM seen");
        int64_t maxpos = scalar(e, "SELECT max(position) FROM seen");
        int64_t ticked = scalar(e, "SELECT n FROM counts WHERE type = 'Ticked'");
        printf("round %d: killed after %d acked batches; head %llu, applied %lld, rows %lld\n", round, got,
               (unsigned long long)head, (long long)total, (long long)rows);
        CHECK(total == (int64_t)head && rows == (int64_t)head && maxpos == (int64_t)head);
        CHECK(ticked == (int64_t)head / 20 * 13); /* 13 of every 20 events are Ticked */
        evl_proj_status *st;
        size_t n;
        OK(evl_proj_status_get(e, "tally", &st, &n));
        CHECK(st[0].state == EVL_PROJ_LIVE && st[0].checkpoint == head && st[0].events_applied == head);
        evl_proj_status_free(st, n);
        evl_proj_close(e);
        evl_log_close(log);
    }
    printf("%d of 8 restarts resumed with a backlog\n", behind);
    TEST_PASS();
}
