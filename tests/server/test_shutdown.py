#!/usr/bin/python3
"""evlogd stopping: SIGTERM under concurrent appends (every acknowledged
append is in the log after a restart, at its acknowledged position), feeds
ended with a closing comment, projections checkpointed, exit 0; SIGINT and
SIGHUP; the config file."""
import http.client
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import EVLOGD, SSE, Server, expect, fail, run, wait_for  # noqa: E402

TMP = tempfile.mkdtemp(prefix="evlog-stop-")
SPEC = """-- @projection counts
CREATE TABLE n (stream TEXT PRIMARY KEY, c INTEGER NOT NULL);
-- @on Work
INSERT INTO n (stream, c) VALUES (@stream, 1) ON CONFLICT (stream) DO UPDATE SET c = c + 1;
"""


def specs():
    d = os.path.join(TMP, "specs")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "counts.sql"), "w") as f:
        f.write(SPEC)
    return d


def test_sigterm_under_load():
    srv = Server("--no-builtin", "--projections", specs(), "--sync", "full", tmp=TMP, data=os.path.join(TMP, "d1"))
    acked, errors, answers = {}, [], {}
    lock = threading.Lock()
    stop = threading.Event()

    def appender(k):
        c = srv.conn(timeout=10)
        i = 0
        while not stop.is_set():
            body = {"type": "Work", "data": {"k": k, "i": i}}
            try:
                r = srv.request("POST", "/streams/w-%d" % k, body, conn=c)
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                errors.append(type(e).__name__)
                break
            with lock:
                answers[r.status] = answers.get(r.status, 0) + 1
            if r.status == 201:
                ev = r.json()["events"][0]
                acked[ev["id"]] = ev["position"]
            elif r.status != 503:
                errors.append("status %d: %r" % (r.status, r.body))
                break
            else:
                break  # shutting down, or the connection was closed for it
            i += 1
        c.close()

    feed = SSE(srv, "/subscribe?from=1")
    threads = [threading.Thread(target=appender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) > 300, 20, "appends under way")
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(20)
    stop.set()
    for t in threads:
        t.join(20)
    if code != 0:
        fail("exit %d: %s" % (code, srv.log()))
    log = srv.log()
    if "stopping (SIGTERM)" not in log or "stopped (SIGTERM)" not in log:
        fail("stop lines: %s" % log)
    if any(not e.startswith(("RemoteDisconnected", "ConnectionRefused", "ConnectionReset", "BrokenPipe",
                             "BadStatusLine")) for e in errors):
        fail("appenders saw %r" % errors)
    # the feed ended cleanly: its closing comment, then the end of the stream
    while feed.next(10) is not None:
        pass
    if not feed.ended or not any("server shutting down" in c for c in feed.comments):
        fail("feed end: ended=%s comments=%r" % (feed.ended, feed.comments[-3:]))
    feed.close()
    # the projector checkpointed what it applied, in its own file
    db = sqlite3.connect(os.path.join(TMP, "d1", "projections", "counts.db"))
    cp = db.execute("SELECT position FROM _evl_checkpoint").fetchone()[0]
    rows = db.execute("SELECT sum(c) FROM n").fetchone()[0] or 0
    db.close()
    if cp != rows:
        fail("checkpoint %d but %d events applied" % (cp, rows))
    # every acknowledged append is in the log, where it was acknowledged
    srv.start()
    try:
        head = srv.get("/events?limit=1").json()["head"]
        if head < len(acked):
            fail("head %d after %d acknowledged appends" % (head, len(acked)))
        for eid, pos in acked.items():
            ev = srv.get("/events/%d" % pos).json()
            if ev["id"] != eid:
                fail("acknowledged %s at %d, the log has %s" % (eid, pos, ev["id"]))
        wait_for(lambda: srv.get("/projections/counts").json()["checkpoint"] == head, 10, "projection catch-up")
        print("     %d acknowledged, head %d, answers %r, client errors %r" % (len(acked), head, answers, errors))
    finally:
        if srv.stop() != 0:
            fail("second stop: %s" % srv.log())
        srv.close()


def test_sigint_and_sighup():
    srv = Server("--no-builtin", tmp=TMP, data=os.path.join(TMP, "d2"))
    try:
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP" in srv.log(), 5, "the SIGHUP line")
        expect(srv.get("/healthz"), 200, "alive after SIGHUP")
        if srv.stop(signal.SIGINT) != 0 or "stopped (SIGINT)" not in srv.log():
            fail("SIGINT: %s" % srv.log())
    finally:
        srv.close()


def test_config_file():
    conf = os.path.join(TMP, "evlogd.conf")
    with open(conf, "w") as f:
        f.write("# evlogd settings\nno-builtin = true\nprojections = %s\nsse-retry-ms 1234\n"
                "max-page = 7\nsync = none\n" % specs())
    srv = Server("--config", conf, tmp=TMP, data=os.path.join(TMP, "d3"))
    try:
        names = [p["name"] for p in srv.get("/projections").json()]
        if names != ["counts"]:
            fail("projections from the config file: %r" % names)
        if "sync none" not in srv.log():
            fail("sync from the config file: %s" % srv.log())
        sub = SSE(srv, "/subscribe")
        sub.comments.clear()
        expect(srv.append("c-1", {"type": "Work"}), 201, "append")
        sub.next(5)
        if sub.retry != 1234:
            fail("retry from the config file: %r" % sub.retry)
        sub.close()
        if srv.get("/events?limit=8").status != 400:
            fail("max-page from the config file")
    finally:
        srv.stop()
        srv.close()
    # the command line wins over the file
    srv = Server("--config", conf, "--max-page", "9", tmp=TMP, data=os.path.join(TMP, "d3"))
    try:
        expect(srv.get("/events?limit=8"), 200, "flag over file")
    finally:
        srv.stop()
        srv.close()
    for text, word in [("bogus = 1\n", "unknown option 'bogus'"), ("sync = sometimes\n", "bad value"),
                       ("max-body = lots\n", "bad value")]:
        with open(conf, "w") as f:
            f.write(text)
        p = subprocess.run([EVLOGD, "--config", conf, "--data", os.path.join(TMP, "d4")], stderr=subprocess.PIPE,
                           timeout=20)
        if p.returncode != 2 or word.encode() not in p.stderr or b"evlogd.conf:1" not in p.stderr:
            fail("config %r: exit %d %r" % (text, p.returncode, p.stderr))
    p = subprocess.run([EVLOGD, "--bogus", "--data", os.path.join(TMP, "d4")], stderr=subprocess.PIPE, timeout=20)
    if p.returncode != 2:
        fail("unknown flag: exit %d" % p.returncode)
    p = subprocess.run([EVLOGD, "--data", os.path.join(TMP, "d4"), "--listen", "nonsense"], stderr=subprocess.PIPE,
                       timeout=20)
    if p.returncode != 1 or b"HOST:PORT" not in p.stderr:
        fail("bad --listen: exit %d %r" % (p.returncode, p.stderr))


def main():
    try:
        run([test_sigterm_under_load, test_sigint_and_sighup, test_config_file])
    finally:
        import shutil
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
