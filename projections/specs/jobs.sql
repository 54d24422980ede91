-- jobs: the model-download job server's `jobs` table.
--
-- Seed: ../shared/seeds/inference-server-jobs-schema.md (JobDatabase, jobs.db, schema v1.0).
-- The table below is the seed's CREATE TABLE, column for column.
--
-- Streams:  job-<uuid>        one per pull job (the uuid is jobs.id)
--           retention-jobs    the retention sweeps (delete_old_jobs)
-- Events:   JobQueued, JobStarted, JobProgressed, JobSucceeded, JobFailed, JobsPurged
-- Lifecycle: queued -> running -> succeeded | failed   (a queued job may also fail)
--
-- Every event may carry `at` (ISO-8601 UTC text): when it happened at the source.
-- Without it the commit time of the event is used.  Importers of an old jobs.db
-- set it so the rows keep their original timestamps.  See docs/events.md.
-- @projection jobs
-- History (docs/audit.md): what a job's row looked like before it failed.
-- Not the download's progress: every JobProgressed tick moves progress and
-- downloaded_bytes, nobody audits them, and they were most of the history's
-- rows and of its cost (docs/projections.md, "Field-level history").
-- @history jobs EXCEPT progress, downloaded_bytes

CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    quantize TEXT,
    init BOOLEAN,
    status TEXT NOT NULL DEFAULT 'queued',
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    traceback TEXT,
    local_path TEXT,
    size_bytes INTEGER,
    downloaded_bytes INTEGER DEFAULT 0,
    progress REAL,
    total_bytes INTEGER,
    preferred_quantized BOOLEAN
);

-- @on JobQueued
INSERT INTO jobs (id, model, quantize, init, status, created_at, preferred_quantized)
VALUES (:id, :model, :quantize, :init, 'queued', COALESCE(:at, @time), :preferred_quantized);

-- @on JobStarted
-- The sizes are known once the hub metadata is fetched, so a start may carry them.
UPDATE jobs
   SET status = 'running',
       started_at = COALESCE(:at, @time),
       total_bytes = COALESCE(:total_bytes, total_bytes),
       size_bytes = COALESCE(:size_bytes, size_bytes)
 WHERE id = :id AND status = 'queued';

-- @on JobProgressed
-- progress is the sender's figure when it has one, else derived from the bytes.
UPDATE jobs
   SET downloaded_bytes = COALESCE(:downloaded_bytes, downloaded_bytes),
       total_bytes = COALESCE(:total_bytes, total_bytes),
       size_bytes = COALESCE(:size_bytes, size_bytes),
       progress = COALESCE(:progress,
                           CASE WHEN COALESCE(:total_bytes, total_bytes) > 0
                                THEN MIN(1.0, CAST(COALESCE(:downloaded_bytes, downloaded_bytes) AS REAL)
                                              / COALESCE(:total_bytes, total_bytes))
                           END,
                           progress)
 WHERE id = :id AND status = 'running';

-- @on JobSucceeded
UPDATE jobs
   SET status = 'succeeded',
       finished_at = COALESCE(:at, @time),
       local_path = COALESCE(:local_path, local_path),
       size_bytes = COALESCE(:size_bytes, size_bytes),
       total_bytes = COALESCE(:total_bytes, total_bytes),
       downloaded_bytes = COALESCE(:downloaded_bytes, downloaded_bytes),
       progress = COALESCE(:progress, 1.0),
       preferred_quantized = COALESCE(:preferred_quantized, preferred_quantized)
 WHERE id = :id AND status = 'running';

-- @on JobFailed
-- A job fails while running (download error) or before it starts (bad request).
UPDATE jobs
   SET status = 'failed',
       finished_at = COALESCE(:at, @time),
       error = :error,
       traceback = :traceback
 WHERE id = :id AND status IN ('queued', 'running');

-- @on JobsPurged
-- delete_old_jobs(days) as an event: the sender resolves "older than N days"
-- to an absolute `before`, so a replay next year deletes exactly what the sweep
-- deleted then.  julianday() compares "...00Z" and "...00.000Z" correctly.
DELETE FROM jobs WHERE julianday(created_at) < julianday(:before);
