/* A backup taken while appends go on verifies, and the projections rebuilt
 * from it equal the source's projections built to the same position. */
#include "bench/workloads/gen.h"
#include "evlog/proj.h"
#include "log/util.h"
#include "projections/dump.h"

typedef struct appender {
    evl_log *log;
    evl_gen *g;
    volatile int stop;
    uint64_t n;
} appender;

static void *append_loop(void *arg) {
    appender *a = arg;
    while (!a->stop) {
        const evl_stream_in *s;
        size_t n;
        OK(evl_gen_next(a->g, &s, &n));
        evl_append_result r;
        int rc = evl_log_append(a->log, s, n, &r);
        CHECK(rc == EVL_OK || rc == EVL_ECONFLICT);
        evl_free(r.acks);
        a->n++;
    }
    return NULL;
}

int main(void) {
    evl_log *log, *copy;
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    OK(evl_log_open(test_path("data"), &lo, &log));
    appender a = {.log = log};
    OK(evl_gen_new(11, EVL_GEN_ALL, &a.g));
    for (int i = 0; i < 3000; i++) { /* something to copy before the race starts */
        const evl_stream_in *s;
        size_t n;
        OK(evl_gen_next(a.g, &s, &n));
        evl_append_result r;
        int rc = evl_log_append(log, s, n, &r);
        CHECK(rc == EVL_OK || rc == EVL_ECONFLICT);
        evl_free(r.acks);
    }
    pthread_t t;
    uint64_t before = evl_log_head(log);
    CHECK(pthread_create(&t, NULL, append_loop, &a) == 0);
    /* the backup must race live appends: wait for the appender's first */
    while (evl_log_head(log) <= before) evl_log_wait(log, before, 1000, NULL);
    uint64_t at_start;
    OK(evl_log_backup(log, test_path("backup"), &at_start));
    a.stop = 1;
    pthread_join(t, NULL);
    CHECK(a.n > 0);

    OK(evl_log_open(test_path("backup"), &lo, &copy));
    uint64_t head = evl_log_head(copy);
    CHECK(head >= at_start);
    char problem[512];
    uint64_t n;
    OK(evl_log_verify(copy, problem, sizeof problem, &n, NULL, NULL));
    CHECK(n == head);
    evl_proj_engine *e;
    OK(evl_proj_open(copy, NULL, &e));
    OK(evl_proj_wait_all(e, head, 60000));
    size_t nb;
    const evl_proj_builtin *b = evl_proj_builtins(&nb);
    for (size_t k = 0; k < nb; k++) {
        evl_proj_spec *sp;
        char err[512], out[600];
        OK(evl_proj_spec_parse(b[k].text, b[k].len, b[k].file, &sp, err, sizeof err));
        snprintf(out, sizeof out, "%s/source-%s.db", test_tmpdir(), evl_proj_spec_name(sp));
        uint64_t at;
        OK(evl_proj_build(log, sp, head, out, &at, err, sizeof err));
        CHECK(at == head);
        char *restored = dump(evl_proj_db_path(e, evl_proj_spec_name(sp))), *source = dump(out);
        if (strcmp(restored, source)) fprintf(stderr, "%s differs\n", evl_proj_spec_name(sp));
        CHECK(strcmp(restored, source) == 0);
        free(restored);
        free(source);
        evl_proj_spec_free(sp);
    }
    printf("backup at %llu of %llu events: %zu projections rebuilt from it equal the source's\n",
           (unsigned long long)head, (unsigned long long)evl_log_head(log), nb);
    evl_proj_close(e);
    evl_log_close(copy);
    evl_gen_free(a.g);
    evl_log_close(log);
    TEST_PASS();
}
