#!/usr/bin/python3
"""Projector crash: evlogd is SIGKILLed while its projectors apply a stream
of appends and a rebuild runs (asked for with POST /projections/NAME/rebuild,
or started by a changed spec file and SIGHUP), then restarted.  After every
restart each projection's rows match its checkpoint exactly (a counting
table shows a double apply, a table keyed by position a skip), and at the
end every table equals a from-scratch `evlog replay`."""
import http.client
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crashlib import compare_with_replay, scaled, wait_projections  # noqa: E402
from evlsrv import Server, expect, fail, wait_for  # noqa: E402

SPEC = """-- @projection tally
-- variant %d
CREATE TABLE counts (type TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE seen (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, k INTEGER);
-- @on *
INSERT INTO counts VALUES (@type, 1) ON CONFLICT (type) DO UPDATE SET n = n + 1;
INSERT INTO seen VALUES (@position, @stream, :k);
"""
CHECK_SQL = ("SELECT (SELECT count(*) FROM seen), (SELECT coalesce(sum(n), 0) FROM counts), "
             "(SELECT coalesce(max(position), 0) FROM seen)")


class Appender(threading.Thread):
    """Appends batches until stopped, across kills (a lost answer is simply
    dropped: this test is about the projections, not the acks)."""

    def __init__(self, srv, k):
        super().__init__(daemon=True)
        self.srv, self.k, self.halt, self.acked = srv, k, threading.Event(), 0

    def run(self):
        i = 0
        while not self.halt.is_set():
            evs = [{"type": "JobQueued" if j == 0 else "Work",
                    "data": {"k": self.k, "id": "j-%d-%d" % (self.k, i), "model": "m"}} for j in range(20)]
            try:
                r = self.srv.post("/streams/w-%d-%d" % (self.k, i), evs)
                if r.status == 201:
                    self.acked += 20
            except (OSError, http.client.HTTPException):
                self.srv.up.wait(30)
            i += 1


def check_tally(srv):
    q = expect(srv.post("/projections/tally/query", {"sql": CHECK_SQL}), 200, "tally").json()
    seen, total, maxpos = q["rows"][0]
    if not (seen == total == maxpos == q["position"]):
        fail("tally at checkpoint %d: %d rows, %d applied, max position %d (double apply or skip)"
             % (q["position"], seen, total, maxpos))
    return q["position"]


def test_projector_crash():
    kills = scaled(10, 5)
    tmp = tempfile.mkdtemp(prefix="evlog-projcrash-")
    specs = os.path.join(tmp, "specs")
    os.makedirs(specs)
    spec_path = os.path.join(specs, "tally.sql")
    with open(spec_path, "w") as f:
        f.write(SPEC % 0)
    srv = Server("--projections", specs, "--sync", "full", tmp=tmp)
    srv.up = threading.Event()
    srv.up.set()
    rnd = random.Random()
    apps = []
    during_rebuild = 0
    try:
        # a log big enough that a rebuild takes a while
        c = srv.conn(timeout=60)
        for b in range(scaled(150, 40)):
            evs = [{"type": "Work", "data": {"k": -1, "id": "seed-%d" % b}} for _ in range(200)]
            expect(srv.request("POST", "/streams/seed-%d" % b, evs, conn=c), 201, "seed")
        c.close()
        apps = [Appender(srv, k) for k in range(4)]
        for a in apps:
            a.start()
        for i in range(kills):
            if i % 2 == 0:
                for name in ("tally", "jobs"):
                    r = srv.post("/projections/%s/rebuild" % name)
                    if r.status not in (202, 409):
                        fail("rebuild %s: %r" % (name, r))
            else:
                # a changed spec: SIGHUP starts a shadow rebuild of tally
                with open(spec_path, "w") as f:
                    f.write(SPEC % i)
                srv.proc.send_signal(signal.SIGHUP)
            rebuilding = wait_for(lambda: srv.get("/projections/tally").json().get("rebuild") is not None or
                                  srv.get("/projections/tally").json().get("generation", 0) > 0, 30,
                                  "the rebuild to start")
            del rebuilding
            time.sleep(rnd.random() * 0.15)  # a random moment within the rebuild
            st = srv.get("/projections/tally").json()
            during_rebuild += st.get("rebuild") is not None
            srv.up.clear()
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(20)
            srv.start()
            srv.up.set()
            check_tally(srv)
        for a in apps:
            a.halt.set()
        for a in apps:
            a.join(30)
        head, names = wait_projections(srv, timeout=120)
        if check_tally(srv) != head:
            fail("tally not at the head")
        if srv.stop() != 0:
            fail("evlogd did not stop cleanly")
        rows = compare_with_replay(srv.data, names, head, specs)
        print("     %d kills (%d while a rebuild was running), head %d; %d projections equal a replay "
              "(%d rows)" % (kills, during_rebuild, head, len(names), rows), flush=True)
        if during_rebuild == 0:
            fail("no kill landed during a rebuild")
    finally:
        for a in apps:
            a.halt.set()
        srv.up.set()
        srv.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    from evlsrv import run
    run([test_projector_crash])
