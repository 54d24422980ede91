-- saas: the SaaS simulation platform's core tables.
--
-- Seed: ../shared/seeds/saas-simulation-jobs-schema.txt (PostgreSQL, SQLAlchemy 2.0
-- models in saas/auth/models.py and saas/jobs/models.py).  Columns are the seed's,
-- in its order.  PostgreSQL types map to SQLite the way the KARR seed maps its own
-- two backends:
--   int PK autoincrement -> INTEGER PRIMARY KEY AUTOINCREMENT
--   int -> INTEGER;  varchar(n) -> VARCHAR(n) (TEXT affinity; n kept as documentation)
--   text -> TEXT;  bool -> INTEGER 0/1;  float -> REAL
--   timestamptz -> TEXT, ISO-8601 UTC with Z
--   JSON -> TEXT holding JSON (json_extract / ->> work on it)
--   enum JobStatus -> TEXT with a CHECK listing the enum's values
-- Columns the seed does not mark Nullable are NOT NULL; "Unique, indexed" is a
-- unique index named as SQLAlchemy names it (ix_<table>_<column>).
-- The "defaults to now" defaults are kept for fidelity, but every handler writes
-- its timestamps from the event, so a replay never depends on the clock.
--
-- Dead columns: credits_charged (always 0) and the REFUNDED status were kept
-- upstream only to avoid PostgreSQL schema surgery.  They are here so the table is
-- faithful; no event writes them.  In evlog removing them is an edit of this file
-- (the projection is then rebuilt from the log), not a migration.
--
-- Secrets never enter the log: the event carries SHA-256 hex digests of the email
-- verification token, the password-reset token and the share token, and those
-- digests fill verification_token, reset_token and share_token.
--
-- Streams and events:
--   account-<id>           AccountRegistered, AccountEmailVerified,
--                          AccountPasswordResetRequested, AccountPasswordReset
--   simjob-<id>            SimulationJobDrafted, SimulationJobSubmitted,
--                          SimulationJobSeedEnriched, SimulationJobProvisioningStarted,
--                          SimulationJobStarted, SimulationJobHeartbeatReceived,
--                          SimulationJobResumed, SimulationJobReportingStarted,
--                          SimulationJobArtifactsStored, SimulationJobCompleted,
--                          SimulationJobFailed, SimulationJobShared
--   modelrouting-<tier>    ModelRoutingConfigured, ModelRoutingRemoved
--   saaserrors-<source>    ErrorCaptured
-- JobStatus: DRAFT -> PENDING -> PROVISIONING -> RUNNING -> REPORTING -> COMPLETED;
--            any unfinished state -> FAILED;  REFUNDED is never reached.
--
-- Every event may carry `at` (ISO-8601 UTC text); without it the commit time is used.
-- @projection saas
-- History (docs/audit.md): a simulation job's states; who changed a
-- tier's model routing (kept by tier, its key for users).  Not a job's
-- heartbeats: each SimulationJobHeartbeatReceived moves last_heartbeat and the
-- live_status snapshot (pipeline_stage, which changes once per stage, is kept).
-- @history simulation_jobs EXCEPT last_heartbeat, live_status
-- @history model_routing sim_tier

CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    email_verified INTEGER NOT NULL DEFAULT 0,
    verification_token VARCHAR(255),
    reset_token VARCHAR(255),
    reset_token_expires TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_users_email ON users (email);

CREATE TABLE IF NOT EXISTS simulation_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id VARCHAR(255) NOT NULL,
    seed_text TEXT NOT NULL,
    goal TEXT,
    tier VARCHAR(20),
    credits_charged INTEGER NOT NULL DEFAULT 0,          -- dead: always 0
    status TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('DRAFT', 'PENDING', 'PROVISIONING', 'RUNNING', 'REPORTING',
                          'COMPLETED', 'FAILED', 'REFUNDED')),   -- REFUNDED: dead
    pipeline_stage INTEGER,
    result_report TEXT,
    result_chat_log TEXT,                                -- JSON
    result_graph TEXT,                                   -- JSON
    result_structured TEXT,                              -- JSON
    error_message TEXT,
    gpu_provider VARCHAR(50),
    gpu_cost_usd REAL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    completed_at TEXT,
    pod_id VARCHAR(255),
    celery_task_id VARCHAR(255),
    workflow_id VARCHAR(255),
    workflow_run_id VARCHAR(255),
    retry_count INTEGER NOT NULL DEFAULT 0,
    retry_of INTEGER,
    provision_seconds INTEGER,
    pipeline_seconds INTEGER,
    key_insight VARCHAR(200),
    share_token VARCHAR(64),
    last_heartbeat TEXT,
    enrich_web INTEGER NOT NULL DEFAULT 1,
    enriched_seed TEXT,
    enrichment_citations TEXT,
    forecast_days INTEGER,
    sim_data_available INTEGER NOT NULL DEFAULT 0,
    live_status TEXT,                                    -- JSON
    resume_task_id VARCHAR(255),
    markets_config TEXT                                  -- JSON
);
CREATE INDEX IF NOT EXISTS ix_simulation_jobs_user_id ON simulation_jobs (user_id);
CREATE INDEX IF NOT EXISTS ix_simulation_jobs_pod_id ON simulation_jobs (pod_id);
CREATE INDEX IF NOT EXISTS ix_simulation_jobs_workflow_id ON simulation_jobs (workflow_id);
CREATE UNIQUE INDEX IF NOT EXISTS ix_simulation_jobs_share_token ON simulation_jobs (share_token);

