/* The `jobs` projection (model-download job server, seed
 * inference-server-jobs-schema.md) driven through the C API: every
 * transition of docs/events.md, the seed's two example rows reproduced
 * column for column, defaults, commit-time fallback, guards that ignore late
 * or repeated events, retention (JobsPurged) and a handler fault. */
#include "lifecycle.h"

#define J1 "550e8400-e29b-41d4-a716-446655440000"
#define J2 "650e8400-e29b-41d4-a716-446655440001"

/* The seed's example rows, value for value (booleans are SQLite's 0/1). */
static const char SEED_SUCCEEDED[] =
    "{\n"
    "  'id': '550e8400-e29b-41d4-a716-446655440000',\n"
    "  'model': 'gpt2',\n"
    "  'quantize': 'auto',\n"
    "  'init': true,\n"
    "  'status': 'succeeded',\n"
    "  'created_at': '2025-12-18T10:30:00Z',\n"
    "  'started_at': '2025-12-18T10:30:01Z',\n"
    "  'finished_at': '2025-12-18T10:30:15Z',\n"
    "  'error': null,\n"
    "  'traceback': null,\n"
    "  'local_path': 'E:\\\\private-ai-server\\\\models\\\\hub\\\\models--gpt2\\\\snapshots\\\\abc123',\n"
    "  'size_bytes': 548118077,\n"
    "  'downloaded_bytes': 548118077,\n"
    "  'progress': 1.0,\n"
    "  'total_bytes': 548118077,\n"
    "  'preferred_quantized': false\n"
    "}";

static const char SEED_FAILED[] =
    "{\n"
    "  'id': '650e8400-e29b-41d4-a716-446655440001',\n"
    "  'model': 'invalid/model-name',\n"
    "  'quantize': 'auto',\n"
    "  'init': false,\n"
    "  'status': 'failed',\n"
    "  'created_at': '2025-12-18T11:00:00Z',\n"
    "  'started_at': '2025-12-18T11:00:02Z',\n"
    "  'finished_at': '2025-12-18T11:00:05Z',\n"
    "  'error': 'Repository Not Found for url: https://huggingface.co/invalid/model-name',\n"
    "  'traceback': 'Traceback (most recent call last):\\n  File ...',\n"
    "  'local_path': null,\n"
    "  'size_bytes': null,\n"
    "  'downloaded_bytes': 0,\n"
    "  'progress': null,\n"
    "  'total_bytes': null,\n"
    "  'preferred_quantized': null\n"
    "}";

#define ROW1 "SELECT * FROM jobs WHERE id = '" J1 "'"
#define ROW2 "SELECT * FROM jobs WHERE id = '" J2 "'"

