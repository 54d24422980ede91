/* The simulation GUI's and the benchmark harness's built-in projections
 * driven through the C API, whole rows compared: FUSION `runs`
 * (fusion-runs-db.rst: PENDING -> RUNNING -> COMPLETED | FAILED | CANCELLED
 * with progress, deletion) and KARR's eight tables (kitt-karr-db-schema.md:
 * agents, runs with hardware, benchmarks and metrics, raw_json given or
 * assembled, deletion with its dependents, campaigns, quick tests, and the
 * `events` table rebuilt from the log). */
#include "lifecycle.h"

/* --------------------------------------------------------------- FUSION */

#define CONFIG "{'general_settings':{'erlang_start':300,'erlang_stop':1200,'erlang_step':100,'max_iters':10}," \
               "'topology_settings':{'network':'NSFNet','cores_per_link':7},'spectrum_settings':{'c_band':320}}"

static json_t *fusion_model(const char *id, const char *name, const char *at) {
    json_t *m = row_new("{'id':'%s','name':null,'status':'PENDING','config_json':" CONFIG ",'template':'minimal.ini',"
                        "'pid':null,'pgid':null,'created_at':'%s','started_at':null,'completed_at':null,"
                        "'error_message':null,'current_erlang':null,'total_erlangs':null,'current_iteration':null,"
                        "'total_iterations':null}", id, at);
    if (name) row_set(m, "{'name':'%s'}", name);
    return m;
}

#define FUSION_TERMINAL                                                   \
    {"FusionRunStarted", "'pid':1,'pgid':1", "{}"},                       \
    {"FusionRunProgressed", "'current_erlang':9.5,'current_iteration':9", "{}"}, \
    {"FusionRunCompleted", "", "{}"},                                     \
    {"FusionRunFailed", "'error_message':'late'", "{}"},                  \
    {"FusionRunCancelled", "", "{}"}

static const step COMPLETED[] = {
    /* not started: progress and completion are ignored */
    {"FusionRunProgressed", "'current_erlang':300.0,'current_iteration':1", "{}"},
    {"FusionRunCompleted", "", "{}"},
    {"FusionRunStarted", "'pid':48213,'pgid':48213,'total_erlangs':10,'total_iterations':10",
     "{'status':'RUNNING','pid':48213,'pgid':48213,'started_at':'$AT','total_erlangs':10,'total_iterations':10}"},
    {"FusionRunStarted", "'pid':1,'pgid':1", "{}"},
    {"FusionRunProgressed", "'current_erlang':300.0,'current_iteration':1",
     "{'current_erlang':300.0,'current_iteration':1}"},
    {"FusionRunProgressed", "'current_erlang':300.0,'current_iteration':10",
     "{'current_iteration':10}"},
    /* an integral Erlang load is stored as a float (FLOAT column) */
    {"FusionRunProgressed", "'current_erlang':400,'current_iteration':1,'total_iterations':12",
     "{'current_erlang':400.0,'current_iteration':1,'total_iterations':12}"},
    {"FusionRunProgressed", "'current_erlang':1200.5,'current_iteration':12,'total_erlangs':11",
     "{'current_erlang':1200.5,'current_iteration':12,'total_erlangs':11}"},
    {"FusionRunCompleted", "", "{'status':'COMPLETED','completed_at':'$AT'}"},
    FUSION_TERMINAL,
};
static const step FAILED_RUNNING[] = {
    {"FusionRunStarted", "'pid':50001,'pgid':50000", "{'status':'RUNNING','pid':50001,'pgid':50000,'started_at':'$AT'}"},
    {"FusionRunProgressed", "'current_erlang':300.0,'current_iteration':3",
     "{'current_erlang':300.0,'current_iteration':3}"},
    {"FusionRunFailed", "'error_message':'KeyError: \\u0027cores_per_link\\u0027'",
     "{'status':'FAILED','error_message':'KeyError: \\u0027cores_per_link\\u0027','completed_at':'$AT'}"},
    FUSION_TERMINAL,
};
static const step CANCELLED_RUNNING[] = {
    {"FusionRunStarted", "'pid':50101,'pgid':50101", "{'status':'RUNNING','pid':50101,'pgid':50101,'started_at':'$AT'}"},
    {"FusionRunCancelled", "", "{'status':'CANCELLED','completed_at':'$AT'}"},
    FUSION_TERMINAL,
};
static const step CANCELLED_PENDING[] = {
    {"FusionRunCancelled", "", "{'status':'CANCELLED','completed_at':'$AT'}"},
    FUSION_TERMINAL,
};
static const step FAILED_PENDING[] = {
    {"FusionRunFailed", "'error_message':'simulator binary not found'",
     "{'status':'FAILED','error_message':'simulator binary not found','completed_at':'$AT'}"},
    FUSION_TERMINAL,
};

