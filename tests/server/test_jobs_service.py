#!/usr/bin/python3
"""examples/jobs_service.py: the seed's JobDatabase on a real evlogd.  Every
method, and the seed's two example rows reproduced column for column through
create_job/update_job/get_job; the events behind them; delete_old_jobs
counting and purging; a second JobDatabase (another process, say) sees the
same table."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples"))
from evlsrv import Server, fail, run  # noqa: E402
import jobs_service  # noqa: E402
import evlog_client  # noqa: E402  (put on the path by jobs_service)

S = None
OK_ID = "550e8400-e29b-41d4-a716-446655440000"
BAD_ID = "650e8400-e29b-41d4-a716-446655440001"
PATH = "E:\\private-ai-server\\models\\hub\\models--gpt2\\snapshots\\abc123"
# the seed's example rows (inference-server-jobs-schema.md)
OK_ROW = {"id": OK_ID, "model": "gpt2", "quantize": "auto", "init": True, "status": "succeeded",
          "created_at": "2025-12-18T10:30:00Z", "started_at": "2025-12-18T10:30:01Z",
          "finished_at": "2025-12-18T10:30:15Z", "error": None, "traceback": None, "local_path": PATH,
          "size_bytes": 548118077, "downloaded_bytes": 548118077, "progress": 1.0, "total_bytes": 548118077,
          "preferred_quantized": False}
BAD_ROW = {"id": BAD_ID, "model": "invalid/model-name", "quantize": "auto", "init": False, "status": "failed",
           "created_at": "2025-12-18T11:00:00Z", "started_at": "2025-12-18T11:00:02Z",
           "finished_at": "2025-12-18T11:00:05Z",
           "error": "Repository Not Found for url: https://huggingface.co/invalid/model-name",
           "traceback": "Traceback (most recent call last):\n  File ...", "local_path": None, "size_bytes": None,
           "downloaded_bytes": 0, "progress": None, "total_bytes": None, "preferred_quantized": None}


def db():
    return jobs_service.JobDatabase("http://127.0.0.1:%d" % S.port)


def same(got, want, what):
    if got != want:
        diff = {k: (got.get(k) if got else None, want.get(k)) for k in want
                if not got or got.get(k) != want.get(k)}
        fail("%s: (got, want) %r" % (what, diff))


def test_seed_rows():
    d = db()
    d.create_job({"id": OK_ID, "model": "gpt2", "quantize": "auto", "init": True, "status": "queued",
                  "created_at": "2025-12-18T10:30:00Z"})
    j = d.get_job(OK_ID)
    if j["status"] != "queued" or j["downloaded_bytes"] != 0 or j["started_at"] is not None:
        fail("queued row %r" % j)
    if not d.update_job(OK_ID, {"status": "running", "started_at": "2025-12-18T10:30:01Z",
                                "total_bytes": 548118077, "size_bytes": 548118077}):
        fail("update to running")
    d.update_job(OK_ID, {"downloaded_bytes": 274059038})
    j = d.get_job(OK_ID)
    if j["status"] != "running" or abs(j["progress"] - 0.5) > 1e-6 or j["downloaded_bytes"] != 274059038:
        fail("progress read back %r" % j)
    d.update_job(OK_ID, {"status": "succeeded", "finished_at": "2025-12-18T10:30:15Z", "local_path": PATH,
                         "downloaded_bytes": 548118077, "preferred_quantized": False})
    same(d.get_job(OK_ID), OK_ROW, "the seed's successful pull")

    d.create_job({"id": BAD_ID, "model": "invalid/model-name", "quantize": "auto", "init": False,
                  "status": "queued", "created_at": "2025-12-18T11:00:00Z"})
    d.update_job(BAD_ID, {"status": "running", "started_at": "2025-12-18T11:00:02Z"})
    d.update_job(BAD_ID, {"status": "failed", "finished_at": "2025-12-18T11:00:05Z",
                          "error": BAD_ROW["error"], "traceback": BAD_ROW["traceback"]})
    same(d.get_job(BAD_ID), BAD_ROW, "the seed's failed pull")

    types = [e["type"] for e in d.ev.read("job-" + OK_ID)]
    if types != ["JobQueued", "JobStarted", "JobProgressed", "JobSucceeded"]:
        fail("events behind the row %r" % types)
    if any(e["meta"].get("actor") != "job-server" for e in d.ev.read("job-" + BAD_ID)):
        fail("actor missing")


def test_other_methods():
    d = db()
    if d.get_job("nope") is not None:
        fail("a missing job")
    if d.update_job("nope", {"status": "running"}):
        fail("update of a missing job said True")
    if d.ev.read("job-nope"):
        fail("update of a missing job created its stream")
    try:
        d.create_job({"id": OK_ID, "model": "again"})
        fail("a second job with the same id")
    except evlog_client.Conflict:
        pass
    try:
        d.update_job(OK_ID, {"model": "changed"})
        fail("a change no event describes")
    except ValueError:
        pass
    # a job started with bytes already counted: JobStarted, then JobProgressed
    d.create_job({"id": "j3", "model": "Qwen/Qwen3-0.6B", "quantize": "q4", "init": None})
    d.update_job("j3", {"status": "running", "total_bytes": 1000, "downloaded_bytes": 250})
    j = d.get_job("j3")
    if (j["status"], j["downloaded_bytes"], j["progress"], j["init"]) != ("running", 250, 0.25, None):
        fail("start with progress %r" % j)
    # a second JobDatabase (another worker process) reads the same table
    other = db()
    all_jobs = other.get_all_jobs()
    if [j["id"] for j in all_jobs] != ["j3", BAD_ID, OK_ID]:
        fail("get_all_jobs, newest first: %r" % [j["id"] for j in all_jobs])
    same(all_jobs[2], OK_ROW, "get_all_jobs row")
    # the seed rows are from 2025-12-18: older than 30 days; j3 was created now
    n = d.delete_old_jobs(days=30)
    if n != 2:
        fail("delete_old_jobs counted %d, want 2" % n)
    if [j["id"] for j in d.get_all_jobs()] != ["j3"] or d.get_job(OK_ID) is not None:
        fail("after the purge %r" % d.get_all_jobs())
    if d.delete_old_jobs(days=30) != 0 or len(d.get_all_jobs()) != 1:
        fail("a second purge")
    purges = d.ev.read("retention-jobs")
    if len(purges) != 2 or purges[0]["type"] != "JobsPurged" or purges[0]["data"]["days"] != 30:
        fail("purge events %r" % purges)
    # the history outlives the purge
    if len(d.ev.read("job-" + OK_ID)) != 4:
        fail("the purged job's events")


def main():
    global S
    S = Server()
    try:
        run([test_seed_rows, test_other_methods])
    finally:
        S.close()


if __name__ == "__main__":
    main()
