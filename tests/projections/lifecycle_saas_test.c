/* The SaaS simulation platform's built-in projection (seed
 * saas-simulation-jobs-schema.txt) driven through the C API, whole rows
 * compared: accounts (verification, password reset), simulation_jobs
 * through the JobStatus lifecycle (DRAFT -> PENDING -> PROVISIONING ->
 * RUNNING -> REPORTING -> COMPLETED, FAILED from every unfinished state,
 * retries, resumption, sharing), model_routing (upsert, removal) and
 * error_events, with the dead column and status never written. */
#include "lifecycle.h"

#define BCRYPT_A "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
#define BCRYPT_B "$2b$12$EXRkfkdmXn2gzds2SSitu.MW9.gAVqa9eLS1//RYtYCmB1eLHg.9q"
#define SHA256(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
                  c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static void accounts(fx *f) {
    CHECK_RC(ev_x(f, "account-1", EVL_REV_NO_STREAM, "AccountRegistered",
                  "{'id':1,'email':'ada@example.com','password_hash':'" BCRYPT_A "',"
                  "'verification_token_hash':'" SHA256("a") "','at':'2025-12-18T08:00:00Z'}"), EVL_OK);
    sync_proj(f, "saas");
    json_t *m = row_new("{'id':1,'email':'ada@example.com','password_hash':'" BCRYPT_A "',"
                        "'created_at':'2025-12-18T08:00:00Z','email_verified':false,"
                        "'verification_token':'" SHA256("a") "','reset_token':null,'reset_token_expires':null}");
    const char *sql = "SELECT * FROM users WHERE id = 1";
    expect_row(f, "saas", sql, m);
    static const step ACCOUNT[] = {
        {"AccountEmailVerified", "", "{'email_verified':true,'verification_token':null}"},
        {"AccountEmailVerified", "", "{}"},
        {"AccountPasswordResetRequested", "'reset_token_hash':'" SHA256("b") "','reset_token_expires':'2025-12-18T09:00:00Z'",
         "{'reset_token':'" SHA256("b") "','reset_token_expires':'2025-12-18T09:00:00Z'}"},
        /* a second request replaces the first */
        {"AccountPasswordResetRequested", "'reset_token_hash':'" SHA256("c") "','reset_token_expires':'2025-12-18T09:30:00Z'",
         "{'reset_token':'" SHA256("c") "','reset_token_expires':'2025-12-18T09:30:00Z'}"},
        {"AccountPasswordReset", "'password_hash':'" BCRYPT_B "'",
         "{'password_hash':'" BCRYPT_B "','reset_token':null,'reset_token_expires':null}"},
    };
    WALK(f, "saas", sql, "account-1", "'id':1", m, ACCOUNT);
    json_decref(m);
    /* the least, without `at` */
    uint64_t p = ev(f, "account-2", "AccountRegistered", "{'id':2,'email':'bob@example.com','password_hash':'" BCRYPT_B "'}");
    char t[40];
    time_of(f, p, t);
    /* an account verified elsewhere (email_verified given) */
    ev(f, "account-4", "AccountRegistered", "{'id':4,'email':'cy@example.com','password_hash':'" BCRYPT_A "',"
                                            "'email_verified':true,'at':'2025-12-18T08:30:00Z'}");
    ev(f, "account-3", "AccountEmailVerified", "{'id':3}"); /* unknown: ignored */
    ev(f, "account-3", "AccountPasswordReset", "{'id':3,'password_hash':'x'}");
    sync_proj(f, "saas");
    expect_table(f, "saas", "SELECT * FROM users ORDER BY id",
                 "[{'id':1,'email':'ada@example.com','password_hash':'" BCRYPT_B "','created_at':'2025-12-18T08:00:00Z',"
                 "'email_verified':true,'verification_token':null,'reset_token':null,'reset_token_expires':null},"
                 "{'id':2,'email':'bob@example.com','password_hash':'" BCRYPT_B "','created_at':'%s',"
                 "'email_verified':false,'verification_token':null,'reset_token':null,'reset_token_expires':null},"
                 "{'id':4,'email':'cy@example.com','password_hash':'" BCRYPT_A "','created_at':'2025-12-18T08:30:00Z',"
                 "'email_verified':true,'verification_token':null,'reset_token':null,'reset_token_expires':null}]", t);
}