static void fusion_path(fx *f, const char *id, const char *name, const step *steps, size_t n) {
    char stream[64], key[64], sql[128];
    snprintf(stream, sizeof stream, "fusionrun-%s", id);
    snprintf(key, sizeof key, "'id':'%s'", id);
    snprintf(sql, sizeof sql, "SELECT * FROM runs WHERE id = '%s'", id);
    const char *at = tick(f);
    if (name)
        CHECK_RC(ev_x(f, stream, EVL_REV_NO_STREAM, "FusionRunCreated",
                      "{%s,'name':'%s','config':" CONFIG ",'template':'minimal.ini','at':'%s'}", key, name, at), EVL_OK);
    else
        CHECK_RC(ev_x(f, stream, EVL_REV_NO_STREAM, "FusionRunCreated",
                      "{%s,'config':" CONFIG ",'template':'minimal.ini','at':'%s'}", key, at), EVL_OK);
    sync_proj(f, "runs");
    json_t *m = fusion_model(id, name, at);
    expect_row(f, "runs", sql, m);
    walk(f, "runs", sql, stream, key, m, steps, n);
    json_decref(m);
}
#define FUSION_PATH(f, id, name, steps) fusion_path(f, id, name, steps, sizeof(steps) / sizeof((steps)[0]))

static void fusion(fx *f) {
    FUSION_PATH(f, "abc123def456", "NSFNet baseline sweep", COMPLETED);
    FUSION_PATH(f, "0badc0ffee01", "bad config", FAILED_RUNNING);
    FUSION_PATH(f, "0c4nce11ed02", NULL, CANCELLED_RUNNING);
    FUSION_PATH(f, "0c4nce11ed03", "never started", CANCELLED_PENDING);
    FUSION_PATH(f, "0fa11ed00004", NULL, FAILED_PENDING);
    /* without `at`: created_at is the commit time; then deleted */
    uint64_t p = ev(f, "fusionrun-0de1e7ed0005", "FusionRunCreated",
                    "{'id':'0de1e7ed0005','config':{},'template':'us_network.ini'}");
    char t[40];
    time_of(f, p, t);
    sync_proj(f, "runs");
    expect_table(f, "runs", "SELECT * FROM runs WHERE id = '0de1e7ed0005'",
                 "[{'id':'0de1e7ed0005','name':null,'status':'PENDING','config_json':{},'template':'us_network.ini',"
                 "'pid':null,'pgid':null,'created_at':'%s','started_at':null,'completed_at':null,'error_message':null,"
                 "'current_erlang':null,'total_erlangs':null,'current_iteration':null,'total_iterations':null}]", t);
    ev(f, "fusionrun-0de1e7ed0005", "FusionRunStarted", "{'id':'0de1e7ed0005','pid':7,'pgid':7}");
    ev(f, "fusionrun-0de1e7ed0005", "FusionRunDeleted", "{'id':'0de1e7ed0005'}");
    ev(f, "fusionrun-0de1e7ed0005", "FusionRunProgressed", "{'id':'0de1e7ed0005','current_erlang':1.0}");
    ev(f, "fusionrun-abc123def456", "FusionRunDeleted", "{'id':'abc123def456'}"); /* a finished run */
    /* events of a run the table does not know: ignored */
    ev(f, "fusionrun-ffffffffffff", "FusionRunStarted", "{'id':'ffffffffffff','pid':1,'pgid':1}");
    ev(f, "fusionrun-ffffffffffff", "FusionRunCompleted", "{'id':'ffffffffffff'}");
    expect_live(f, "runs");
    expect_table(f, "runs", "SELECT id, status FROM runs ORDER BY id",
                 "[{'id':'0badc0ffee01','status':'FAILED'},{'id':'0c4nce11ed02','status':'CANCELLED'},"
                 "{'id':'0c4nce11ed03','status':'CANCELLED'},{'id':'0fa11ed00004','status':'FAILED'}]");
}

/* ----------------------------------------------------------------- KARR */

#define A1 "2f1c9a0e-4b7d-4f5e-9c3a-6d8e1f2a3b4c"
#define A2 "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
#define R1 "9b2e6f10-1c3d-4e5f-8a7b-6c5d4e3f2a1b"
#define R2 "1d2c3b4a-5f6e-4d7c-9b8a-7f6e5d4c3b2a"
#define R3 "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8"
#define C1 "c1c1c1c1-0000-4000-8000-000000000001"
#define C2 "c2c2c2c2-0000-4000-8000-000000000002"
#define C3 "c3c3c3c3-0000-4000-8000-000000000003"
#define Q1 "a1a1a1a1-0000-4000-8000-0000000000a1"
#define Q2 "a2a2a2a2-0000-4000-8000-0000000000a2"
#define Q3 "a3a3a3a3-0000-4000-8000-0000000000a3"
#define TOKEN1 "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
#define TOKEN2 "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"