/* The succeeded example: queued -> running -> progress -> succeeded. */
static void seed_succeeded(fx *f) {
    CHECK_RC(ev_x(f, "job-" J1, EVL_REV_NO_STREAM, "JobQueued",
                  "{'id':'%s','model':'gpt2','quantize':'auto','init':true,'at':'2025-12-18T10:30:00Z'}", J1),
             EVL_OK);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW1,
                 "[{'id':'%s','model':'gpt2','quantize':'auto','init':true,'status':'queued',"
                 "'created_at':'2025-12-18T10:30:00Z','started_at':null,'finished_at':null,'error':null,"
                 "'traceback':null,'local_path':null,'size_bytes':null,'downloaded_bytes':0,'progress':null,"
                 "'total_bytes':null,'preferred_quantized':null}]", J1);
    /* the same creation again is a conflict at the log, never a second row */
    CHECK_RC(ev_x(f, "job-" J1, EVL_REV_NO_STREAM, "JobQueued", "{'id':'%s','model':'other'}", J1), EVL_ECONFLICT);
    /* not running yet: progress and success are ignored */
    ev(f, "job-" J1, "JobProgressed", "{'id':'%s','downloaded_bytes':5,'at':'2025-12-18T10:30:00.500Z'}", J1);
    ev(f, "job-" J1, "JobSucceeded", "{'id':'%s','local_path':'/nowhere','at':'2025-12-18T10:30:00.600Z'}", J1);
    ev(f, "job-" J1, "JobStarted",
       "{'id':'%s','total_bytes':548118077,'size_bytes':548118077,'at':'2025-12-18T10:30:01Z'}", J1);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW1,
                 "[{'id':'%s','model':'gpt2','quantize':'auto','init':true,'status':'running',"
                 "'created_at':'2025-12-18T10:30:00Z','started_at':'2025-12-18T10:30:01Z','finished_at':null,"
                 "'error':null,'traceback':null,'local_path':null,'size_bytes':548118077,'downloaded_bytes':0,"
                 "'progress':null,'total_bytes':548118077,'preferred_quantized':null}]", J1);
    /* a repeated start changes nothing (started_at stays) */
    ev(f, "job-" J1, "JobStarted", "{'id':'%s','at':'2025-12-18T10:30:09Z'}", J1);
    /* progress derived from the bytes when the sender gives none */
    ev(f, "job-" J1, "JobProgressed", "{'id':'%s','downloaded_bytes':137029519,'at':'2025-12-18T10:30:05Z'}", J1);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW1,
                 "[{'id':'%s','model':'gpt2','quantize':'auto','init':true,'status':'running',"
                 "'created_at':'2025-12-18T10:30:00Z','started_at':'2025-12-18T10:30:01Z','finished_at':null,"
                 "'error':null,'traceback':null,'local_path':null,'size_bytes':548118077,'downloaded_bytes':137029519,"
                 "'progress':%.17g,'total_bytes':548118077,'preferred_quantized':null}]",
                 J1, 137029519.0 / 548118077.0);
    /* the sender's own figure wins */
    ev(f, "job-" J1, "JobProgressed",
       "{'id':'%s','downloaded_bytes':411088558,'progress':0.75,'at':'2025-12-18T10:30:11Z'}", J1);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW1,
                 "[{'id':'%s','model':'gpt2','quantize':'auto','init':true,'status':'running',"
                 "'created_at':'2025-12-18T10:30:00Z','started_at':'2025-12-18T10:30:01Z','finished_at':null,"
                 "'error':null,'traceback':null,'local_path':null,'size_bytes':548118077,'downloaded_bytes':411088558,"
                 "'progress':0.75,'total_bytes':548118077,'preferred_quantized':null}]", J1);
    ev(f, "job-" J1, "JobSucceeded",
       "{'id':'%s','local_path':'E:\\\\private-ai-server\\\\models\\\\hub\\\\models--gpt2\\\\snapshots\\\\abc123',"
       "'downloaded_bytes':548118077,'preferred_quantized':false,'at':'2025-12-18T10:30:15Z'}", J1);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW1, "[%s]", SEED_SUCCEEDED);
    /* terminal: a late failure, progress or start changes nothing */
    ev(f, "job-" J1, "JobFailed", "{'id':'%s','error':'late','traceback':'tb','at':'2025-12-18T10:30:20Z'}", J1);
    ev(f, "job-" J1, "JobProgressed", "{'id':'%s','downloaded_bytes':1,'progress':0.5}", J1);
    ev(f, "job-" J1, "JobStarted", "{'id':'%s','total_bytes':1}", J1);
    ev(f, "job-" J1, "JobSucceeded", "{'id':'%s','local_path':'/again','progress':0.5}", J1);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW1, "[%s]", SEED_SUCCEEDED);
}

/* The failed example: queued -> running -> failed. */
static void seed_failed(fx *f) {
    CHECK_RC(ev_x(f, "job-" J2, EVL_REV_NO_STREAM, "JobQueued",
                  "{'id':'%s','model':'invalid/model-name','quantize':'auto','init':false,"
                  "'at':'2025-12-18T11:00:00Z'}", J2),
             EVL_OK);
    ev(f, "job-" J2, "JobStarted", "{'id':'%s','at':'2025-12-18T11:00:02Z'}", J2);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW2,
                 "[{'id':'%s','model':'invalid/model-name','quantize':'auto','init':false,'status':'running',"
                 "'created_at':'2025-12-18T11:00:00Z','started_at':'2025-12-18T11:00:02Z','finished_at':null,"
                 "'error':null,'traceback':null,'local_path':null,'size_bytes':null,'downloaded_bytes':0,"
                 "'progress':null,'total_bytes':null,'preferred_quantized':null}]", J2);
    ev(f, "job-" J2, "JobFailed",
       "{'id':'%s','error':'Repository Not Found for url: https://huggingface.co/invalid/model-name',"
       "'traceback':'Traceback (most recent call last):\\n  File ...','at':'2025-12-18T11:00:05Z'}", J2);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW2, "[%s]", SEED_FAILED);
    /* terminal: nothing moves it back */
    ev(f, "job-" J2, "JobStarted", "{'id':'%s','at':'2025-12-18T11:00:06Z'}", J2);
    ev(f, "job-" J2, "JobSucceeded", "{'id':'%s','local_path':'/x','at':'2025-12-18T11:00:07Z'}", J2);
    ev(f, "job-" J2, "JobFailed", "{'id':'%s','error':'again','at':'2025-12-18T11:00:08Z'}", J2);
    ev(f, "job-" J2, "JobProgressed", "{'id':'%s','downloaded_bytes':9}", J2);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", ROW2, "[%s]", SEED_FAILED);
}