/* A job as a SimulationJobSubmitted with only the required fields leaves it. */
static json_t *job_model(long long id, const char *user, const char *seed, const char *status, const char *at) {
    return row_new("{'id':%lld,'user_id':'%s','seed_text':'%s','goal':null,'tier':null,'credits_charged':0,"
                   "'status':'%s','pipeline_stage':null,'result_report':null,'result_chat_log':null,'result_graph':null,"
                   "'result_structured':null,'error_message':null,'gpu_provider':null,'gpu_cost_usd':null,"
                   "'created_at':'%s','completed_at':null,'pod_id':null,'celery_task_id':null,'workflow_id':null,"
                   "'workflow_run_id':null,'retry_count':0,'retry_of':null,'provision_seconds':null,"
                   "'pipeline_seconds':null,'key_insight':null,'share_token':null,'last_heartbeat':null,"
                   "'enrich_web':true,'enriched_seed':null,'enrichment_citations':null,'forecast_days':null,"
                   "'sim_data_available':false,'live_status':null,'resume_task_id':null,'markets_config':null}",
                   id, user, seed, status, at);
}

#define MARKETS "{'markets':[{'question':'Will the ECB cut rates in March?','type':'binary'}]}"
#define MARKETS2 "{'markets':[{'question':'Will the ECB cut rates in March?','type':'binary','price':0.625}]}"

#define JOB_TERMINAL                                                            \
    {"SimulationJobFailed", "'error_message':'late'", "{}"},                    \
    {"SimulationJobProvisioningStarted", "'gpu_provider':'x'", "{}"},           \
    {"SimulationJobStarted", "'pod_id':'x','provision_seconds':1", "{}"},       \
    {"SimulationJobHeartbeatReceived", "'pipeline_stage':9", "{}"},             \
    {"SimulationJobResumed", "'resume_task_id':'x'", "{}"},                     \
    {"SimulationJobReportingStarted", "'pipeline_seconds':1", "{}"},            \
    {"SimulationJobCompleted", "'result_report':'late','key_insight':'late'", "{}"}, \
    {"SimulationJobSubmitted", "'user_id':'u','seed_text':'again'", "{}"}