#define AGENT_FIELDS "'name':'dgx-01','hostname':'10.1.0.5','port':8090,'gpu_info':'8x NVIDIA H100 80GB HBM3'," \
                     "'gpu_count':8,'cpu_info':'2x AMD EPYC 9654','ram_gb':2048,'environment_type':'dgx'," \
                     "'fingerprint':'dgx|h100x8|epyc9654|2048','kitt_version':'1.4.0'"

static const step AGENT[] = {
    {"AgentHeartbeatReceived", "", "{'last_heartbeat':'$AT'}"},
    {"AgentStatusChanged", "'status':'busy'", "{'status':'busy'}"},
    {"AgentHeartbeatReceived", "", "{'last_heartbeat':'$AT'}"},          /* busy stays busy */
    {"AgentHeartbeatReceived", "'status':'online'", "{'last_heartbeat':'$AT','status':'online'}"},
    {"AgentStatusChanged", "'status':'offline'", "{'status':'offline'}"},
    {"AgentHeartbeatReceived", "", "{'last_heartbeat':'$AT','status':'online'}"}, /* back online */
    {"AgentUpdated", "'notes':'rack 4, slot 2'", "{'notes':'rack 4, slot 2'}"},
    {"AgentUpdated", "'tags':'h100,nightly'", "{'tags':'h100,nightly'}"},
    {"AgentStatusChanged", "'status':'offline'", "{'status':'offline'}"},
    /* a restart re-registers: what it reports is refreshed, registered_at,
     * notes and tags are kept */
    {"AgentRegistered",
     "'name':'dgx-01','hostname':'10.1.0.6','port':8091,'token_hash':'" TOKEN2 "','gpu_info':'8x NVIDIA H200',"
     "'gpu_count':8,'cpu_info':'2x AMD EPYC 9654','ram_gb':3072,'environment_type':'dgx','fingerprint':'dgx|h200x8',"
     "'kitt_version':'1.5.0'",
     "{'hostname':'10.1.0.6','port':8091,'token':'" TOKEN2 "','status':'online','gpu_info':'8x NVIDIA H200',"
     "'ram_gb':3072,'fingerprint':'dgx|h200x8','kitt_version':'1.5.0','last_heartbeat':'$AT'}"},
};

static char a1_registered[32]; /* `at` of A1's first registration */

static void agents(fx *f) {
    const char *at = tick(f);
    snprintf(a1_registered, sizeof a1_registered, "%s", at);
    ev(f, "kittagent-" A1, "AgentRegistered", "{'id':'" A1 "'," AGENT_FIELDS ",'token_hash':'" TOKEN1 "',"
                                              "'tags':'h100,prod','at':'%s'}", at);
    sync_proj(f, "karr");
    json_t *m = row_new("{'id':'" A1 "','name':'dgx-01','hostname':'10.1.0.5','port':8090,'token':'" TOKEN1 "',"
                        "'status':'online','gpu_info':'8x NVIDIA H100 80GB HBM3','gpu_count':8,"
                        "'cpu_info':'2x AMD EPYC 9654','ram_gb':2048,'environment_type':'dgx',"
                        "'fingerprint':'dgx|h100x8|epyc9654|2048','kitt_version':'1.4.0','last_heartbeat':'%s',"
                        "'registered_at':'%s','notes':null,'tags':'h100,prod'}", at, at);
    const char *sql = "SELECT * FROM agents WHERE id = '" A1 "'";
    expect_row(f, "karr", sql, m);
    WALK(f, "karr", sql, "kittagent-" A1, "'id':'" A1 "'", m, AGENT);
    json_decref(m);
    /* the least an agent sends, without `at` */
    uint64_t p = ev(f, "kittagent-" A2, "AgentRegistered", "{'id':'" A2 "','name':'wsl-laptop'}");
    char t[40];
    time_of(f, p, t);
    ev(f, "kittagent-00000000-dead-4000-8000-000000000000", "AgentHeartbeatReceived",
       "{'id':'00000000-dead-4000-8000-000000000000'}"); /* unknown: ignored */
    sync_proj(f, "karr");
    expect_table(f, "karr", "SELECT * FROM agents WHERE id = '" A2 "'",
                 "[{'id':'" A2 "','name':'wsl-laptop','hostname':null,'port':null,'token':null,'status':'online',"
                 "'gpu_info':null,'gpu_count':null,'cpu_info':null,'ram_gb':null,'environment_type':null,"
                 "'fingerprint':null,'kitt_version':null,'last_heartbeat':'%s','registered_at':'%s','notes':null,"
                 "'tags':null}]", t, t);
    CHECK(q_int(f, "karr", "SELECT count(*) FROM agents") == 2);
}

