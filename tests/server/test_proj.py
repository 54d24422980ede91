#!/usr/bin/python3
"""evlogd projections over HTTP: status, queries (GET and POST, JSON and
msgpack), read-your-writes with min_position (without blocking the loops),
504/404/400, rebuild, and what /metrics and /readyz say about them."""
import os
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402
from evlsrv import Server, expect, expect_problem, fail, run, wait_for  # noqa: E402

S = None

SPEC_MINE = """-- @projection mine
CREATE TABLE jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, status TEXT NOT NULL, n INTEGER);
-- @on JobQueued
INSERT INTO jobs (id, model, status, n) VALUES (:id, :model, 'queued', :n);
-- @on JobStarted
UPDATE jobs SET status = 'running' WHERE id = :id;
"""
SPEC_FRAGILE = """-- @projection fragile
CREATE TABLE t (a TEXT NOT NULL);
-- @on Boom
INSERT INTO t (a) VALUES (:missing);
"""


def query(name, body, headers=None):
    return S.post("/projections/%s/query" % name, body, headers=headers)


def test_status():
    r = expect(S.get("/projections"), 200, "list").json()
    names = sorted(p["name"] for p in r)
    if names != ["fragile", "mine"]:
        fail("projections %r" % names)
    one = expect(S.get("/projections/mine"), 200, "one").json()
    if one["name"] != "mine" or one["tables"] != {"jobs": 0} or one["state"] not in ("live", "catching_up"):
        fail("status %r" % one)
    for k in ("checkpoint", "head", "lag", "events_applied", "spec_hash", "file", "error"):
        if k not in one:
            fail("status lacks %s: %r" % (k, one))
    expect_problem(S.get("/projections/nope"), 404, "unknown projection")