/* Defaults, the commit-time fallback, failure before start, progress rules. */
static void other_paths(fx *f) {
    /* only the required fields: every optional column NULL, downloaded_bytes 0,
     * created_at = the commit time (no `at`) */
    uint64_t p = ev(f, "job-j3", "JobQueued", "{'id':'j3','model':'Qwen/Qwen3-0.6B'}");
    char t[40], t2[40];
    time_of(f, p, t);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", "SELECT * FROM jobs WHERE id = 'j3'",
                 "[{'id':'j3','model':'Qwen/Qwen3-0.6B','quantize':null,'init':null,'status':'queued',"
                 "'created_at':'%s','started_at':null,'finished_at':null,'error':null,'traceback':null,"
                 "'local_path':null,'size_bytes':null,'downloaded_bytes':0,'progress':null,'total_bytes':null,"
                 "'preferred_quantized':null}]", t);
    CHECK(strlen(t) == 24 && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    /* a queued job may fail (bad request): no traceback given -> NULL */
    p = ev(f, "job-j3", "JobFailed", "{'id':'j3','error':'quantize q9 is not supported'}");
    time_of(f, p, t2);
    sync_proj(f, "jobs");
    expect_table(f, "jobs", "SELECT * FROM jobs WHERE id = 'j3'",
                 "[{'id':'j3','model':'Qwen/Qwen3-0.6B','quantize':null,'init':null,'status':'failed',"
                 "'created_at':'%s','started_at':null,'finished_at':'%s','error':'quantize q9 is not supported',"
                 "'traceback':null,'local_path':null,'size_bytes':null,'downloaded_bytes':0,'progress':null,"
                 "'total_bytes':null,'preferred_quantized':null}]", t, t2);

    /* progress from the bytes, the total arriving with progress; capped at 1.0;
     * a total of 0 derives nothing; success without figures -> progress 1.0 */
    ev(f, "job-j4", "JobQueued", "{'id':'j4','model':'gpt2','quantize':'q4','init':false,'preferred_quantized':true,"
                                 "'at':'2025-12-18T12:00:00Z'}");
    ev(f, "job-j4", "JobStarted", "{'id':'j4','at':'2025-12-18T12:00:01Z'}");
    ev(f, "job-j4", "JobProgressed", "{'id':'j4','downloaded_bytes':0,'total_bytes':0,'at':'2025-12-18T12:00:02Z'}");
    sync_proj(f, "jobs");
    expect_table(f, "jobs", "SELECT id, downloaded_bytes, progress, total_bytes, size_bytes FROM jobs WHERE id = 'j4'",
                 "[{'id':'j4','downloaded_bytes':0,'progress':null,'total_bytes':0,'size_bytes':null}]");
    ev(f, "job-j4", "JobProgressed", "{'id':'j4','downloaded_bytes':250,'total_bytes':1000,'size_bytes':1024,"
                                     "'at':'2025-12-18T12:00:03Z'}");
    sync_proj(f, "jobs");
    expect_table(f, "jobs", "SELECT id, downloaded_bytes, progress, total_bytes, size_bytes FROM jobs WHERE id = 'j4'",
                 "[{'id':'j4','downloaded_bytes':250,'progress':0.25,'total_bytes':1000,'size_bytes':1024}]");
    ev(f, "job-j4", "JobProgressed", "{'id':'j4','downloaded_bytes':1200,'at':'2025-12-18T12:00:04Z'}");
    sync_proj(f, "jobs");
    expect_table(f, "jobs", "SELECT id, downloaded_bytes, progress, total_bytes, size_bytes FROM jobs WHERE id = 'j4'",
                 "[{'id':'j4','downloaded_bytes':1200,'progress':1.0,'total_bytes':1000,'size_bytes':1024}]");
    ev(f, "job-j4", "JobSucceeded", "{'id':'j4','local_path':'/models/gpt2-q4','size_bytes':2048,'total_bytes':2000,"
                                    "'at':'2025-12-18T12:00:05Z'}");
    sync_proj(f, "jobs");
    expect_table(f, "jobs", "SELECT * FROM jobs WHERE id = 'j4'",
                 "[{'id':'j4','model':'gpt2','quantize':'q4','init':false,'status':'succeeded',"
                 "'created_at':'2025-12-18T12:00:00Z','started_at':'2025-12-18T12:00:01Z',"
                 "'finished_at':'2025-12-18T12:00:05Z','error':null,'traceback':null,'local_path':'/models/gpt2-q4',"
                 "'size_bytes':2048,'downloaded_bytes':1200,'progress':1.0,'total_bytes':2000,"
                 "'preferred_quantized':true}]");

    /* an event for a job the table does not know is ignored, not a fault */
    ev(f, "job-ghost", "JobStarted", "{'id':'ghost','at':'2025-12-18T12:00:06Z'}");
    ev(f, "job-ghost", "JobProgressed", "{'id':'ghost','downloaded_bytes':1}");
    ev(f, "job-ghost", "JobSucceeded", "{'id':'ghost','local_path':'/x'}");
    ev(f, "job-ghost", "JobFailed", "{'id':'ghost','error':'x'}");
    expect_live(f, "jobs");
    expect_table(f, "jobs", "SELECT id FROM jobs WHERE id = 'ghost'", "[]");
}