#define HW "{'gpu_model':'NVIDIA H100 80GB HBM3','gpu_vram_gb':80,'gpu_count':8,'cpu_model':'AMD EPYC 9654'," \
           "'cpu_cores':192,'ram_gb':2048,'environment_type':'dgx','fingerprint':'dgx|h100x8|epyc9654|2048'}"

static void benchmark_runs(fx *f) {
    /* R1: started with a hardware snapshot, two benchmarks, finished without
     * `raw`: raw_json is assembled from the rows */
    CHECK_RC(ev_x(f, "kittrun-" R1, EVL_REV_NO_STREAM, "BenchmarkRunStarted",
                  "{'id':'" R1 "','model':'Qwen/Qwen3-14B','engine':'vllm','suite_name':'standard',"
                  "'timestamp':'2025-12-18T09:00:00Z','kitt_version':'1.4.0','hardware':" HW ","
                  "'at':'2025-12-18T09:00:01Z'}"), EVL_OK);
    sync_proj(f, "karr");
    json_t *run = row_new("{'id':'" R1 "','model':'Qwen/Qwen3-14B','engine':'vllm','suite_name':'standard',"
                          "'timestamp':'2025-12-18T09:00:00Z','passed':0,'total_benchmarks':0,'passed_count':0,"
                          "'failed_count':0,'total_time_seconds':null,'kitt_version':'1.4.0','raw_json':null,"
                          "'created_at':'2025-12-18T09:00:01Z'}");
    const char *sql = "SELECT * FROM runs WHERE id = '" R1 "'";
    expect_row(f, "karr", sql, run);
    expect_table(f, "karr", "SELECT * FROM hardware",
                 "[{'id':1,'run_id':'" R1 "','gpu_model':'NVIDIA H100 80GB HBM3','gpu_vram_gb':80,'gpu_count':8,"
                 "'cpu_model':'AMD EPYC 9654','cpu_cores':192,'ram_gb':2048,'environment_type':'dgx',"
                 "'fingerprint':'dgx|h100x8|epyc9654|2048'}]");
    ev(f, "kittrun-" R1, "BenchmarkRecorded",
       "{'run_id':'" R1 "','test_name':'throughput','test_version':'1.2.0','run_number':1,'passed':true,"
       "'timestamp':'2025-12-18T09:00:02Z','metrics':{'tokens_per_second':1843.5,'ttft_ms_p50':41.25},"
       "'at':'2025-12-18T09:02:00Z'}");
    sync_proj(f, "karr");
    row_set(run, "{'total_benchmarks':1,'passed_count':1,'failed_count':0}");
    expect_row(f, "karr", sql, run);
    ev(f, "kittrun-" R1, "BenchmarkRecorded",
       "{'run_id':'" R1 "','test_name':'mmlu','test_version':'0.9','run_number':1,'passed':false,"
       "'metrics':{'accuracy':0.625},'at':'2025-12-18T09:05:00Z'}");
    sync_proj(f, "karr");
    row_set(run, "{'total_benchmarks':2,'passed_count':1,'failed_count':1}");
    expect_row(f, "karr", sql, run);
    expect_table(f, "karr", "SELECT * FROM benchmarks ORDER BY id",
                 "[{'id':1,'run_id':'" R1 "','test_name':'throughput','test_version':'1.2.0','run_number':1,"
                 "'passed':true,'timestamp':'2025-12-18T09:00:02Z','created_at':'2025-12-18T09:02:00Z'},"
                 "{'id':2,'run_id':'" R1 "','test_name':'mmlu','test_version':'0.9','run_number':1,'passed':false,"
                 "'timestamp':'2025-12-18T09:05:00Z','created_at':'2025-12-18T09:05:00Z'}]");
    expect_table(f, "karr", "SELECT * FROM metrics ORDER BY id",
                 "[{'id':1,'benchmark_id':1,'metric_name':'tokens_per_second','metric_value':1843.5},"
                 "{'id':2,'benchmark_id':1,'metric_name':'ttft_ms_p50','metric_value':41.25},"
                 "{'id':3,'benchmark_id':2,'metric_name':'accuracy','metric_value':0.625}]");
    ev(f, "kittrun-" R1, "BenchmarkRunFinished",
       "{'id':'" R1 "','passed':false,'total_time_seconds':312.5,'at':'2025-12-18T09:06:00Z'}");
    sync_proj(f, "karr");
    row_set(run, "{'passed':false,'total_time_seconds':312.5,'raw_json':"
                 "{'id':'" R1 "','model':'Qwen/Qwen3-14B','engine':'vllm','suite_name':'standard',"
                 "'timestamp':'2025-12-18T09:00:00Z','kitt_version':'1.4.0','passed':false,'total_time_seconds':312.5,"
                 "'results':[{'test_name':'throughput','test_version':'1.2.0','run_number':1,'passed':true,"
                 "'metrics':{'tokens_per_second':1843.5,'ttft_ms_p50':41.25}},"
                 "{'test_name':'mmlu','test_version':'0.9','run_number':1,'passed':false,"
                 "'metrics':{'accuracy':0.625}}]}}");
    expect_row(f, "karr", sql, run);
    json_decref(run);

    /* R2: no hardware, no timestamp (the start time), finished with the
     * harness's own output (`raw`) and its counts */
    ev(f, "kittrun-" R2, "BenchmarkRunStarted", "{'id':'" R2 "','model':'gpt2','engine':'llama.cpp',"
                                                "'suite_name':'quick','kitt_version':'1.4.0','at':'2025-12-18T10:00:00Z'}");
    ev(f, "kittrun-" R2, "BenchmarkRecorded", "{'run_id':'" R2 "','test_name':'throughput','test_version':'1.2.0',"
                                              "'run_number':1,'passed':true,'metrics':{'tokens_per_second':990.0},"
                                              "'at':'2025-12-18T10:01:00Z'}");
    ev(f, "kittrun-" R2, "BenchmarkRunFinished",
       "{'id':'" R2 "','passed':true,'total_time_seconds':60.25,'total_benchmarks':1,'passed_count':1,'failed_count':0,"
       "'raw':{'kitt_version':'1.4.0','passed':true,'results':[{'test_name':'throughput',"
       "'metrics':{'tokens_per_second':990.0}}],'notes':null},'at':'2025-12-18T10:01:30Z'}");
    sync_proj(f, "karr");
    expect_table(f, "karr", "SELECT * FROM runs WHERE id = '" R2 "'",
                 "[{'id':'" R2 "','model':'gpt2','engine':'llama.cpp','suite_name':'quick',"
                 "'timestamp':'2025-12-18T10:00:00Z','passed':true,'total_benchmarks':1,'passed_count':1,"
                 "'failed_count':0,'total_time_seconds':60.25,'kitt_version':'1.4.0',"
                 "'raw_json':{'kitt_version':'1.4.0','passed':true,'results':[{'test_name':'throughput',"
                 "'metrics':{'tokens_per_second':990.0}}],'notes':null},'created_at':'2025-12-18T10:00:00Z'}]");
    expect_table(f, "karr", "SELECT count(*) AS n FROM hardware WHERE run_id = '" R2 "'", "[{'n':0}]");
}

