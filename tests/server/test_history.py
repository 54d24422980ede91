#!/usr/bin/python3
"""evlogd audit trail over HTTP: GET /projections/NAME/history/TABLE/KEY (the
built-in tasks projection keeps its history), ?column=, the refusals; and
point-in-time queries (`as_of` a position or an ISO time) equal to
`evlog replay --until` at the same position, answered from the cache the
second time (as_of.cached and the metrics say so), the cache bounded, and
its directory emptied at start-up and at shutdown."""
import os
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import EVLOGD, Server, expect, expect_problem, fail, run  # noqa: E402

EVLOG = os.path.join(os.path.dirname(EVLOGD), "evlog")
S = None
POS = {}


def post(stream, typ, data, actor=None):
    ev = {"type": typ, "data": data}
    if actor:
        ev["meta"] = {"actor": actor}
    return expect(S.append(stream, ev), 201, "append").json()["events"][0]["position"]


def sync(name, pos):
    expect(S.post("/projections/%s/query" % name, {"sql": "SELECT 1", "min_position": pos, "timeout_ms": 15000}),
           200, "min_position")


def test_history():
    POS["submit"] = post("task-42", "TaskSubmitted", {"task_id": 42, "command": "train.sh",
                                                      "approval_status": "pending"}, "user-3")
    post("job-j1", "JobQueued", {"id": "j1", "model": "llama"}, "alice")
    POS["approve"] = post("task-42", "TaskApproved", {"task_id": 42, "approved_by_id": 7}, "alice")
    POS["assign"] = post("task-42", "TaskAssigned", {"task_id": 42, "assigned_node": "kr-gpu-01"}, "scheduler")
    POS["start"] = post("task-42", "TaskStarted", {"task_id": 42, "assigned_node": "kr-gpu-02"}, "runner")
    sync("tasks", POS["start"])
    h = expect(S.get("/projections/tasks/history/tasks/42"), 200, "history").json()
    if h["projection"] != "tasks" or h["table"] != "tasks" or h["key"] != "42" or h["position"] < POS["start"]:
        fail("history header %r" % {k: v for k, v in h.items() if k != "entries"})
    got = [(e["position"], e["op"], e["type"], e["actor"]) for e in h["entries"]]
    want = [(POS["submit"], "insert", "TaskSubmitted", "user-3"), (POS["approve"], "update", "TaskApproved", "alice"),
            (POS["assign"], "update", "TaskAssigned", "scheduler"), (POS["start"], "update", "TaskStarted", "runner")]
    if got != want:
        fail("entries %r, want %r" % (got, want))
    approve = {c["column"]: (c["old"], c["new"]) for c in h["entries"][1]["changes"]}
    if approve.get("approval_status") != ("pending", "approved") or approve.get("approved_by_id") != (None, 7) \
            or approve.get("status") != ("pending_approval", "pending") or "approved_at" not in approve:
        fail("approval diff %r" % approve)
    t = h["entries"][1]["time"]
    if not (t.endswith("Z") and t == expect(S.get("/events/%d" % POS["approve"]), 200).json()["time"]):
        fail("entry time %r" % t)
    node = expect(S.get("/projections/tasks/history/tasks/42?column=assigned_node"), 200, "column").json()
    got = [(e["position"], [(c["column"], c["old"], c["new"]) for c in e["changes"]]) for e in node["entries"]]
    if got != [(POS["assign"], [("assigned_node", None, "kr-gpu-01")]),
               (POS["start"], [("assigned_node", "kr-gpu-01", "kr-gpu-02")])]:
        fail("assigned_node history %r" % got)
    if expect(S.get("/projections/tasks/history/tasks/4242"), 200).json()["entries"] != []:
        fail("an unknown key has entries")
    expect_problem(S.get("/projections/nodes/history/nodes/n1"), 404, "table without history")
    expect_problem(S.get("/projections/tasks/history/tasks/42?column=nope"), 400, "unknown column")
    expect_problem(S.get("/projections/nope/history/tasks/42"), 404, "unknown projection")
    expect_problem(S.get("/projections/tasks/history/tasks/42?colum=x"), 400, "unknown parameter")


