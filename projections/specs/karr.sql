-- karr: the KITT benchmark harness's KARR database (results, agents, campaigns, events).
--
-- Seed: ../shared/seeds/kitt-karr-db-schema.md (schema version 2, SQLite backend).
-- Tables, columns, types, constraints and the ten indexes are the seed's; the seed
-- gives no NOT NULL or DEFAULT, so there are none.  schema_version is left out:
-- there is no migration state to track when the tables are rebuilt from the log
-- whenever this file changes.
--
-- Streams and events:
--   kittagent-<uuid>      AgentRegistered, AgentHeartbeatReceived, AgentStatusChanged,
--                         AgentUpdated
--   kittrun-<uuid>        BenchmarkRunStarted, BenchmarkRecorded, BenchmarkRunFinished,
--                         BenchmarkRunDeleted
--   kittcampaign-<uuid>   CampaignCreated, CampaignStarted, CampaignProgressed,
--                         CampaignCompleted, CampaignFailed
--   kittquicktest-<uuid>  QuickTestQueued, QuickTestStarted, QuickTestCompleted,
--                         QuickTestFailed
-- The harness's own `events` table is the log itself: one catch-all handler copies
-- every event of these four categories (id = the log position).
--
-- Agents authenticate with a token: the event carries its SHA-256 digest
-- (token_hash), which fills agents.token; the secret never enters the log.
--
-- Deletions remove dependent rows explicitly instead of relying on ON DELETE
-- CASCADE, which SQLite only applies when foreign keys are enabled.
--
-- Every event may carry `at` (ISO-8601 UTC text); without it the commit time is used.
-- @projection karr

CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    model TEXT,
    engine TEXT,
    suite_name TEXT,
    timestamp TEXT,
    passed INTEGER,
    total_benchmarks INTEGER,
    passed_count INTEGER,
    failed_count INTEGER,
    total_time_seconds REAL,
    kitt_version TEXT,
    raw_json TEXT,
    created_at TEXT
);

CREATE TABLE IF NOT EXISTS benchmarks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT REFERENCES runs (id) ON DELETE CASCADE,
    test_name TEXT,
    test_version TEXT,
    run_number INTEGER,
    passed INTEGER,
    timestamp TEXT,
    created_at TEXT
);

CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    benchmark_id INTEGER REFERENCES benchmarks (id) ON DELETE CASCADE,
    metric_name TEXT,
    metric_value REAL
);

CREATE TABLE IF NOT EXISTS hardware (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT REFERENCES runs (id) ON DELETE CASCADE,
    gpu_model TEXT,
    gpu_vram_gb INTEGER,
    gpu_count INTEGER,
    cpu_model TEXT,
    cpu_cores INTEGER,
    ram_gb INTEGER,
    environment_type TEXT,
    fingerprint TEXT
);

CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    hostname TEXT,
    port INTEGER,
    token TEXT,
    status TEXT,
    gpu_info TEXT,
    gpu_count INTEGER,
    cpu_info TEXT,
    ram_gb INTEGER,
    environment_type TEXT,
    fingerprint TEXT,
    kitt_version TEXT,
    last_heartbeat TEXT,
    registered_at TEXT,
    notes TEXT,
    tags TEXT
);

CREATE TABLE IF NOT EXISTS web_campaigns (
    id TEXT PRIMARY KEY,
    name TEXT,
    description TEXT,
    config_json TEXT,
    status TEXT,
    agent_id TEXT REFERENCES agents (id),
    created_at TEXT,
    started_at TEXT,
    completed_at TEXT,
    total_runs INTEGER,
    succeeded INTEGER,
    failed INTEGER,
    skipped INTEGER,
    error TEXT
);

CREATE TABLE IF NOT EXISTS quick_tests (
    id TEXT PRIMARY KEY,
    agent_id TEXT REFERENCES agents (id),
    model_path TEXT,
    engine_name TEXT,
    benchmark_name TEXT,
    suite_name TEXT,
    status TEXT,
    created_at TEXT,
    started_at TEXT,
    completed_at TEXT,
    result_id TEXT REFERENCES runs (id),
    error TEXT
);

CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT,
    source_id TEXT,
    data TEXT,
    created_at TEXT
);