static void quick_tests(fx *f) {
    /* Q1: queued, started, completed in one batch with the run it produced */
    const char *sql = "SELECT * FROM quick_tests WHERE id = '" Q1 "'";
    CHECK_RC(ev_x(f, "kittquicktest-" Q1, EVL_REV_NO_STREAM, "QuickTestQueued",
                  "{'id':'" Q1 "','agent_id':'" A1 "','model_path':'/models/Qwen3-14B','engine_name':'vllm',"
                  "'benchmark_name':'throughput','at':'2025-12-18T11:00:00Z'}"), EVL_OK);
    sync_proj(f, "karr");
    json_t *m = row_new("{'id':'" Q1 "','agent_id':'" A1 "','model_path':'/models/Qwen3-14B','engine_name':'vllm',"
                        "'benchmark_name':'throughput','suite_name':null,'status':'queued',"
                        "'created_at':'2025-12-18T11:00:00Z','started_at':null,'completed_at':null,'result_id':null,"
                        "'error':null}");
    expect_row(f, "karr", sql, m);
    static const step Q1_STEPS[] = {
        {"QuickTestCompleted", "'result_id':'" R1 "'", "{}"}, /* not running yet */
        {"QuickTestStarted", "", "{'status':'running','started_at':'$AT'}"},
        {"QuickTestStarted", "", "{}"},
    };
    WALK(f, "karr", sql, "kittquicktest-" Q1, "'id':'" Q1 "'", m, Q1_STEPS);
    static const lc_batch_ev DONE[] = {
        {"kittrun-" R3, EVL_REV_NO_STREAM, "BenchmarkRunStarted",
         "{'id':'" R3 "','model':'/models/Qwen3-14B','engine':'vllm','suite_name':'quick-test','kitt_version':'1.5.0',"
         "'hardware':{'gpu_model':'NVIDIA H200','gpu_count':8},'at':'2025-12-18T11:01:00Z'}"},
        {"kittrun-" R3, EVL_REV_ANY, "BenchmarkRecorded",
         "{'run_id':'" R3 "','test_name':'throughput','test_version':'1.2.0','run_number':1,'passed':true,"
         "'metrics':{'tokens_per_second':2210.0,'itl_ms_p99':12.5},'at':'2025-12-18T11:02:00Z'}"},
        {"kittrun-" R3, EVL_REV_ANY, "BenchmarkRunFinished",
         "{'id':'" R3 "','passed':true,'total_time_seconds':75.0,'at':'2025-12-18T11:02:30Z'}"},
        {"kittquicktest-" Q1, EVL_REV_ANY, "QuickTestCompleted",
         "{'id':'" Q1 "','result_id':'" R3 "','at':'2025-12-18T11:02:31Z'}"},
    };
    OK(batch(f, DONE, 4));
    sync_proj(f, "karr");
    row_set(m, "{'status':'completed','result_id':'" R3 "','completed_at':'2025-12-18T11:02:31Z'}");
    expect_row(f, "karr", sql, m);
    static const step Q1_LATE[] = {
        {"QuickTestFailed", "'error':'late'", "{}"},
        {"QuickTestStarted", "", "{}"},
        {"QuickTestCompleted", "'result_id':'" R1 "'", "{}"},
    };
    WALK(f, "karr", sql, "kittquicktest-" Q1, "'id':'" Q1 "'", m, Q1_LATE);
    expect_table(f, "karr", "SELECT * FROM hardware WHERE run_id = '" R3 "'",
                 "[{'id':2,'run_id':'" R3 "','gpu_model':'NVIDIA H200','gpu_vram_gb':null,'gpu_count':8,"
                 "'cpu_model':null,'cpu_cores':null,'ram_gb':null,'environment_type':null,'fingerprint':null}]");

    /* Q2 fails while queued, Q3 while running (with a suite) */
    static const step Q2_STEPS[] = {
        {"QuickTestFailed", "'error':'agent unreachable'", "{'status':'failed','error':'agent unreachable','completed_at':'$AT'}"},
        {"QuickTestStarted", "", "{}"},
        {"QuickTestFailed", "'error':'again'", "{}"},
    };
    ev(f, "kittquicktest-" Q2, "QuickTestQueued", "{'id':'" Q2 "','agent_id':'" A2 "','model_path':'gpt2',"
                                                  "'engine_name':'llama.cpp','benchmark_name':'mmlu',"
                                                  "'at':'2025-12-18T11:10:00Z'}");
    sync_proj(f, "karr");
    json_decref(m);
    m = row_new("{'id':'" Q2 "','agent_id':'" A2 "','model_path':'gpt2','engine_name':'llama.cpp',"
                "'benchmark_name':'mmlu','suite_name':null,'status':'queued','created_at':'2025-12-18T11:10:00Z',"
                "'started_at':null,'completed_at':null,'result_id':null,'error':null}");
    WALK(f, "karr", "SELECT * FROM quick_tests WHERE id = '" Q2 "'", "kittquicktest-" Q2, "'id':'" Q2 "'", m, Q2_STEPS);
    json_decref(m);
    static const step Q3_STEPS[] = {
        {"QuickTestStarted", "", "{'status':'running','started_at':'$AT'}"},
        {"QuickTestFailed", "'error':'CUDA out of memory'", "{'status':'failed','error':'CUDA out of memory','completed_at':'$AT'}"},
        {"QuickTestCompleted", "'result_id':'" R2 "'", "{}"},
    };
    ev(f, "kittquicktest-" Q3, "QuickTestQueued", "{'id':'" Q3 "','agent_id':'" A1 "','model_path':'gpt2',"
                                                  "'engine_name':'vllm','benchmark_name':'throughput',"
                                                  "'suite_name':'standard','at':'2025-12-18T11:20:00Z'}");
    sync_proj(f, "karr");
    m = row_new("{'id':'" Q3 "','agent_id':'" A1 "','model_path':'gpt2','engine_name':'vllm',"
                "'benchmark_name':'throughput','suite_name':'standard','status':'queued',"
                "'created_at':'2025-12-18T11:20:00Z','started_at':null,'completed_at':null,'result_id':null,'error':null}");
    WALK(f, "karr", "SELECT * FROM quick_tests WHERE id = '" Q3 "'", "kittquicktest-" Q3, "'id':'" Q3 "'", m, Q3_STEPS);
    json_decref(m);
}

