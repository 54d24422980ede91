#!/usr/bin/python3
"""evlogd projections over HTTP: status, queries (GET and POST, JSON and
msgpack), read-your-writes with min_position (without blocking the loops),
504/404/400, a rebuild without downtime (queries and appends throughout),
and what /metrics and /readyz say about them."""
import os
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402
from evlsrv import QueryLoop, Server, expect, expect_problem, fail, run, wait_for  # noqa: E402

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
    # Waits hold at most 12 of the 16 threads; the other 12 queue.  /metrics
    # runs on the pool too, so its answer already shows they do not starve it.
    cap = 16 - 16 // 4
    wait_for(lambda: S.metric("evlog_pool_waiting_queries") == cap and
             S.metric("evlog_pool_queued_jobs") == 24 - cap, 10, "the waits to take their share of the pool")
    if S.metric("evlog_pool_waiting_queries_max") != cap:
        fail("waits may hold %d threads, want %d" % (S.metric("evlog_pool_waiting_queries_max"), cap))
    # The loops, and the pool's other threads, answer while two dozen queries
    # wait: blocked, a request would take until a wait ends (10 s); 3 s leaves
    # room for a loaded machine.
    def quick(what, f):
        t0 = time.monotonic()
        r = f()
        if time.monotonic() - t0 > 3.0:
            fail("%s took %.2fs while queries waited" % (what, time.monotonic() - t0))
        return r
    for _ in range(5):
        expect(quick("healthz", lambda: S.get("/healthz")), 200, "healthz during waits")
        expect(quick("a read", lambda: S.get("/events?limit=1")), 200, "read during waits")
        expect(quick("readyz", lambda: S.get("/readyz")), 200, "readyz during waits")
        expect(quick("status", lambda: S.get("/projections/mine")), 200, "status during waits")
        r = quick("a query", lambda: query("mine", {"sql": "SELECT count(*) FROM jobs"}))
        if expect(r, 200, "a query during waits").json()["rows"] != [[30]]:
            fail("query during waits %r" % r)
    if results:
        fail("a query answered before its position existed: %r" % results)
    expect(S.append("job-x", {"type": "JobQueued", "data": {"id": "jx", "model": "m", "n": 99}}), 201, "append")
    for t in ts:
        t.join(15)
    if len(results) != 24 or any(r.status != 200 or r.json()["rows"] != [[31]] for r in results):
        fail("waiting queries: %r" % results[:3])
    wait_for(lambda: S.metric("evlog_pool_waiting_queries") == 0 and S.metric("evlog_pool_queued_jobs") == 0,
             10, "the pool to drain")


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


REBUILD_KEYS = {"spec_hash", "position", "head", "applied", "events_per_second", "eta_seconds", "elapsed_seconds"}


def count_jobs(min_position=None):
    body = {"sql": "SELECT count(*) FROM jobs"}
    if min_position:
        body.update(min_position=min_position, timeout_ms=30000)
    return expect(query("mine", body), 200, "count").json()["rows"][0][0]