CREATE INDEX IF NOT EXISTS idx_runs_model ON runs (model);
CREATE INDEX IF NOT EXISTS idx_runs_engine ON runs (engine);
CREATE INDEX IF NOT EXISTS idx_runs_suite_name ON runs (suite_name);
CREATE INDEX IF NOT EXISTS idx_runs_timestamp ON runs (timestamp);
CREATE INDEX IF NOT EXISTS idx_benchmarks_run_id ON benchmarks (run_id);
CREATE INDEX IF NOT EXISTS idx_metrics_benchmark_id ON metrics (benchmark_id);
CREATE INDEX IF NOT EXISTS idx_hardware_run_id ON hardware (run_id);
CREATE INDEX IF NOT EXISTS idx_events_event_type ON events (event_type);
CREATE INDEX IF NOT EXISTS idx_events_source_id ON events (source_id);
CREATE INDEX IF NOT EXISTS idx_events_created_at ON events (created_at);

-- @on *
-- The harness's event table, reproduced from the log: every event of the harness's
-- categories, whatever its type (new types need no edit here).  id is the log
-- position, event_type the type, source_id the entity id (the stream name after
-- its category), data the payload as JSON and created_at the commit time.
INSERT INTO events (id, event_type, source_id, data, created_at)
SELECT @position, @type, substr(@stream, length(@category) + 2), @data, @time
 WHERE @category IN ('kittagent', 'kittrun', 'kittcampaign', 'kittquicktest');

-- @on AgentRegistered
-- An agent registers at every start: an upsert that refreshes what it reports,
-- keeps registered_at, and keeps notes and tags unless the event sets them.
INSERT INTO agents (id, name, hostname, port, token, status, gpu_info, gpu_count, cpu_info,
                    ram_gb, environment_type, fingerprint, kitt_version, last_heartbeat,
                    registered_at, notes, tags)
VALUES (:id, :name, :hostname, :port, :token_hash, 'online', :gpu_info, :gpu_count, :cpu_info,
        :ram_gb, :environment_type, :fingerprint, :kitt_version, COALESCE(:at, @time),
        COALESCE(:at, @time), :notes, :tags)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name,
    hostname = excluded.hostname,
    port = excluded.port,
    token = excluded.token,
    status = 'online',
    gpu_info = excluded.gpu_info,
    gpu_count = excluded.gpu_count,
    cpu_info = excluded.cpu_info,
    ram_gb = excluded.ram_gb,
    environment_type = excluded.environment_type,
    fingerprint = excluded.fingerprint,
    kitt_version = excluded.kitt_version,
    last_heartbeat = excluded.last_heartbeat,
    notes = COALESCE(excluded.notes, agents.notes),
    tags = COALESCE(excluded.tags, agents.tags);

-- @on AgentHeartbeatReceived
-- A heartbeat from an agent marked offline brings it back online.
UPDATE agents
   SET last_heartbeat = COALESCE(:at, @time),
       status = COALESCE(:status, CASE status WHEN 'offline' THEN 'online' ELSE status END)
 WHERE id = :id;

-- @on AgentStatusChanged
UPDATE agents SET status = :status WHERE id = :id;

-- @on AgentUpdated
-- tags: comma-separated, as the seed stores them.
UPDATE agents
   SET notes = COALESCE(:notes, notes),
       tags = COALESCE(:tags, tags)
 WHERE id = :id;

-- @on BenchmarkRunStarted
-- A `kitt run` begins: the run row with zero counts and its hardware snapshot.
INSERT INTO runs (id, model, engine, suite_name, timestamp, passed, total_benchmarks,
                  passed_count, failed_count, total_time_seconds, kitt_version, raw_json,
                  created_at)
VALUES (:id, :model, :engine, :suite_name, COALESCE(:timestamp, :at, @time), 0, 0, 0, 0, NULL,
        :kitt_version, NULL, COALESCE(:at, @time));
INSERT INTO hardware (run_id, gpu_model, gpu_vram_gb, gpu_count, cpu_model, cpu_cores, ram_gb,
                      environment_type, fingerprint)
SELECT :id, json_extract(:hardware, '$.gpu_model'), json_extract(:hardware, '$.gpu_vram_gb'),
       json_extract(:hardware, '$.gpu_count'), json_extract(:hardware, '$.cpu_model'),
       json_extract(:hardware, '$.cpu_cores'), json_extract(:hardware, '$.ram_gb'),
       json_extract(:hardware, '$.environment_type'), json_extract(:hardware, '$.fingerprint')
 WHERE :hardware IS NOT NULL;

-- @on BenchmarkRecorded
-- One benchmark of a run with its metrics ({"tokens_per_second": 41.7, ...}).  The
-- metrics reference the benchmark just inserted: the newest benchmark of the run
-- (AUTOINCREMENT ids only grow).
INSERT INTO benchmarks (run_id, test_name, test_version, run_number, passed, timestamp,
                        created_at)