/* Deleting a run takes its benchmarks, metrics and hardware and clears the
 * quick test that pointed at it; the other runs keep theirs. */
static void run_deletion(fx *f) {
    ev(f, "kittrun-" R3, "BenchmarkRunDeleted", "{'id':'" R3 "','at':'2025-12-18T12:00:00Z'}");
    sync_proj(f, "karr");
    expect_table(f, "karr", "SELECT id FROM runs ORDER BY created_at", "[{'id':'" R1 "'},{'id':'" R2 "'}]");
    expect_table(f, "karr", "SELECT id, run_id FROM benchmarks ORDER BY id",
                 "[{'id':1,'run_id':'" R1 "'},{'id':2,'run_id':'" R1 "'},{'id':3,'run_id':'" R2 "'}]");
    expect_table(f, "karr", "SELECT id, benchmark_id, metric_name FROM metrics ORDER BY id",
                 "[{'id':1,'benchmark_id':1,'metric_name':'tokens_per_second'},"
                 "{'id':2,'benchmark_id':1,'metric_name':'ttft_ms_p50'},{'id':3,'benchmark_id':2,'metric_name':'accuracy'},"
                 "{'id':4,'benchmark_id':3,'metric_name':'tokens_per_second'}]");
    expect_table(f, "karr", "SELECT id, run_id FROM hardware", "[{'id':1,'run_id':'" R1 "'}]");
    expect_table(f, "karr", "SELECT id, status, result_id FROM quick_tests WHERE id = '" Q1 "'",
                 "[{'id':'" Q1 "','status':'completed','result_id':null}]");
    /* a deleted run's late events find no row */
    ev(f, "kittrun-" R3, "BenchmarkRunFinished", "{'id':'" R3 "','passed':true,'total_time_seconds':1.0}");
    expect_live(f, "karr");
    CHECK(q_int(f, "karr", "SELECT count(*) FROM runs") == 2);
}

