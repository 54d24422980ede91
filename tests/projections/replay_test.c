/* Point-in-time replay: a projection built --until P equals the live table
 * as it stood when the head was P, row for row, for every built-in
 * projection, at several points of a generated workload. */
#include "bench/workloads/gen.h"
#include "evlog/proj.h"
#include "log/util.h"
#include "projections/dump.h"

int main(void) {
    evl_log *log;
    evl_proj_engine *e;
    evl_gen *g;
    evl_log_options lo;
    evl_log_options_init(&lo);
    lo.sync = EVL_SYNC_NONE;
    OK(evl_log_open(test_path("data"), &lo, &log));
    OK(evl_proj_open(log, NULL, &e));
    OK(evl_gen_new(7, EVL_GEN_ALL, &g));
    size_t nb;
    const evl_proj_builtin *b = evl_proj_builtins(&nb);
    int compared = 0;
    for (int step = 0; step < 3; step++) {
        /* some more of the workload, then freeze the live tables at this head */
        for (int i = 0; i < 1500; i++) {
            const evl_stream_in *s;
            size_t n;
            OK(evl_gen_next(g, &s, &n));
            evl_append_result r;
            int rc = evl_log_append(log, s, n, &r);
            CHECK(rc == EVL_OK || rc == EVL_ECONFLICT);
            evl_free(r.acks);
        }
        uint64_t head = evl_log_head(log);
        OK(evl_proj_wait_all(e, head, 30000));
        for (size_t k = 0; k < nb; k++) {
            evl_proj_spec *sp;
            char err[512], out[600];
            OK(evl_proj_spec_parse(b[k].text, b[k].len, b[k].file, &sp, err, sizeof err));
            char *live = dump(evl_proj_db_path(e, evl_proj_spec_name(sp)));
            snprintf(out, sizeof out, "%s/%s-at-%llu.db", test_tmpdir(), evl_proj_spec_name(sp), (unsigned long long)head);
            uint64_t at;
            int rc = evl_proj_build(log, sp, head, out, &at, err, sizeof err);
            if (rc) fprintf(stderr, "build %s: %s\n", evl_proj_spec_name(sp), err);
            CHECK(rc == EVL_OK && at == head);
            char *replayed = dump(out);
            if (strcmp(live, replayed)) fprintf(stderr, "%s differs at %llu\n", evl_proj_spec_name(sp), (unsigned long long)head);
            CHECK(strcmp(live, replayed) == 0);
            compared++;
            free(live);
            free(replayed);
            evl_proj_spec_free(sp);
        }
    }
    /* and an earlier point while the log has moved on: position 1000 */
    {
        evl_proj_spec *sp;
        char err[512], out[600];
        OK(evl_proj_spec_parse(b[0].text, b[0].len, b[0].file, &sp, err, sizeof err));
        snprintf(out, sizeof out, "%s/early.db", test_tmpdir());
        uint64_t at;
        OK(evl_proj_build(log, sp, 1000, out, &at, err, sizeof err));
        CHECK(at == 1000);
        json_t *res;
        OK(evl_proj_query_file(out, "SELECT position FROM _evl_checkpoint", NULL, NULL, &res, err, sizeof err));
        CHECK(json_integer_value(json_array_get(json_array_get(json_object_get(res, "rows"), 0), 0)) == 1000);
        json_decref(res);
        evl_proj_spec_free(sp);
    }
    printf("%d point-in-time replays equal the live tables\n", compared);
    evl_gen_free(g);
    evl_proj_close(e);
    evl_log_close(log);
    TEST_PASS();
}