/* delete_old_jobs as JobsPurged: created_at < before, compared as times,
 * whatever the status. */
static void retention(fx *f) {
    /* there are J1 10:30:00Z, J2 11:00:00Z, j4 12:00:00Z and j3 (now) */
    ev(f, "job-p1", "JobQueued", "{'id':'p1','model':'m','at':'2025-12-18T10:59:59Z'}");
    ev(f, "job-p2", "JobQueued", "{'id':'p2','model':'m','at':'2025-12-18T11:00:00.000Z'}");
    ev(f, "job-p3", "JobQueued", "{'id':'p3','model':'m','at':'2025-12-18T11:30:00Z'}");
    ev(f, "job-p3", "JobStarted", "{'id':'p3','at':'2025-12-18T11:30:01Z'}");
    sync_proj(f, "jobs");
    CHECK(q_int(f, "jobs", "SELECT count(*) FROM jobs") == 7);
    /* before 10:59:59.5: J1 and p1 go, although "10:59:59Z" sorts after
     * "10:59:59.500Z" as text */
    ev(f, "retention-jobs", "JobsPurged", "{'before':'2025-12-18T10:59:59.500Z','days':30}");
    sync_proj(f, "jobs");
    expect_table(f, "jobs", "SELECT id, status, created_at FROM jobs WHERE id != 'j3' ORDER BY julianday(created_at), id",
                 "[{'id':'%s','status':'failed','created_at':'2025-12-18T11:00:00Z'},"
                 "{'id':'p2','status':'queued','created_at':'2025-12-18T11:00:00.000Z'},"
                 "{'id':'p3','status':'running','created_at':'2025-12-18T11:30:00Z'},"
                 "{'id':'j4','status':'succeeded','created_at':'2025-12-18T12:00:00Z'}]", J2);
    /* "11:00:00Z" and "11:00:00.000Z" are the same time: not older than it */
    ev(f, "retention-jobs", "JobsPurged", "{'before':'2025-12-18T11:00:00Z'}");
    sync_proj(f, "jobs");
    CHECK(q_int(f, "jobs", "SELECT count(*) FROM jobs") == 5);
    /* a running job goes too; the newest rows stay */
    ev(f, "retention-jobs", "JobsPurged", "{'before':'2025-12-18T11:30:00.001Z','days':1}");
    sync_proj(f, "jobs");
    expect_table(f, "jobs", "SELECT id, status FROM jobs ORDER BY id",
                 "[{'id':'j3','status':'failed'},{'id':'j4','status':'succeeded'}]");
    /* a purged job's late events find no row: ignored */
    ev(f, "job-p3", "JobSucceeded", "{'id':'p3','local_path':'/x'}");
    expect_live(f, "jobs");
    CHECK(q_int(f, "jobs", "SELECT count(*) FROM jobs") == 2);
}

/* A handler error (here a JobQueued without its NOT NULL model) faults the
 * jobs projection alone, at that event; the rows before it stay. */
static void fault(void) {
    fx f;
    fx_open(&f, "jobs-fault");
    ev(&f, "job-f1", "JobQueued", "{'id':'f1','model':'gpt2','at':'2025-12-18T10:30:00Z'}");
    uint64_t bad = ev(&f, "job-f2", "JobQueued", "{'id':'f2','quantize':'auto'}");
    ev(&f, "job-f1", "JobStarted", "{'id':'f1','at':'2025-12-18T10:30:01Z'}");
    expect_fault(&f, "jobs", bad, "JobQueued", "NOT NULL constraint failed: jobs.model");
    expect_table(&f, "jobs", "SELECT id, status FROM jobs", "[{'id':'f1','status':'queued'}]");
    fx_close(&f);
}

int main(void) {
    fx f;
    fx_open(&f, "jobs");
    seed_succeeded(&f);
    seed_failed(&f);
    other_paths(&f);
    retention(&f);
    fx_close(&f);
    fault();
    TEST_PASS();
}