/* The whole pipeline, from a draft to a shared report. */
static const step PIPELINE[] = {
    {"SimulationJobProvisioningStarted", "'gpu_provider':'runpod'", "{}"},
    {"SimulationJobStarted", "'pod_id':'x','provision_seconds':1", "{}"},
    /* the draft is submitted with its final specification (markets_config kept) */
    {"SimulationJobSubmitted",
     "'user_id':'user_2a9Xk','seed_text':'ECB March meeting, rates at 2.75 (edited)','goal':'Will the ECB cut?',"
     "'tier':'pro','enrich_web':true,'forecast_days':14",
     "{'seed_text':'ECB March meeting, rates at 2.75 (edited)','goal':'Will the ECB cut?','status':'PENDING',"
     "'enrich_web':true,'forecast_days':14}"},
    {"SimulationJobSubmitted", "'user_id':'user_2a9Xk','seed_text':'resubmitted'", "{}"},
    {"SimulationJobSeedEnriched",
     "'enriched_seed':'ECB March meeting; inflation 2.2 pct','enrichment_citations':['https://ecb.europa.eu/a','https://reuters.com/b']",
     "{'enriched_seed':'ECB March meeting; inflation 2.2 pct',"
     "'enrichment_citations':['https://ecb.europa.eu/a','https://reuters.com/b']}"},
    {"SimulationJobStarted", "'pod_id':'x','provision_seconds':1", "{}"},
    {"SimulationJobHeartbeatReceived", "'pipeline_stage':1", "{}"},
    {"SimulationJobProvisioningStarted",
     "'gpu_provider':'runpod','workflow_id':'sim-100','workflow_run_id':'0193f2c4-run','celery_task_id':'c-77'",
     "{'status':'PROVISIONING','gpu_provider':'runpod','workflow_id':'sim-100','workflow_run_id':'0193f2c4-run',"
     "'celery_task_id':'c-77'}"},
    {"SimulationJobHeartbeatReceived", "'pipeline_stage':1", "{}"},
    {"SimulationJobReportingStarted", "'pipeline_seconds':1", "{}"},
    {"SimulationJobStarted", "'pod_id':'pod-7f3a','provision_seconds':95",
     "{'status':'RUNNING','pod_id':'pod-7f3a','provision_seconds':95,'pipeline_stage':0,'last_heartbeat':'$AT'}"},
    {"SimulationJobHeartbeatReceived", "'pipeline_stage':2,'live_status':{'round':12,'agents':5,'phase':'debate'}",
     "{'last_heartbeat':'$AT','pipeline_stage':2,'live_status':{'round':12,'agents':5,'phase':'debate'}}"},
    {"SimulationJobHeartbeatReceived", "", "{'last_heartbeat':'$AT'}"},
    {"SimulationJobCompleted", "'result_report':'too early'", "{}"},
    /* the stale-job detector restarts it on a new pod */
    {"SimulationJobResumed", "'resume_task_id':'celery-resume-1','pod_id':'pod-8b1c'",
     "{'status':'RUNNING','resume_task_id':'celery-resume-1','pod_id':'pod-8b1c','last_heartbeat':'$AT'}"},
    {"SimulationJobReportingStarted", "'pipeline_seconds':1830,'pipeline_stage':5",
     "{'status':'REPORTING','pipeline_seconds':1830,'pipeline_stage':5}"},
    {"SimulationJobReportingStarted", "'pipeline_seconds':1", "{}"},
    /* restarted while reporting: back to RUNNING (pod kept), then reporting again */
    {"SimulationJobResumed", "'resume_task_id':'celery-resume-2'",
     "{'status':'RUNNING','resume_task_id':'celery-resume-2','last_heartbeat':'$AT'}"},
    {"SimulationJobReportingStarted", "'pipeline_seconds':1900",
     "{'status':'REPORTING','pipeline_seconds':1900}"},
    {"SimulationJobHeartbeatReceived", "'live_status':{'phase':'report'}",
     "{'last_heartbeat':'$AT','live_status':{'phase':'report'}}"},
    {"SimulationJobArtifactsStored", "", "{'sim_data_available':true}"},
    {"SimulationJobCompleted",
     "'result_report':'# Forecast\\n\\nA cut is likely.','result_chat_log':[{'agent':'analyst','text':'cut'},"
     "{'agent':'skeptic','text':'hold'}],'result_graph':{'nodes':[{'id':'ECB'},{'id':'inflation'}],"
     "'edges':[['inflation','ECB']]},'result_structured':{'probability':0.625,'horizon_days':14},"
     "'key_insight':'Inflation data drives a March cut','gpu_cost_usd':1.25,'markets_config':" MARKETS2,
     "{'status':'COMPLETED','result_report':'# Forecast\\n\\nA cut is likely.',"
     "'result_chat_log':[{'agent':'analyst','text':'cut'},{'agent':'skeptic','text':'hold'}],"
     "'result_graph':{'nodes':[{'id':'ECB'},{'id':'inflation'}],'edges':[['inflation','ECB']]},"
     "'result_structured':{'probability':0.625,'horizon_days':14},'key_insight':'Inflation data drives a March cut',"
     "'gpu_cost_usd':1.25,'markets_config':" MARKETS2 ",'completed_at':'$AT'}"},
    {"SimulationJobShared", "'share_token_hash':'" SHA256("d") "'", "{'share_token':'" SHA256("d") "'}"},
    JOB_TERMINAL,
};

