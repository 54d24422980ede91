-- runs: the FUSION simulation GUI's `runs` table (simulation runs and their progress).
--
-- Seed: ../shared/seeds/fusion-runs-db.rst (fusion/api/db/models.py, SQLAlchemy on
-- SQLite).  The columns and types are the seed's schema diagram, as SQLAlchemy
-- creates them: VARCHAR(n), TEXT, INTEGER, DATETIME (ISO-8601 UTC text here), FLOAT,
-- and the index SQLAlchemy makes for `index=True` on status (ix_runs_status).
--
-- Stream:  fusionrun-<id>     (id: the run's 12-character hex string)
-- Events:  FusionRunCreated, FusionRunStarted, FusionRunProgressed, FusionRunCompleted,
--          FusionRunFailed, FusionRunCancelled, FusionRunDeleted
-- Status:  PENDING -> RUNNING -> COMPLETED | FAILED | CANCELLED
--          (PENDING -> FAILED | CANCELLED when the process never starts)
--
-- The progress cache columns were filled by tailing progress.jsonl; here the
-- simulation's progress lines are FusionRunProgressed events.
--
-- Every event may carry `at` (ISO-8601 UTC text); without it the commit time is used.
-- @projection runs

CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR(12) NOT NULL,
    name VARCHAR(255),
    status VARCHAR(20) NOT NULL,
    config_json TEXT NOT NULL,
    template VARCHAR(100) NOT NULL,
    pid INTEGER,
    pgid INTEGER,
    created_at DATETIME NOT NULL,
    started_at DATETIME,
    completed_at DATETIME,
    error_message TEXT,
    current_erlang FLOAT,
    total_erlangs INTEGER,
    current_iteration INTEGER,
    total_iterations INTEGER,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_runs_status ON runs (status);

-- @on FusionRunCreated
-- config is the INI configuration as a map of sections; it binds as JSON text.
INSERT INTO runs (id, name, status, config_json, template, created_at)
VALUES (:id, :name, 'PENDING', :config, :template, COALESCE(:at, @time));

-- @on FusionRunStarted
UPDATE runs
   SET status = 'RUNNING',
       pid = :pid,
       pgid = :pgid,
       started_at = COALESCE(:at, @time),
       total_erlangs = COALESCE(:total_erlangs, total_erlangs),
       total_iterations = COALESCE(:total_iterations, total_iterations)
 WHERE id = :id AND status = 'PENDING';

-- @on FusionRunProgressed
UPDATE runs
   SET current_erlang = COALESCE(:current_erlang, current_erlang),
       total_erlangs = COALESCE(:total_erlangs, total_erlangs),
       current_iteration = COALESCE(:current_iteration, current_iteration),
       total_iterations = COALESCE(:total_iterations, total_iterations)
 WHERE id = :id AND status = 'RUNNING';

-- @on FusionRunCompleted
UPDATE runs
   SET status = 'COMPLETED',
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status = 'RUNNING';

-- @on FusionRunFailed
UPDATE runs
   SET status = 'FAILED',
       error_message = :error_message,
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status IN ('PENDING', 'RUNNING');

-- @on FusionRunCancelled
-- The GUI kills the process group (pgid); the run ends there.
UPDATE runs
   SET status = 'CANCELLED',
       completed_at = COALESCE(:at, @time)
 WHERE id = :id AND status IN ('PENDING', 'RUNNING');

-- @on FusionRunDeleted
DELETE FROM runs WHERE id = :id;
