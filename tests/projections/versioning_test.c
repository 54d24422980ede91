/* docs/versioning.md, run: three shapes of one event, one projection. */
#include <sys/stat.h>

#include "evlog/json.h"
#include "evlog/proj.h"
#include "log/util.h"

static const char SPEC[] =
    "-- @projection jobs\n"
    "CREATE TABLE jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, quantize TEXT,\n"
    "                   size_bytes INTEGER, init BOOLEAN, status TEXT NOT NULL DEFAULT 'queued',\n"
    "                   created_at TEXT NOT NULL);\n"
    "-- @on JobQueued\n"
    "INSERT INTO jobs (id, model, quantize, size_bytes, created_at)\n"
    "VALUES (:id, coalesce(:model, :model_name),\n"
    "        coalesce(:quantize, CASE :quant WHEN 'q4' THEN 'q4' WHEN 'none' THEN 'no' ELSE 'auto' END),\n"
    "        :size ->> '$.bytes', @time);\n"
    "-- @on JobQueuedV3\n"
    "INSERT INTO jobs (id, model, quantize, size_bytes, init, created_at)\n"
    "VALUES (:id, :model, :quantize, :size ->> '$.bytes', :init, @time);\n";

static void append(evl_log *log, const char *type, const char *data) {
    json_error_t je;
    json_t *d = json_loads(data, 0, &je);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    OK(evl_json_to_msgpack(d, &sb));
    OK(append1(log, "job-x", EVL_REV_ANY, type, sb.data, sb.size, NULL, NULL, NULL));
    msgpack_sbuffer_destroy(&sb);
    json_decref(d);
}

int main(void) {
    const char *specs = test_path("specs");
    mkdir(specs, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/jobs.sql", specs);
    FILE *f = fopen(path, "w");
    fputs(SPEC, f);
    fclose(f);
    evl_log *log;
    OK(evl_log_open(test_path("data"), NULL, &log));
    append(log, "JobQueued", "{\"id\":\"j1\",\"model_name\":\"gpt2\",\"quant\":\"q4\"}");
    append(log, "JobQueued", "{\"id\":\"j1b\",\"model_name\":\"bert\",\"quant\":\"fp16\"}");
    append(log, "JobQueued", "{\"id\":\"j2\",\"model\":\"Qwen/Qwen3-0.6B\",\"quantize\":\"auto\",\"size\":{\"bytes\":548118077}}");
    append(log, "JobQueuedV3", "{\"id\":\"j3\",\"model\":\"gpt2\",\"quantize\":\"no\",\"size\":{\"bytes\":10},\"init\":true}");
    const char *dirs[] = {specs};
    evl_proj_options po = {.dirs = dirs, .n_dirs = 1, .no_builtin = 1};
    evl_proj_engine *e;
    OK(evl_proj_open(log, &po, &e));
    OK(evl_proj_wait(e, "jobs", evl_log_head(log), 10000));
    json_t *res;
    char err[256];
    OK(evl_proj_query(e, "jobs", "SELECT id, model, quantize, size_bytes, init, status FROM jobs ORDER BY id",
                      NULL, NULL, &res, err, sizeof err));
    char *rows = json_dumps(json_object_get(res, "rows"), JSON_COMPACT);
    const char *want = "[[\"j1\",\"gpt2\",\"q4\",null,null,\"queued\"],[\"j1b\",\"bert\",\"auto\",null,null,\"queued\"],"
                       "[\"j2\",\"Qwen/Qwen3-0.6B\",\"auto\",548118077,null,\"queued\"],[\"j3\",\"gpt2\",\"no\",10,1,\"queued\"]]";
    if (strcmp(rows, want)) fprintf(stderr, "got  %s\nwant %s\n", rows, want);
    CHECK(strcmp(rows, want) == 0);
    free(rows);
    json_decref(res);
    evl_proj_close(e);
    evl_log_close(log);
    TEST_PASS();
}