static void simulation_jobs(fx *f) {
    /* job 100: drafted, then the whole pipeline */
    const char *at = tick(f);
    CHECK_RC(ev_x(f, "simjob-100", EVL_REV_NO_STREAM, "SimulationJobDrafted",
                  "{'id':100,'user_id':'user_2a9Xk','seed_text':'ECB March meeting, rates at 2.75',"
                  "'goal':'Will the ECB cut in March?','tier':'pro','enrich_web':false,'forecast_days':30,"
                  "'markets_config':" MARKETS ",'at':'%s'}", at), EVL_OK);
    sync_proj(f, "saas");
    json_t *m = job_model(100, "user_2a9Xk", "ECB March meeting, rates at 2.75", "DRAFT", at);
    row_set(m, "{'goal':'Will the ECB cut in March?','tier':'pro','enrich_web':false,'forecast_days':30,"
               "'markets_config':" MARKETS "}");
    const char *sql = "SELECT * FROM simulation_jobs WHERE id = 100";
    expect_row(f, "saas", sql, m);
    WALK(f, "saas", sql, "simjob-100", "'id':100", m, PIPELINE);
    json_decref(m);

    /* job 101: submitted directly (defaults, no `at`), fails while running,
     * together with its error event (one batch) */
    uint64_t p = ev(f, "simjob-101", "SimulationJobSubmitted",
                    "{'id':101,'user_id':'user_77','seed_text':'Oil above 90 by June?','tier':'basic'}");
    char t[40];
    time_of(f, p, t);
    sync_proj(f, "saas");
    m = job_model(101, "user_77", "Oil above 90 by June?", "PENDING", t);
    row_set(m, "{'tier':'basic'}");
    sql = "SELECT * FROM simulation_jobs WHERE id = 101";
    expect_row(f, "saas", sql, m);
    static const step RUN[] = {
        {"SimulationJobProvisioningStarted", "'gpu_provider':'modal','workflow_id':'sim-101','workflow_run_id':'r-1',"
         "'pod_id':'pod-early'",
         "{'status':'PROVISIONING','gpu_provider':'modal','workflow_id':'sim-101','workflow_run_id':'r-1',"
         "'pod_id':'pod-early'}"},
        {"SimulationJobStarted", "'provision_seconds':40,'pipeline_stage':1",
         "{'status':'RUNNING','provision_seconds':40,'pipeline_stage':1,'last_heartbeat':'$AT'}"},
    };
    WALK(f, "saas", sql, "simjob-101", "'id':101", m, RUN);
    static const lc_batch_ev FAIL[] = {
        {"simjob-101", EVL_REV_ANY, "SimulationJobFailed",
         "{'id':101,'error_message':'pod evicted','gpu_cost_usd':0.5,'at':'2025-12-18T12:00:00Z'}"},
        {"saaserrors-worker", EVL_REV_ANY, "ErrorCaptured",
         "{'source':'worker','message':'pod evicted','traceback':'Traceback (most recent call last):\\n  ...',"
         "'user_id':'user_77','job_id':101,'at':'2025-12-18T12:00:00Z'}"},
    };
    OK(batch(f, FAIL, 2));
    sync_proj(f, "saas");
    row_set(m, "{'status':'FAILED','error_message':'pod evicted','gpu_cost_usd':0.5,'completed_at':'2025-12-18T12:00:00Z'}");
    expect_row(f, "saas", sql, m);
    static const step DONE[] = {JOB_TERMINAL};
    WALK(f, "saas", sql, "simjob-101", "'id':101", m, DONE);
    json_decref(m);
    expect_table(f, "saas", "SELECT * FROM error_events",
                 "[{'id':1,'timestamp':'2025-12-18T12:00:00Z','level':'ERROR','source':'worker',"
                 "'message':'pod evicted','traceback':'Traceback (most recent call last):\\n  ...',"
                 "'user_id':'user_77','job_id':101,'request_path':null}]");

    /* job 102: a retry of 101 */
    ev(f, "simjob-102", "SimulationJobSubmitted",
       "{'id':102,'user_id':'user_77','seed_text':'Oil above 90 by June?','tier':'basic','retry_of':101,"
       "'retry_count':1,'at':'2025-12-18T12:01:00Z'}");
    sync_proj(f, "saas");
    m = job_model(102, "user_77", "Oil above 90 by June?", "PENDING", "2025-12-18T12:01:00Z");
    row_set(m, "{'tier':'basic','retry_of':101,'retry_count':1}");
    expect_row(f, "saas", "SELECT * FROM simulation_jobs WHERE id = 102", m);
    json_decref(m);

    /* job 103: a draft that is submitted as a retry: the submission's fields
     * are written, retry_of and retry_count included */
    ev(f, "simjob-103", "SimulationJobDrafted", "{'id':103,'user_id':'user_77','seed_text':'draft',"
                                               "'at':'2025-12-18T12:02:00Z'}");
    ev(f, "simjob-103", "SimulationJobSubmitted",
       "{'id':103,'user_id':'user_77','seed_text':'Oil above 95 by June?','retry_of':101,'retry_count':2,"
       "'at':'2025-12-18T12:03:00Z'}");
    sync_proj(f, "saas");
    m = job_model(103, "user_77", "Oil above 95 by June?", "PENDING", "2025-12-18T12:02:00Z");
    row_set(m, "{'retry_of':101,'retry_count':2}");
    expect_row(f, "saas", "SELECT * FROM simulation_jobs WHERE id = 103", m);
    json_decref(m);

    /* FAILED from every other unfinished state: DRAFT, PENDING, PROVISIONING, REPORTING */
    static const struct { long long id; const char *create, *path[4]; const char *changes; } FAILS[] = {
        {104, "SimulationJobDrafted", {NULL}, "{'status':'DRAFT'}"},
        {105, "SimulationJobSubmitted", {NULL}, "{}"},
        {106, "SimulationJobSubmitted", {"SimulationJobProvisioningStarted", NULL},
         "{'status':'PROVISIONING','gpu_provider':'runpod'}"},
        {107, "SimulationJobSubmitted",
         {"SimulationJobProvisioningStarted", "SimulationJobStarted", "SimulationJobReportingStarted", NULL},
         "{'status':'REPORTING','gpu_provider':'runpod','pipeline_stage':0}"},
    };
    for (size_t i = 0; i < sizeof FAILS / sizeof FAILS[0]; i++) {
        char stream[32], key[32], q[96];
        snprintf(stream, sizeof stream, "simjob-%lld", FAILS[i].id);
        snprintf(key, sizeof key, "'id':%lld", FAILS[i].id);
        snprintf(q, sizeof q, "SELECT * FROM simulation_jobs WHERE id = %lld", FAILS[i].id);
        at = tick(f);
        ev(f, stream, FAILS[i].create, "{%s,'user_id':'u9','seed_text':'s','at':'%s'}", key, at);
        m = job_model(FAILS[i].id, "u9", "s", "PENDING", at);
        for (size_t k = 0; FAILS[i].path[k]; k++) {
            const char *t_k = tick(f);
            ev(f, stream, FAILS[i].path[k], "{%s,'gpu_provider':'runpod','at':'%s'}", key, t_k);
            if (!strcmp(FAILS[i].path[k], "SimulationJobStarted")) row_set(m, "{'last_heartbeat':'%s'}", t_k);
        }
        sync_proj(f, "saas");
        row_patch(m, FAILS[i].changes, "");
        expect_row(f, "saas", q, m);
        static const step FAILED[] = {
            {"SimulationJobFailed", "'error_message':'cancelled by the user'",
             "{'status':'FAILED','error_message':'cancelled by the user','completed_at':'$AT'}"},
            JOB_TERMINAL,
        };
        WALK(f, "saas", q, stream, key, m, FAILED);
        json_decref(m);
    }

    /* events for a job the table does not know are ignored */
    ev(f, "simjob-999", "SimulationJobStarted", "{'id':999,'pod_id':'p','provision_seconds':1}");
    ev(f, "simjob-999", "SimulationJobCompleted", "{'id':999,'result_report':'r'}");
    ev(f, "simjob-999", "SimulationJobShared", "{'id':999,'share_token_hash':'" SHA256("e") "'}");
    ev(f, "simjob-999", "SimulationJobArtifactsStored", "{'id':999}");
    expect_live(f, "saas");
    expect_table(f, "saas", "SELECT status, count(*) AS n, sum(credits_charged) AS credits FROM simulation_jobs "
                            "GROUP BY status ORDER BY status",
                 "[{'status':'COMPLETED','n':1,'credits':0},{'status':'FAILED','n':5,'credits':0},"
                 "{'status':'PENDING','n':2,'credits':0}]");
    CHECK(q_int(f, "saas", "SELECT count(*) FROM simulation_jobs WHERE status = 'REFUNDED'") == 0);
}

