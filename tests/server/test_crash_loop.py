#!/usr/bin/python3
"""Crash loop over HTTP: 64 clients append while evlogd is killed with
SIGKILL again and again, at random moments, and restarted.

    test_crash_loop.py --sync full|none

The clients, four kinds of 16:
- owners: each appends single events to a stream of its own with the
  expected revision it last saw (so a correct server never answers 409);
- batchers: batches of 1..5 events to five shared streams (expected any);
- multi: atomic POST /append batches over two or three streams;
- fire-and-forget: single events with no id to shared streams, the built-in
  `jobs` projection's JobQueued.
Every event carries {"c": client, "n": sequence} in its data.  The first
three kinds send client ids and, when an answer is lost to a kill, re-send
the same request (same ids) until it gets one: the idempotent retry.  The
last kind does not retry; its unanswered events may or may not be there.

Afterwards: every acknowledged event is in the log exactly once, at the
position and revision it was acknowledged with; no (c, n) appears twice;
every batch is all there or not at all; positions are gap-free and each
stream's revisions contiguous; `evlog verify` passes; and every projection
(the built-ins and a counting one) equals a from-scratch `evlog replay`.
With --sync full nothing acknowledged may be lost; with --sync none a lost
event must have been acknowledged within the flush interval (100 ms, plus
slack for the kill) before a kill.  Prints acknowledged / lost / duplicated.
"""
import http.client
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crashlib import all_events, check_log_shape, cli, compare_with_replay, scaled, wait_projections  # noqa: E402
from evlsrv import Server, fail, wait_for  # noqa: E402

SPEC = """-- @projection tally
CREATE TABLE counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL, last_rev INTEGER NOT NULL,
                     sum_n INTEGER NOT NULL);
CREATE TABLE seen (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, c INTEGER, n INTEGER);
-- @on *
INSERT INTO counts VALUES (@stream, 1, @revision, :n)
  ON CONFLICT (stream) DO UPDATE SET n = n + 1, last_rev = @revision, sum_n = sum_n + excluded.sum_n;
INSERT INTO seen VALUES (@position, @stream, :c, :n);
"""
CLIENTS = 64
FLUSH_MS = 100       # the log's default flush interval with --sync none
NET_ERRORS = (ConnectionError, http.client.HTTPException, OSError)