CREATE TABLE IF NOT EXISTS model_routing (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sim_tier VARCHAR(20) NOT NULL UNIQUE,
    model_id VARCHAR(255) NOT NULL,
    gpu_type VARCHAR(50) NOT NULL,
    max_rounds INTEGER NOT NULL DEFAULT 200,
    vllm_args TEXT,
    target_agents INTEGER NOT NULL DEFAULT 5
);

CREATE TABLE IF NOT EXISTS error_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    level VARCHAR(20) NOT NULL DEFAULT 'ERROR',
    source VARCHAR(20) NOT NULL,
    message TEXT NOT NULL,
    traceback TEXT,
    user_id VARCHAR(255),
    job_id INTEGER,
    request_path VARCHAR(500)
);

-- @on AccountRegistered
INSERT INTO users (id, email, password_hash, created_at, email_verified, verification_token)
VALUES (:id, :email, :password_hash, COALESCE(:at, @time), COALESCE(:email_verified, 0),
        :verification_token_hash);

-- @on AccountEmailVerified
UPDATE users SET email_verified = 1, verification_token = NULL WHERE id = :id;

-- @on AccountPasswordResetRequested
UPDATE users
   SET reset_token = :reset_token_hash,
       reset_token_expires = :reset_token_expires
 WHERE id = :id;

-- @on AccountPasswordReset
UPDATE users
   SET password_hash = :password_hash,
       reset_token = NULL,
       reset_token_expires = NULL
 WHERE id = :id;

-- @on SimulationJobDrafted
INSERT INTO simulation_jobs (id, user_id, seed_text, goal, tier, status, created_at,
                             enrich_web, forecast_days, markets_config)
VALUES (:id, :user_id, :seed_text, :goal, :tier, 'DRAFT', COALESCE(:at, @time),
        COALESCE(:enrich_web, 1), :forecast_days, :markets_config);

-- @on SimulationJobSubmitted
-- Either a new job or a draft being submitted (with its final specification,
-- retry_of and retry_count included; markets_config kept when absent); a retry
-- names the job it retries (retry_of) and its retry_count.  A job past DRAFT
-- is left as it is.
INSERT INTO simulation_jobs (id, user_id, seed_text, goal, tier, status, created_at,
                             enrich_web, forecast_days, markets_config, retry_count, retry_of)
VALUES (:id, :user_id, :seed_text, :goal, :tier, 'PENDING', COALESCE(:at, @time),
        COALESCE(:enrich_web, 1), :forecast_days, :markets_config, COALESCE(:retry_count, 0),
        :retry_of)
ON CONFLICT (id) DO UPDATE SET
    user_id = excluded.user_id,
    seed_text = excluded.seed_text,
    goal = excluded.goal,
    tier = excluded.tier,
    status = 'PENDING',
    enrich_web = excluded.enrich_web,
    forecast_days = excluded.forecast_days,
    markets_config = COALESCE(excluded.markets_config, simulation_jobs.markets_config),
    retry_count = excluded.retry_count,
    retry_of = excluded.retry_of
 WHERE simulation_jobs.status = 'DRAFT';

-- @on SimulationJobSeedEnriched
-- enrichment_citations is a list in the event; it binds as JSON text.
UPDATE simulation_jobs
   SET enriched_seed = :enriched_seed,
       enrichment_citations = :enrichment_citations
 WHERE id = :id;

