"""The model-download job server's JobDatabase on evlog: the migration path.

The seed service (an inference server's /pull endpoint) keeps its jobs in
SQLite through ``JobDatabase`` (seeds: inference-server-jobs-schema.md).  This
class keeps the same five methods and return values, so the service changes
one import; underneath, every change is an event appended to ``job-<id>``
(docs/events.md, "jobs") and every read is a query on the built-in ``jobs``
projection, whose table is the seed's table column for column.

What the service gains: the history of each job (``evlog read job-<id>``),
live feeds of job changes, a table that is rebuilt rather than migrated.
Reads wait for the projection to apply this object's last write
(``min_position``), so a ``get_job`` after ``update_job`` sees the update.
"""
import datetime
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
from evlog_client import NO_STREAM, EXISTS, Client, Conflict  # noqa: E402

_BOOLS = ("init", "preferred_quantized")
# update_job() keys each lifecycle event carries (docs/events.md, jobs); the
# status an update names picks the event, its time becomes the event's `at`.
_BY_STATUS = {
    "running": ("JobStarted", "started_at", ("total_bytes", "size_bytes")),
    "succeeded": ("JobSucceeded", "finished_at", ("local_path", "size_bytes", "downloaded_bytes",
                                                  "total_bytes", "progress", "preferred_quantized")),
    "failed": ("JobFailed", "finished_at", ("error", "traceback")),
}
_PROGRESS = ("downloaded_bytes", "total_bytes", "size_bytes", "progress")


class JobDatabase:
    """Pull jobs stored as events in evlog; the seed's interface."""

    def __init__(self, url="http://127.0.0.1:7070", token=None, actor="job-server"):
        self.ev = Client(url, token=token)
        self.meta = {"actor": actor}
        self.seen = 0  # the position of this object's last write

    def _append(self, job_id, events, expected):
        ack = self.ev.append("job-" + job_id, events, expected_revision=expected, meta=self.meta)
        self.seen = max(self.seen, ack.position)

    def _rows(self, sql, params=None):
        rows = self.ev.query("jobs", sql, params, min_position=self.seen or None).dicts()
        for r in rows:
            for k in _BOOLS:
                if r.get(k) is not None:
                    r[k] = bool(r[k])
        return rows

    def create_job(self, job):
        """A new queued job (``id``, ``model``, ``quantize``, ``init``,
        ``created_at``...).  A second job with the same id raises Conflict."""
        data = {k: job.get(k) for k in ("id", "model", "quantize", "init", "preferred_quantized")}
        if job.get("created_at"):
            data["at"] = job["created_at"]
        self._append(job["id"], {"type": "JobQueued", "data": data}, NO_STREAM)

    def get_job(self, job_id):
        """The job's row as a dict, or None."""
        rows = self._rows("SELECT * FROM jobs WHERE id = :id", {"id": job_id})
        return rows[0] if rows else None

    def update_job(self, job_id, updates):
        """Apply ``updates`` as the lifecycle events they describe: a
        ``status`` of running / succeeded / failed is JobStarted /
        JobSucceeded / JobFailed, byte counts without a status are
        JobProgressed.  True if the job exists, False if not."""
        updates = dict(updates)
        status = updates.pop("status", None)
        events = []
        if status is not None:
            if status not in _BY_STATUS:
                raise ValueError("update_job: no event moves a job to status %r" % status)
            etype, time_key, keys = _BY_STATUS[status]
            data = {k: updates.pop(k) for k in keys if k in updates}
            if time_key in updates:
                data["at"] = updates.pop(time_key)
            events.append({"type": etype, "data": dict(data, id=job_id)})
        prog = {k: updates.pop(k) for k in _PROGRESS if k in updates}
        if prog:  # bytes count while running: after a start, before an end
            ev = {"type": "JobProgressed", "data": dict(prog, id=job_id)}
            events.insert(len(events) if status == "running" else 0, ev)
        if updates:
            raise ValueError("update_job: no event carries %s (docs/events.md, jobs)" % sorted(updates))
        if not events:
            return self.get_job(job_id) is not None
        try:
            self._append(job_id, events, EXISTS)
        except Conflict:
            return False  # no such job: the stream does not exist
        return True

    def get_all_jobs(self):
        """Every job, newest first."""
        return self._rows("SELECT * FROM jobs ORDER BY created_at DESC, id")

    def delete_old_jobs(self, days=30):
        """Purge jobs created more than ``days`` ago; returns how many.  The
        cut-off is resolved now and stored in the event, so a replay deletes
        exactly these rows."""
        now = datetime.datetime.now(datetime.timezone.utc)
        before = (now - datetime.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        old = "SELECT count(*) AS n FROM jobs WHERE julianday(created_at) < julianday(:before)"
        n = self._rows(old, {"before": before})[0]["n"]
        ack = self.ev.append("retention-jobs", {"type": "JobsPurged", "data": {"before": before, "days": days}},
                             meta=self.meta)
        self.seen = max(self.seen, ack.position)
        return n