static void model_routing(fx *f) {
    ev(f, "modelrouting-pro", "ModelRoutingConfigured",
       "{'sim_tier':'pro','model_id':'Qwen/Qwen3-14B','gpu_type':'NVIDIA L40S','at':'2025-12-18T08:00:00Z'}");
    ev(f, "modelrouting-basic", "ModelRoutingConfigured",
       "{'sim_tier':'basic','model_id':'Qwen/Qwen3-8B','gpu_type':'NVIDIA A10G','max_rounds':100,"
       "'vllm_args':'--max-model-len 16384','target_agents':3,'at':'2025-12-18T08:00:01Z'}");
    sync_proj(f, "saas");
    expect_table(f, "saas", "SELECT * FROM model_routing ORDER BY id",
                 "[{'id':1,'sim_tier':'pro','model_id':'Qwen/Qwen3-14B','gpu_type':'NVIDIA L40S','max_rounds':200,"
                 "'vllm_args':null,'target_agents':5},"
                 "{'id':2,'sim_tier':'basic','model_id':'Qwen/Qwen3-8B','gpu_type':'NVIDIA A10G','max_rounds':100,"
                 "'vllm_args':'--max-model-len 16384','target_agents':3}]");
    /* reconfigured: the row is replaced (absent fields take their defaults),
     * its id stays */
    ev(f, "modelrouting-pro", "ModelRoutingConfigured",
       "{'sim_tier':'pro','model_id':'Qwen/Qwen3-32B','gpu_type':'NVIDIA H100','max_rounds':300,'target_agents':8,"
       "'vllm_args':'--tensor-parallel-size 2'}");
    ev(f, "modelrouting-basic", "ModelRoutingConfigured",
       "{'sim_tier':'basic','model_id':'Qwen/Qwen3-8B','gpu_type':'NVIDIA L4'}");
    sync_proj(f, "saas");
    expect_table(f, "saas", "SELECT * FROM model_routing ORDER BY id",
                 "[{'id':1,'sim_tier':'pro','model_id':'Qwen/Qwen3-32B','gpu_type':'NVIDIA H100','max_rounds':300,"
                 "'vllm_args':'--tensor-parallel-size 2','target_agents':8},"
                 "{'id':2,'sim_tier':'basic','model_id':'Qwen/Qwen3-8B','gpu_type':'NVIDIA L4','max_rounds':200,"
                 "'vllm_args':null,'target_agents':5}]");
    ev(f, "modelrouting-basic", "ModelRoutingRemoved", "{'sim_tier':'basic'}");
    ev(f, "modelrouting-free", "ModelRoutingRemoved", "{'sim_tier':'free'}"); /* none: nothing */
    ev(f, "modelrouting-basic", "ModelRoutingConfigured",
       "{'sim_tier':'basic','model_id':'Qwen/Qwen3-4B','gpu_type':'NVIDIA L4'}");
    sync_proj(f, "saas");
    /* a new row: AUTOINCREMENT never reuses an id, and each upsert that
     * became an update consumed one (as a PostgreSQL sequence would), so 5 —
     * the same on every replay */
    expect_table(f, "saas", "SELECT * FROM model_routing WHERE sim_tier = 'basic'",
                 "[{'id':5,'sim_tier':'basic','model_id':'Qwen/Qwen3-4B','gpu_type':'NVIDIA L4','max_rounds':200,"
                 "'vllm_args':null,'target_agents':5}]");
    CHECK(q_int(f, "saas", "SELECT count(*) FROM model_routing") == 2);
}