def replay_rows(pos, sql):
    out = os.path.join(S.tmp, "replay-%d.db" % pos)
    subprocess.run([EVLOG, "--data", S.data, "replay", "--projection", "tasks", "--until", str(pos), "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    db = sqlite3.connect(out)
    rows = [list(r) for r in db.execute(sql)]
    db.close()
    return rows


def asof(pos, sql):
    return S.post("/projections/tasks/query", {"sql": sql, "as_of": pos})


def test_as_of():
    post("task-42", "TaskKilled", {"task_id": 42}, "alice")
    sql = "SELECT task_id, status, approval_status, approved_by_id, assigned_node FROM tasks ORDER BY task_id"
    for name in ("submit", "approve", "assign"):
        pos = POS[name]
        r = expect(asof(pos, sql), 200, "as_of %d" % pos).json()
        if r["rows"] != replay_rows(pos, sql) or r["position"] != pos or r["as_of"]["position"] != pos:
            fail("as_of %d: %r vs replay %r" % (pos, r, replay_rows(pos, sql)))
    if expect(asof(POS["assign"], sql), 200).json()["rows"][0][4] != "kr-gpu-01":
        fail("as_of assign: node")
    # the history table is in the build too
    r = expect(asof(POS["approve"], "SELECT count(DISTINCT position) FROM _evl_history"), 200).json()
    if r["rows"] != [[2]]:
        fail("history in an as_of build: %r" % r)


def test_as_of_time_and_cache():
    sql = "SELECT status, assigned_node FROM tasks WHERE task_id = 42"
    hits = S.metric("evlog_asof_cache_hits_total")
    t = expect(S.get("/events/%d" % POS["assign"]), 200).json()["time"]
    r1 = expect(asof(t, sql), 200, "as_of time").json()
    if r1["position"] != POS["assign"] or r1["rows"] != [["assigning", "kr-gpu-01"]]:
        fail("as_of %s: %r" % (t, r1))
    r2 = expect(asof(POS["assign"], sql), 200, "as_of again").json()
    if not r2["as_of"]["cached"] or r2["rows"] != r1["rows"]:
        fail("second as_of not from the cache: %r" % r2)
    if S.metric("evlog_asof_cache_hits_total") < hits + 1:
        fail("hits metric did not move")
    # GET form
    g = expect(S.get("/projections/tasks/query?as_of=%d&sql=SELECT%%20status%%20FROM%%20tasks" % POS["submit"]),
               200, "GET as_of").json()
    if g["rows"] != [["pending_approval"]] or g["as_of"]["position"] != POS["submit"]:
        fail("GET as_of %r" % g)
    expect_problem(asof("yesterday", sql), 400, "bad as_of")
    expect_problem(asof(-1, sql), 400, "negative as_of")
    expect_problem(S.post("/projections/tasks/query", {"sql": sql, "as_of": 1, "min_position": 1}), 400,
                   "as_of with min_position")


def test_cache_bounds():
    # started with --asof-cache-entries 2: a third position evicts the least recently used
    sql = "SELECT count(*) FROM tasks"
    ev0 = S.metric("evlog_asof_cache_evictions_total")
    for pos in (1, 2, 3, 4):
        expect(asof(pos, sql), 200, "as_of %d" % pos)
    files = [f for f in os.listdir(os.path.join(S.data, "asof")) if f.endswith(".db")]
    if len(files) > 2 or S.metric("evlog_asof_cache_entries") > 2:
        fail("cache holds %r" % files)
    if S.metric("evlog_asof_cache_evictions_total") < ev0 + 2:
        fail("no evictions")
    if expect(asof(4, sql), 200).json()["as_of"]["cached"] is not True:
        fail("the most recent build was evicted")
    if expect(asof(1, sql), 200).json()["as_of"]["cached"] is not False:
        fail("the oldest build was kept")


def main():
    global S
    S = Server("--asof-cache-entries", "2")
    try:
        run([test_history, test_as_of, test_as_of_time_and_cache, test_cache_bounds])
        asof_dir = os.path.join(S.data, "asof")
        if S.stop() != 0:
            print(S.log())
            sys.exit(1)
        if os.path.exists(asof_dir) and os.listdir(asof_dir):
            fail("the as_of builds outlived the server: %r" % os.listdir(asof_dir))
        # what a crash leaves is removed at start-up
        os.makedirs(asof_dir, exist_ok=True)
        stale = os.path.join(asof_dir, "tasks-0000000000000000-1-1.db")
        open(stale, "w").close()
        S.start("--asof-cache-entries", "2")
        if os.path.exists(stale):
            fail("a stale build survived the start-up")
        if S.stop() != 0:
            print(S.log())
            sys.exit(1)
    finally:
        S.close()


if __name__ == "__main__":
    main()