class Load:
    def __init__(self, srv):
        self.srv = srv
        self.lock = threading.Lock()
        self.acked = {}       # event id -> (stream, position, revision, c, n, ack time)
        self.batches = []     # [(acked?, [(c, n), ...])] for every request sent
        self.unknown = 0      # events of requests never answered (fire-and-forget kind)
        self.retries = 0      # requests re-sent after a lost answer
        self.repeats = 0      # ... answered 200: the lost answer's request had committed
        self.n_acked = 0
        self.errors = []
        self.stop = threading.Event()

    def post(self, conn, path, body, headers):
        """One attempt: the Response; None when the request may have been
        sent but its answer was lost; "unsent" when the server was not there
        to take it (connection refused: nothing can have been written)."""
        if conn[0] is None:
            conn[0] = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
            try:
                conn[0].connect()
            except NET_ERRORS:
                conn[0] = None
                return "unsent"
        try:
            return self.srv.request("POST", path, body, headers=headers, conn=conn[0])
        except NET_ERRORS:
            conn[0].close()
            conn[0] = None
            return None

    def record(self, resp, sent, t):
        evs = resp.json()["events"]
        if len(evs) != len(sent):
            self.errors.append("%d acks for %d events" % (len(evs), len(sent)))
            return
        with self.lock:
            for a, (c, n) in zip(evs, sent):
                self.acked[a["id"]] = (a["stream"], a["position"], a["revision"], c, n, t)
            self.n_acked += len(evs)

    def client(self, k):
        rnd = random.Random(k * 7919 + int(time.time()))
        kind = k % 4
        conn = [None]
        seq = 0
        own_rev = None  # owners: revision of the stream's last event
        while not self.stop.is_set() and not self.errors:
            headers, sent = {}, []

            def ev(typ, stream, extra=None, with_id=True):
                nonlocal seq
                d = {"c": k, "n": seq}
                d.update(extra or {})
                sent.append((k, seq))
                seq += 1
                e = {"type": typ, "data": d, "meta": {"actor": "client-%d" % k}}
                if with_id:
                    e["id"] = str(uuid.uuid4())
                return e
            if kind == 0:
                stream = "job-c%d" % k
                path = "/streams/" + stream
                body = ev("JobQueued" if own_rev is None else "JobStarted", stream, {"id": "c%d" % k, "model": "m"})
                headers["Expected-Revision"] = "no_stream" if own_rev is None else str(own_rev)
            elif kind == 1:
                stream = "shared-%d" % rnd.randrange(5)
                path = "/streams/" + stream
                body = [ev("Work", stream) for _ in range(rnd.randint(1, 5))]
            elif kind == 2:
                names = rnd.sample(["multi-a", "multi-b", "multi-c", "multi-d"], rnd.randint(2, 3))
                path = "/append"
                body = {"streams": [{"stream": s, "events": [ev("Moved", s) for _ in range(rnd.randint(1, 3))]}
                                    for s in names]}
            else:
                stream = "job-%s" % uuid.uuid4()
                path = "/streams/" + stream
                body = ev("JobQueued", stream, {"id": stream, "model": "m%d" % (seq % 3)}, with_id=False)
            batch = [False, sent]
            with self.lock:
                self.batches.append(batch)
            while True:
                r = self.post(conn, path, body, headers)
                if r == "unsent":
                    self.srv.up.wait(60)
                    continue
                if r is not None and r.status in (200, 201):
                    self.record(r, sent, time.monotonic())
                    if r.status == 200:
                        with self.lock:
                            self.repeats += 1
                    batch[0] = True
                    if kind == 0:
                        own_rev = r.json()["events"][-1]["revision"]
                    break
                if r is not None and r.status != 503:
                    self.errors.append("client %d: %s %r" % (k, path, r))
                    return
                if kind == 3:  # no retry: this one's fate is unknown
                    with self.lock:
                        self.unknown += len(sent)
                    break
                # the answer was lost (or the server is stopping): re-send the
                # same ids once it is back, even after the load was stopped
                with self.lock:
                    self.retries += 1
                self.srv.up.wait(60)
        if conn[0] is not None:
            conn[0].close()