static void error_events(fx *f) {
    ev(f, "saaserrors-api", "ErrorCaptured",
       "{'source':'api','message':'KeyError: tier','request_path':'/api/jobs/42','user_id':'user_1',"
       "'at':'2025-12-18T13:00:00Z'}");
    uint64_t p = ev(f, "saaserrors-gpu", "ErrorCaptured",
                    "{'source':'gpu','level':'WARNING','message':'ECC error corrected','job_id':102}");
    char t[40];
    time_of(f, p, t);
    sync_proj(f, "saas");
    expect_table(f, "saas", "SELECT * FROM error_events WHERE id > 1 ORDER BY id",
                 "[{'id':2,'timestamp':'2025-12-18T13:00:00Z','level':'ERROR','source':'api','message':'KeyError: tier',"
                 "'traceback':null,'user_id':'user_1','job_id':null,'request_path':'/api/jobs/42'},"
                 "{'id':3,'timestamp':'%s','level':'WARNING','source':'gpu','message':'ECC error corrected',"
                 "'traceback':null,'user_id':null,'job_id':102,'request_path':null}]", t);
}

/* A handler error faults the projection at that event: a second account
 * with an email already registered (a unique index). */
static void faults(void) {
    fx f;
    fx_open(&f, "saas-fault");
    ev(&f, "account-1", "AccountRegistered", "{'id':1,'email':'ada@example.com','password_hash':'h'}");
    uint64_t bad = ev(&f, "account-2", "AccountRegistered", "{'id':2,'email':'ada@example.com','password_hash':'h'}");
    expect_fault(&f, "saas", bad, "AccountRegistered", "UNIQUE constraint failed: users.email");
    expect_table(&f, "saas", "SELECT id, email FROM users", "[{'id':1,'email':'ada@example.com'}]");
    fx_close(&f);
}

int main(void) {
    fx f;
    fx_open(&f, "saas");
    accounts(&f);
    simulation_jobs(&f);
    model_routing(&f);
    error_events(&f);
    fx_close(&f);
    faults();
    TEST_PASS();
}