def test_read_your_writes():
    c = S.conn()
    for i in range(30):
        r = expect(S.request("POST", "/streams/job-%d" % i,
                             {"type": "JobQueued", "data": {"id": "j%d" % i, "model": "m%d" % (i % 3), "n": i}},
                             conn=c), 201, "append")
        pos = r.json()["events"][0]["position"]
        q = expect(S.request("POST", "/projections/mine/query",
                             {"sql": "SELECT n FROM jobs WHERE id = :id", "params": {"id": "j%d" % i},
                              "min_position": pos}, conn=c), 200, "query").json()
        if q["rows"] != [[i]] or q["position"] < pos or q["columns"] != ["n"]:
            fail("read-your-writes at %d: %r" % (pos, q))
    c.close()
    # the GET form, with typed p.NAME parameters
    r = expect(S.get("/projections/mine/query?" + urllib.parse.urlencode(
        {"sql": "SELECT count(*) AS c\nFROM jobs WHERE model = :m AND n >= :k", "p.m": "m1", "p.k": "10",
         "min_position": str(pos)})), 200, "GET query").json()
    if r["rows"] != [[7]] or r["columns"] != ["c"]:
        fail("GET query %r" % r)
    # msgpack in, msgpack out
    body = msgpack.packb({"sql": "SELECT id FROM jobs ORDER BY n LIMIT 2"})
    r = expect(query("mine", body, headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"}),
               200, "msgpack query")
    if msgpack.unpackb(r.body, raw=False)["rows"] != [["j0"], ["j1"]]:
        fail("msgpack query %r" % r.body)
    r = expect(query("mine", {"sql": "SELECT n FROM jobs ORDER BY n", "max_rows": 5}), 200, "max_rows").json()
    if len(r["rows"]) != 5 or r.get("truncated") is not True:
        fail("max_rows %r" % r)


def test_waits_do_not_block_the_loops():
    h = S.get("/events?limit=1").json()["head"]
    results = []

    def waiter():
        results.append(query("mine", {"sql": "SELECT count(*) FROM jobs", "min_position": h + 1,
                                      "timeout_ms": 10000}))
    ts = [threading.Thread(target=waiter) for _ in range(24)]  # more than the pool's 16 threads
    for t in ts:
        t.start()
    time.sleep(0.05)
    for _ in range(10):  # the loops answer while two dozen queries wait
        t0 = time.monotonic()
        expect(S.get("/healthz"), 200, "healthz during waits")
        expect(S.get("/events?limit=1"), 200, "read during waits")
        if time.monotonic() - t0 > 1.0:
            fail("a loop was blocked for %.2fs" % (time.monotonic() - t0))
    if results:
        fail("a query answered before its position existed: %r" % results)
    expect(S.append("job-x", {"type": "JobQueued", "data": {"id": "jx", "model": "m", "n": 99}}), 201, "append")
    for t in ts:
        t.join(15)
    if len(results) != 24 or any(r.status != 200 or r.json()["rows"] != [[31]] for r in results):
        fail("waiting queries: %r" % results[:3])


def test_query_errors():
    h = S.get("/events?limit=1").json()["head"]
    t0 = time.monotonic()
    p = expect_problem(query("mine", {"sql": "SELECT 1", "min_position": h + 1000, "timeout_ms": 200}), 504,
                       "min_position timeout", "timeout")
    if time.monotonic() - t0 > 3 or p["min_position"] != h + 1000:
        fail("504 %r after %.2fs" % (p, time.monotonic() - t0))
    expect_problem(S.get("/projections/mine/query?sql=SELECT%%201&min_position=%d&timeout_ms=100" % (h + 5)), 504,
                   "GET 504")
    cases = [({"sql": "DELETE FROM jobs"}, "read-only"), ({"sql": "SELEC 1"}, "syntax"),
             ({}, "sql"), ({"sql": "SELECT :a", "params": "x"}, "params"),
             ({"sql": "SELECT 1", "timeout_ms": 10 ** 9}, "timeout_ms"),
             ({"sql": "SELECT 1", "min_position": -1}, "min_position"),
             ({"sql": "SELECT * FROM nosuch"}, "no such table")]
    for body, word in cases:
        p = expect_problem(query("mine", body), 400, "query %r" % body)
        if word not in p["detail"]:
            fail("query %r: detail %r lacks %r" % (body, p["detail"], word))
    p = expect_problem(query("mine", b"{nope", headers={"Content-Type": "application/json"}), 400, "bad JSON")
    expect_problem(query("nope", {"sql": "SELECT 1"}), 404, "unknown projection", "not-found")
    expect_problem(S.get("/projections/nope/query?sql=SELECT%201"), 404, "unknown projection GET")


def test_rebuild():
    r = S.post("/projections/mine/rebuild")
    if r.status == 202:
        wait_for(lambda: S.get("/projections/mine").json()["state"] == "live", 10, "rebuild to finish")
    else:
        p = expect_problem(r, 501, "rebuild", "not-implemented")
        if "rebuild not available yet" not in p["detail"]:
            fail("rebuild detail %r" % p)
    expect_problem(S.post("/projections/nope/rebuild"), 404, "rebuild unknown")
    expect_problem(S.get("/projections/mine/rebuild"), 405, "GET rebuild")


def test_metrics_and_readiness():
    r = expect(S.get("/metrics"), 200, "metrics")
    if not r.header("Content-Type").startswith("text/plain; version=0.0.4"):
        fail("metrics type %r" % r.header("Content-Type"))
    text = r.body.decode()
    for needle in ['evlog_projection_checkpoint{projection="mine"}', 'evlog_projection_lag{projection="fragile"}',
                   "evlog_group_commit_events_bucket{le=\"1\"}", "evlog_group_commit_events_count",
                   "evlog_append_duration_seconds_bucket{le=\"+Inf\"}", 'evlog_http_requests_total{code="201"}',
                   'evlog_http_requests_total{code="504"}', "evlog_fsyncs_total", "evlog_head_position",
                   "evlog_sse_subscribers 0", "# TYPE evlog_append_duration_seconds histogram"]:
        if needle not in text:
            fail("metrics lack %s" % needle)
    if S.metric("evlog_append_duration_seconds_count") < 30:
        fail("append histogram count")
    # every commit of the log lands in the commit-duration histogram
    if "# TYPE evlog_group_commit_duration_seconds histogram" not in text:
        fail("metrics lack the commit-duration histogram")
    commits = S.metric("evlog_commits_total")
    if not commits or S.metric("evlog_group_commit_duration_seconds_count") != commits:
        fail("commit histogram count %r vs commits %r" % (S.metric("evlog_group_commit_duration_seconds_count"), commits))
    if S.metric('evlog_group_commit_duration_seconds_bucket{le="+Inf"}') != commits:
        fail("commit histogram +Inf bucket")
    if S.metric("evlog_head_position") != S.get("/events?limit=1").json()["head"]:
        fail("head metric")
    expect(S.get("/readyz"), 200, "ready")
    # a projection that faults makes the server not ready, and says which
    r = expect(S.append("boom-1", {"type": "Boom"}), 201, "boom")
    pos = r.json()["events"][0]["position"]
    p = expect_problem(query("fragile", {"sql": "SELECT 1", "min_position": pos, "timeout_ms": 5000}), 503,
                       "faulted projection", "faulted")
    if "GET /projections/fragile" not in p["detail"]:
        fail("faulted detail %r" % p)
    st = S.get("/projections/fragile").json()
    if st["state"] != "faulted" or st["fault_position"] != pos or "NOT NULL" not in st["error"]:
        fail("faulted status %r" % st)
    wait_for(lambda: S.get("/readyz").status == 503, 5, "readyz to see the fault")
    p = expect_problem(S.get("/readyz"), 503, "not ready")
    if p["faulted"] != ["fragile"]:
        fail("readyz %r" % p)
    wait_for(lambda: S.metric('evlog_projection_faulted{projection="fragile"}') == 1, 5, "faulted metric")
    if "projection fragile" not in S.log() and "fragile" not in S.log():
        fail("no log line for the fault: %s" % S.log())


def main():
    global S
    specs = tempfile.mkdtemp(prefix="evlog-specs-")
    for name, text in (("mine.sql", SPEC_MINE), ("fragile.sql", SPEC_FRAGILE)):
        with open(os.path.join(specs, name), "w") as f:
            f.write(text)
    S = Server("--no-builtin", "--projections", specs)
    try:
        run([test_status, test_read_your_writes, test_waits_do_not_block_the_loops, test_query_errors, test_rebuild,
             test_metrics_and_readiness])
    finally:
        if S.stop() != 0:
            print(S.log())
            sys.exit(1)
        S.close()


if __name__ == "__main__":
    main()