def crash_loop(sync):
    kills = scaled(20, 8)
    tmp = tempfile.mkdtemp(prefix="evlog-crashloop-")
    specs = os.path.join(tmp, "specs")
    os.makedirs(specs)
    with open(os.path.join(specs, "tally.sql"), "w") as f:
        f.write(SPEC)
    srv = Server("--projections", specs, "--sync", sync, "--max-connections", "512", tmp=tmp)
    srv.up = threading.Event()
    srv.up.set()
    load = Load(srv)
    threads = [threading.Thread(target=load.client, args=(k,), daemon=True) for k in range(CLIENTS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    rnd = random.Random()
    kill_times = []
    try:
        for i in range(kills):
            # a random moment: after a random number of new acknowledgements
            # (so the server is busy), then up to 30 ms more
            target = load.n_acked + rnd.randint(50, scaled(1500, 500))
            wait_for(lambda: load.n_acked >= target or load.errors, 60, "appends before kill %d" % (i + 1))
            if load.errors:
                break
            time.sleep(rnd.random() * 0.03)
            srv.up.clear()
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(20)
            kill_times.append(time.monotonic())
            srv.start()
            srv.up.set()
        wait_for(lambda: load.n_acked > 0 or load.errors, 30, "appends after the last restart")
        load.stop.set()
        for t in threads:
            t.join(120)
            if t.is_alive():
                fail("a client did not finish its retries")
        if load.errors:
            fail("client errors: %r\n%s" % (load.errors[:5], srv.log()[-3000:]))
        elapsed = time.monotonic() - t0

        events = all_events(srv)
        streams = check_log_shape(events)
        by_id = {ev["id"]: ev for ev in events}
        seen = {}
        for ev in events:
            d = ev["data"]
            seen[(d["c"], d["n"])] = seen.get((d["c"], d["n"]), 0) + 1
        duplicated = sum(n - 1 for n in seen.values() if n > 1)
        lost, lost_late = [], []
        for eid, (stream, pos, rev, c, n, t) in load.acked.items():
            ev = by_id.get(eid)
            if ev is None:
                lost.append(eid)
                # --sync none may lose what was acknowledged since the last flush
                if not any(t <= kt and kt - t <= (FLUSH_MS + 400) / 1000 for kt in kill_times):
                    lost_late.append(eid)
                continue
            if (ev["subject"], ev["position"], ev["revision"]) != (stream, pos, rev) or \
                    (ev["data"]["c"], ev["data"]["n"]) != (c, n):
                fail("event %s acknowledged as %s@%d rev %d, the log has %r" % (eid, stream, pos, rev, ev))
        # every batch entirely there or not at all
        partial = [b for ok, b in load.batches if 0 < sum(1 for cn in b if cn in seen) < len(b)]
        if partial:
            fail("%d batches half written, e.g. %r" % (len(partial), partial[:3]))
        # owners' streams hold exactly their events, in order
        for k in range(0, CLIENTS, 4):
            s = streams.get("job-c%d" % k, [])
            ns = [e["data"]["n"] for e in s]
            if ns != list(range(len(ns))) or any(e["data"]["c"] != k for e in s):
                fail("stream job-c%d out of order: %r" % (k, ns[:20]))
        unanswered_present = sum(1 for ok, b in load.batches if not ok for cn in b if cn in seen)
        print("     sync %s: %d kills survived in %.1fs; %d events acknowledged in %d requests (%d re-sent "
              "after a lost answer, %d of them found committed), %d lost, %d duplicated; %d unanswered fire-and-forget events, %d of "
              "them committed; head %d, %d streams"
              % (sync, len(kill_times), elapsed, len(load.acked), sum(1 for ok, b in load.batches if ok),
                 load.retries, load.repeats, len(lost), duplicated, load.unknown, unanswered_present, len(events),
                 len(streams)), flush=True)
        if len(kill_times) != kills:
            fail("only %d kills" % len(kill_times))
        if duplicated:
            fail("%d duplicated events" % duplicated)
        if sync == "full" and lost:
            fail("%d acknowledged events lost with --sync full, e.g. %s" % (len(lost), lost[:3]))
        if lost_late:
            fail("%d lost events were acknowledged more than the flush interval before any kill" % len(lost_late))
        if load.acked and len(load.acked) < kills * 10:
            fail("too little load: %d acknowledged" % len(load.acked))

        head, names = wait_projections(srv)
        if head != len(events):
            fail("head moved: %d after reading %d events" % (head, len(events)))
        if srv.stop() != 0:
            fail("evlogd did not stop cleanly:\n%s" % srv.log()[-2000:])
        v = cli("--data", srv.data, "verify")
        rows = compare_with_replay(srv.data, names, head, specs)
        print("     sync %s: verify: %s; %d projections (%s) equal a replay to %d (%d rows)"
              % (sync, v.stdout.strip().splitlines()[0] if v.stdout.strip() else "ok", len(names),
                 ", ".join(names), head, rows), flush=True)
        summary = {"sync": sync, "kills": len(kill_times), "acknowledged": len(load.acked), "lost": len(lost),
                   "duplicated": duplicated, "resent": load.retries, "resent_found_committed": load.repeats, "head": head, "seconds": round(elapsed, 1)}
        print("     RESULT " + json.dumps(summary), flush=True)
    finally:
        load.stop.set()
        srv.up.set()
        srv.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    sync = "full"
    if len(sys.argv) == 3 and sys.argv[1] == "--sync" and sys.argv[2] in ("full", "none"):
        sync = sys.argv[2]
    elif len(sys.argv) != 1:
        print("usage: test_crash_loop.py [--sync full|none]", file=sys.stderr)
        sys.exit(2)
    t0 = time.monotonic()
    try:
        crash_loop(sync)
    except Exception:
        import traceback
        traceback.print_exc()
        print("FAIL crash_loop_%s" % sync, flush=True)
        sys.exit(1)
    print("ok   crash_loop_%-26s %.2fs" % (sync, time.monotonic() - t0), flush=True)


if __name__ == "__main__":
    main()