#define CAMPAIGN_CFG "{'models':['Qwen/Qwen3-14B','gpt2'],'engines':['vllm','llama.cpp'],'suite':'standard','repeat':1}"

static void campaigns(fx *f) {
    CHECK_RC(ev_x(f, "kittcampaign-" C1, EVL_REV_NO_STREAM, "CampaignCreated",
                  "{'id':'" C1 "','name':'nightly-h100','description':'Nightly regression on H100',"
                  "'config':" CAMPAIGN_CFG ",'total_runs':4,'at':'2025-12-18T13:00:00Z'}"), EVL_OK);
    sync_proj(f, "karr");
    json_t *m = row_new("{'id':'" C1 "','name':'nightly-h100','description':'Nightly regression on H100',"
                        "'config_json':" CAMPAIGN_CFG ",'status':'pending','agent_id':null,"
                        "'created_at':'2025-12-18T13:00:00Z','started_at':null,'completed_at':null,'total_runs':4,"
                        "'succeeded':0,'failed':0,'skipped':0,'error':null}");
    const char *sql = "SELECT * FROM web_campaigns WHERE id = '" C1 "'";
    expect_row(f, "karr", sql, m);
    static const step C1_STEPS[] = {
        {"CampaignProgressed", "'succeeded':1,'failed':0,'skipped':0", "{}"},
        {"CampaignCompleted", "", "{}"},
        {"CampaignStarted", "'agent_id':'" A1 "'", "{'status':'running','agent_id':'" A1 "','started_at':'$AT'}"},
        {"CampaignStarted", "'agent_id':'" A2 "'", "{}"},
        {"CampaignProgressed", "'succeeded':1,'failed':0,'skipped':0", "{'succeeded':1}"},
        /* absolute tallies: a repeated report does not double-count */
        {"CampaignProgressed", "'succeeded':1,'failed':0,'skipped':0", "{}"},
        {"CampaignProgressed", "'succeeded':2,'failed':1,'skipped':0", "{'succeeded':2,'failed':1}"},
        {"CampaignCompleted", "'succeeded':2,'failed':1,'skipped':1",
         "{'status':'completed','skipped':1,'completed_at':'$AT'}"},
        {"CampaignProgressed", "'succeeded':4,'failed':0,'skipped':0", "{}"},
        {"CampaignFailed", "'error':'late'", "{}"},
        {"CampaignStarted", "", "{}"},
        {"CampaignCompleted", "", "{}"},
    };
    WALK(f, "karr", sql, "kittcampaign-" C1, "'id':'" C1 "'", m, C1_STEPS);
    json_decref(m);

    /* C2 fails while pending (agent named at creation); C3 fails while
     * running; a completion without tallies keeps them */
    static const step C2_STEPS[] = {
        {"CampaignFailed", "'error':'no agent available'",
         "{'status':'failed','error':'no agent available','completed_at':'$AT'}"},
        {"CampaignStarted", "", "{}"},
    };
    ev(f, "kittcampaign-" C2, "CampaignCreated", "{'id':'" C2 "','name':'adhoc','config':{},'agent_id':'" A2 "',"
                                                 "'total_runs':1,'at':'2025-12-18T13:10:00Z'}");
    sync_proj(f, "karr");
    m = row_new("{'id':'" C2 "','name':'adhoc','description':null,'config_json':{},'status':'pending',"
                "'agent_id':'" A2 "','created_at':'2025-12-18T13:10:00Z','started_at':null,'completed_at':null,"
                "'total_runs':1,'succeeded':0,'failed':0,'skipped':0,'error':null}");
    WALK(f, "karr", "SELECT * FROM web_campaigns WHERE id = '" C2 "'", "kittcampaign-" C2, "'id':'" C2 "'", m, C2_STEPS);
    json_decref(m);
    static const step C3_STEPS[] = {
        {"CampaignStarted", "", "{'status':'running','started_at':'$AT'}"},
        {"CampaignProgressed", "'succeeded':3,'failed':0,'skipped':2", "{'succeeded':3,'skipped':2}"},
        {"CampaignFailed", "'error':'agent went offline'",
         "{'status':'failed','error':'agent went offline','completed_at':'$AT'}"},
        {"CampaignCompleted", "", "{}"},
    };
    ev(f, "kittcampaign-" C3, "CampaignCreated", "{'id':'" C3 "','name':'weekly','config':{'suite':'full'},"
                                                 "'agent_id':'" A1 "','total_runs':10,'at':'2025-12-18T13:20:00Z'}");
    sync_proj(f, "karr");
    m = row_new("{'id':'" C3 "','name':'weekly','description':null,'config_json':{'suite':'full'},'status':'pending',"
                "'agent_id':'" A1 "','created_at':'2025-12-18T13:20:00Z','started_at':null,'completed_at':null,"
                "'total_runs':10,'succeeded':0,'failed':0,'skipped':0,'error':null}");
    WALK(f, "karr", "SELECT * FROM web_campaigns WHERE id = '" C3 "'", "kittcampaign-" C3, "'id':'" C3 "'", m, C3_STEPS);
    json_decref(m);
}