def test_rebuild():
    # enough rows that the rebuild takes a while: it is watched while it runs
    for k in range(20):
        expect(S.append("bulk-%d" % k, [{"type": "JobQueued", "data": {"id": "b%d-%d" % (k, i), "model": "m", "n": i}}
                                        for i in range(1000)]), 201, "bulk append")
    before = count_jobs(S.get("/events?limit=1").json()["head"])
    st = expect(S.get("/projections/mine"), 200, "status").json()
    gen, starts = st["generation"], S.log().count("projection mine: rebuilding from position 1")
    if st["state"] != "live" or "rebuild" in st or "rebuild_error" in st:
        fail("status before the rebuild %r" % st)
    readers = QueryLoop(S, "mine", "SELECT count(*) FROM jobs")
    readers.start()
    wait_for(lambda: readers.queries >= 3, 10, "queries before the rebuild")

    r = expect(S.post("/projections/mine/rebuild"), 202, "rebuild")
    if r.header("Location") != "/projections/mine" or not r.header("Content-Type").startswith("application/json"):
        fail("rebuild headers %r" % r.headers)
    if r.json() != {"projection": "mine", "state": "rebuilding", "status": "/projections/mine"}:
        fail("rebuild body %r" % r.json())
    # the engine has the request before the 202: the status says so at once
    st = expect(S.get(r.header("Location")), 200, "status after 202").json()
    if st["state"] != "rebuilding" or st["generation"] != gen:
        fail("status after the 202 %r" % st)
    if st["tables"]["jobs"] < before:
        fail("the old table does not serve during the rebuild: %r" % st)
    # asked again while one runs: accepted, not started twice
    expect(S.post("/projections/mine/rebuild"), 202, "second rebuild")

    # appends keep arriving while the new table is built; the status shows its progress
    appended, progress = [], []
    while len(appended) < 2000:
        st = S.get("/projections/mine").json()
        if st["state"] != "rebuilding":
            break
        if "rebuild" in st:
            progress.append((st["spec_hash"], st["rebuild"]))
        a = expect(S.append("late-%d" % len(appended), {"type": "JobQueued", "data": {
            "id": "late%d" % len(appended), "model": "m", "n": 0}}), 201, "append during the rebuild")
        appended.append(a.json()["events"][0]["position"])
    if not progress:
        fail("no status showed the rebuild's progress")
    for served, rb in progress:
        if set(rb) != REBUILD_KEYS or rb["spec_hash"] != served or rb["position"] > rb["head"]:
            fail("rebuild progress %r" % rb)
        if (rb["eta_seconds"] is not None and rb["eta_seconds"] < 0) or rb["elapsed_seconds"] < 0:
            fail("rebuild times %r" % rb)
    # lag 0 too: the swap may come before the last append, and the status is
    # then live (as of the swap) but one event behind
    st = wait_for(lambda: (lambda s: s["state"] == "live" and s["generation"] == gen + 1 and s["lag"] == 0 and s)(
        S.get("/projections/mine").json()), 60, "the rebuilt table to take over")
    after = count_jobs(appended[-1] if appended else None)
    readers.stop()

    if readers.errors:
        fail("%d of %d queries failed during the rebuild: %r" % (len(readers.errors), readers.queries,
                                                                 readers.errors[:3]))
    if not readers.values or min(readers.values) < before:
        fail("a query saw an empty or partial table: min %r, before %d" % (min(readers.values or [None]), before))
    if any(b < a for a, b in zip(readers.values, readers.values[1:])):
        fail("a query saw fewer rows than the one before it")
    if after != before + len(appended):
        fail("after the rebuild %d rows, want %d + %d" % (after, before, len(appended)))
    if "rebuild" in st or "rebuild_error" in st or st["events_applied"] != after:
        fail("status after the rebuild %r" % st)
    wait_for(lambda: S.metric('evlog_projection_generation{projection="mine"}') == gen + 1, 5, "generation metric")
    if S.metric('evlog_projection_rebuilding{projection="mine"}') != 0:
        fail("rebuilding metric after the rebuild")
    log = S.log()
    if "projection mine: rebuild requested" not in log or "projection mine: rebuilt to position" not in log:
        fail("rebuild log lines: %s" % log)
    if log.count("projection mine: rebuilding from position 1") != starts + 1:
        fail("the second request started a second rebuild: %s" % log)

    expect_problem(S.post("/projections/nope/rebuild"), 404, "rebuild unknown", "not-found")
    r = S.get("/projections/mine/rebuild")
    expect_problem(r, 405, "GET rebuild", "method-not-allowed")
    if r.header("Allow") != "OPTIONS, POST":
        fail("Allow on rebuild %r" % r.header("Allow"))


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
    commits = S.metric("evlog_groups_total")
    if not commits or not S.metric("evlog_commits_total") or \
            S.metric("evlog_group_commit_duration_seconds_count") != commits:
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