VALUES (:run_id, :test_name, :test_version, :run_number, :passed,
        COALESCE(:timestamp, :at, @time), COALESCE(:at, @time));
INSERT INTO metrics (benchmark_id, metric_name, metric_value)
SELECT (SELECT MAX(id) FROM benchmarks WHERE run_id = :run_id), m.key, m.value
  FROM json_each(:metrics) AS m;
UPDATE runs
   SET total_benchmarks = COALESCE(total_benchmarks, 0) + 1,
       passed_count = COALESCE(passed_count, 0) + (COALESCE(:passed, 0) != 0),
       failed_count = COALESCE(failed_count, 0) + (COALESCE(:passed, 0) = 0)
 WHERE id = :run_id;

-- @on BenchmarkRunFinished
-- raw_json is the harness's full output when the event carries it (`raw`); else
-- the same document is assembled from the rows, so it is never missing.
UPDATE runs
   SET passed = COALESCE(:passed, passed),
       total_time_seconds = :total_time_seconds,
       total_benchmarks = COALESCE(:total_benchmarks, total_benchmarks),
       passed_count = COALESCE(:passed_count, passed_count),
       failed_count = COALESCE(:failed_count, failed_count),
       raw_json = COALESCE(:raw, json_object(
           'id', id, 'model', model, 'engine', engine, 'suite_name', suite_name,
           'timestamp', timestamp, 'kitt_version', kitt_version,
           'passed', json(CASE WHEN COALESCE(:passed, passed) THEN 'true' ELSE 'false' END),
           'total_time_seconds', :total_time_seconds,
           'results', (SELECT json_group_array(json_object(
                               'test_name', b.test_name, 'test_version', b.test_version,
                               'run_number', b.run_number,
                               'passed', json(CASE WHEN b.passed THEN 'true' ELSE 'false' END),
                               'metrics', (SELECT json_group_object(m.metric_name, m.metric_value)
                                             FROM metrics AS m WHERE m.benchmark_id = b.id)))
                         FROM benchmarks AS b WHERE b.run_id = runs.id)))
 WHERE id = :id;

-- @on BenchmarkRunDeleted
DELETE FROM metrics WHERE benchmark_id IN (SELECT id FROM benchmarks WHERE run_id = :id);
DELETE FROM benchmarks WHERE run_id = :id;
DELETE FROM hardware WHERE run_id = :id;
UPDATE quick_tests SET result_id = NULL WHERE result_id = :id;
DELETE FROM runs WHERE id = :id;

-- @on CampaignCreated
-- config is the campaign configuration as a map; it binds as JSON text.
INSERT INTO web_campaigns (id, name, description, config_json, status, agent_id, created_at,
                           total_runs, succeeded, failed, skipped)
VALUES (:id, :name, :description, :config, 'pending', :agent_id, COALESCE(:at, @time),
        :total_runs, 0, 0, 0);

-- @on CampaignStarted
UPDATE web_campaigns
   SET status = 'running',
       agent_id = COALESCE(:agent_id, agent_id),
       started_at = COALESCE(:at, @time)
 WHERE id = :id AND status = 'pending';

-- @on CampaignProgressed
-- Absolute tallies, so a repeated or late report cannot double-count.
UPDATE web_campaigns
   SET succeeded = COALESCE(:succeeded, succeeded),
       failed = COALESCE(:failed, failed),
       skipped = COALESCE(:skipped, skipped)
 WHERE id = :id AND status = 'running';

-- @on CampaignCompleted
UPDATE web_campaigns
   SET status = 'completed',
       succeeded = COALESCE(:succeeded, succeeded),
       failed = COALESCE(:failed, failed),
       skipped = COALESCE(:skipped, skipped),
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status = 'running';

-- @on CampaignFailed
UPDATE web_campaigns
   SET status = 'failed',
       error = :error,
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status IN ('pending', 'running');

-- @on QuickTestQueued
INSERT INTO quick_tests (id, agent_id, model_path, engine_name, benchmark_name, suite_name,
                         status, created_at)
VALUES (:id, :agent_id, :model_path, :engine_name, :benchmark_name, :suite_name, 'queued',
        COALESCE(:at, @time));

-- @on QuickTestStarted
UPDATE quick_tests
   SET status = 'running',
       started_at = COALESCE(:at, @time)
 WHERE id = :id AND status = 'queued';

-- @on QuickTestCompleted
-- result_id names the run the test produced (appended before this event).
UPDATE quick_tests
   SET status = 'completed',
       result_id = :result_id,
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status = 'running';

-- @on QuickTestFailed
UPDATE quick_tests
   SET status = 'failed',
       error = :error,
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status IN ('queued', 'running');