/* The `events` table is the log's events of the four KARR categories:
 * id = position, event_type, source_id = the stream after its category,
 * data = the payload as JSON, created_at = the commit time. */
static void karr_events(fx *f) {
    expect_live(f, "karr");
    json_t *want = json_array();
    evl_iter *it;
    evl_event e;
    OK(evl_iter_open(f->log, &(evl_query){.until_position = f->last}, &it));
    size_t others = 0;
    while (evl_iter_next(it, &e) == EVL_OK) {
        size_t cl = evl_stream_category(e.stream, e.stream_len);
        static const char *const cats[] = {"kittagent", "kittrun", "kittcampaign", "kittquicktest"};
        int karr = 0;
        for (size_t i = 0; i < 4; i++)
            if (strlen(cats[i]) == cl && !memcmp(cats[i], e.stream, cl)) karr = 1;
        if (!karr) { others++; continue; }
        json_t *data;
        OK(evl_json_from_msgpack(e.data, e.data_len, &data));
        char t[40];
        evl_time_format(e.time_ns, 3, t);
        json_array_append_new(want, json_pack("{s:I,s:s%,s:s%,s:o,s:s}", "id", (json_int_t)e.position,
                                              "event_type", e.type, e.type_len, "source_id", e.stream + cl + 1,
                                              e.stream_len - cl - 1, "data", data, "created_at", t));
    }
    evl_iter_close(it);
    CHECK(others > 0 && json_array_size(want) > 40);
    expect_json(f, "karr", "SELECT * FROM events ORDER BY id", want);
    json_decref(want);
    /* spot check one row by hand: the first registration of A1 */
    expect_table(f, "karr", "SELECT event_type, source_id, data FROM events WHERE event_type = 'AgentRegistered' "
                            "ORDER BY id LIMIT 1",
                 "[{'event_type':'AgentRegistered','source_id':'" A1 "','data':{'id':'" A1 "'," AGENT_FIELDS ","
                 "'token_hash':'" TOKEN1 "','tags':'h100,prod','at':'%s'}}]", a1_registered);
    expect_table(f, "karr", "SELECT count(*) AS n FROM events WHERE event_type LIKE 'FusionRun%%'", "[{'n':0}]");
}

/* Handler errors fault one projection at that event. */
static void faults(void) {
    fx f;
    fx_open(&f, "harness-fault");
    uint64_t bad = ev(&f, "fusionrun-aaaaaaaaaaaa", "FusionRunCreated", "{'id':'aaaaaaaaaaaa','config':{}}");
    expect_fault(&f, "runs", bad, "FusionRunCreated", "NOT NULL constraint failed: runs.template");
    /* a quick test for an agent KARR does not know: the foreign key */
    bad = ev(&f, "kittquicktest-x", "QuickTestQueued", "{'id':'x','agent_id':'nobody','model_path':'gpt2'}");
    expect_fault(&f, "karr", bad, "QuickTestQueued", "FOREIGN KEY constraint failed");
    fx_close(&f);
}

int main(void) {
    fx f;
    fx_open(&f, "harness");
    fusion(&f);
    agents(&f);
    benchmark_runs(&f);
    quick_tests(&f);
    run_deletion(&f);
    campaigns(&f);
    karr_events(&f);
    fx_close(&f);
    faults();
    TEST_PASS();
}