-- @on SimulationJobProvisioningStarted
UPDATE simulation_jobs
   SET status = 'PROVISIONING',
       gpu_provider = :gpu_provider,
       workflow_id = COALESCE(:workflow_id, workflow_id),
       workflow_run_id = COALESCE(:workflow_run_id, workflow_run_id),
       celery_task_id = COALESCE(:celery_task_id, celery_task_id),
       pod_id = COALESCE(:pod_id, pod_id)
 WHERE id = :id AND status = 'PENDING';

-- @on SimulationJobStarted
-- The GPU pod is up and the pipeline runs.
UPDATE simulation_jobs
   SET status = 'RUNNING',
       pod_id = COALESCE(:pod_id, pod_id),
       provision_seconds = :provision_seconds,
       pipeline_stage = COALESCE(:pipeline_stage, 0),
       last_heartbeat = COALESCE(:at, @time)
 WHERE id = :id AND status = 'PROVISIONING';

-- @on SimulationJobHeartbeatReceived
-- live_status is the pipeline's progress snapshot (a map, stored as JSON text).
UPDATE simulation_jobs
   SET last_heartbeat = COALESCE(:at, @time),
       pipeline_stage = COALESCE(:pipeline_stage, pipeline_stage),
       live_status = COALESCE(:live_status, live_status)
 WHERE id = :id AND status IN ('RUNNING', 'REPORTING');

-- @on SimulationJobResumed
-- The stale-job detector restarted the pipeline from its last checkpoint.
UPDATE simulation_jobs
   SET status = 'RUNNING',
       resume_task_id = :resume_task_id,
       pod_id = COALESCE(:pod_id, pod_id),
       last_heartbeat = COALESCE(:at, @time)
 WHERE id = :id AND status IN ('RUNNING', 'REPORTING');

-- @on SimulationJobReportingStarted
UPDATE simulation_jobs
   SET status = 'REPORTING',
       pipeline_seconds = :pipeline_seconds,
       pipeline_stage = COALESCE(:pipeline_stage, pipeline_stage)
 WHERE id = :id AND status = 'RUNNING';

-- @on SimulationJobArtifactsStored
-- The simulation's artifacts landed in object storage.
UPDATE simulation_jobs SET sim_data_available = 1 WHERE id = :id;

-- @on SimulationJobCompleted
-- result_chat_log (a list), result_graph and result_structured (maps) bind as JSON text.
UPDATE simulation_jobs
   SET status = 'COMPLETED',
       result_report = :result_report,
       result_chat_log = :result_chat_log,
       result_graph = :result_graph,
       result_structured = :result_structured,
       key_insight = :key_insight,
       gpu_cost_usd = COALESCE(:gpu_cost_usd, gpu_cost_usd),
       markets_config = COALESCE(:markets_config, markets_config),
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status = 'REPORTING';

-- @on SimulationJobFailed
-- completed_at records when the job reached its terminal state, failed or not.
UPDATE simulation_jobs
   SET status = 'FAILED',
       error_message = :error_message,
       gpu_cost_usd = COALESCE(:gpu_cost_usd, gpu_cost_usd),
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status IN ('DRAFT', 'PENDING', 'PROVISIONING', 'RUNNING', 'REPORTING');

-- @on SimulationJobShared
-- share_token_hash: SHA-256 hex of the public link's token (64 characters).
UPDATE simulation_jobs SET share_token = :share_token_hash WHERE id = :id;

-- @on ModelRoutingConfigured
-- The tier's row is created or replaced; its id stays the one first assigned.
INSERT INTO model_routing (sim_tier, model_id, gpu_type, max_rounds, vllm_args, target_agents)
VALUES (:sim_tier, :model_id, :gpu_type, COALESCE(:max_rounds, 200), :vllm_args,
        COALESCE(:target_agents, 5))
ON CONFLICT (sim_tier) DO UPDATE SET
    model_id = excluded.model_id,
    gpu_type = excluded.gpu_type,
    max_rounds = excluded.max_rounds,
    vllm_args = excluded.vllm_args,
    target_agents = excluded.target_agents;

-- @on ModelRoutingRemoved
DELETE FROM model_routing WHERE sim_tier = :sim_tier;

-- @on ErrorCaptured
INSERT INTO error_events (timestamp, level, source, message, traceback, user_id, job_id,
                          request_path)
VALUES (COALESCE(:at, @time), COALESCE(:level, 'ERROR'), :source, :message, :traceback,
        :user_id, :job_id, :request_path);
