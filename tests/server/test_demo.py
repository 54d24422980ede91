#!/usr/bin/python3
"""evlogd --demo (what `./scripts/run.sh --demo` starts): the console URL on
the start line, the head advancing at about --demo-rate, every built-in
projection filling with no fault, a clean stop whose count matches the log,
and a second demo run on the same data directory going on (new seed, no
conflict)."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import EVLOGD, Server, expect, fail, run, wait_for  # noqa: E402

TABLES = ("auth", "jobs", "karr", "nodes", "runs", "saas", "tasks")


def head(s):
    return expect(s.get("/events?limit=1&backward=1"), 200, "head").json()["head"]


def status(s):
    return {p["name"]: p for p in expect(s.get("/projections"), 200, "projections").json()}


def filled(s):
    st = status(s)
    for p in st.values():
        if p["state"] == "faulted":
            fail("projection %s faulted: %s" % (p["name"], p.get("error")))
    return all(sum(st[n]["tables"].values()) > 0 for n in TABLES) and st


def test_demo():
    s = Server("--demo", "--demo-rate", "400")
    try:
        m = wait_for(lambda: re.search(r"demo: .* (\d+) per second; console at (http://127\.0\.0\.1:(\d+)/)",
                                       s.log()), 10, "the demo line")
        if m.group(1) != "400" or int(m.group(3)) != s.port:
            fail("demo line %r" % m.group(0))
        page = expect(s.get("/"), 200, "the console")
        if b"<html" not in page.body:
            fail("console page %r" % page.body[:100])
        t0, h0 = time.monotonic(), head(s)
        wait_for(lambda: head(s) >= h0 + 400, 20, "the head to advance by 400")
        rate = (head(s) - h0) / (time.monotonic() - t0)
        if rate > 800:
            fail("the demo ran at %.0f events/s, asked for 400" % rate)
        st = wait_for(lambda: filled(s), 30, "every projection to have rows")
        lagging = {n: p["lag"] for n, p in st.items() if p["lag"] > 2000}
        if lagging:
            fail("projections far behind %r" % lagging)
        r = expect(s.post("/projections/jobs/query", {"sql": "SELECT count(*) FROM jobs"}), 200, "query")
        if r.json()["rows"][0][0] < 1:
            fail("jobs empty")
        if s.stop() != 0:
            fail("evlogd --demo exited nonzero:\n" + s.log())
        m = re.search(r"demo: stopped; it appended (\d+) events", s.log())
        if not m:
            fail("no stop line:\n" + s.log())
        appended = int(m.group(1))
        s.args = []  # restart without --demo: the log holds exactly what the demo said
        s.start()
        if head(s) != appended:
            fail("head %d after a demo that appended %d" % (head(s), appended))
        s.stop()
        s.start("--demo", "--demo-rate", "400")  # same data dir: a new seed, no conflict
        wait_for(lambda: head(s) >= appended + 200, 20, "a second demo run to append")
        if "already in the log" in s.log() or "demo: stopped after" in s.log():
            fail("second run: " + s.log())
        wait_for(lambda: all(p["lag"] < 2000 for p in filled(s).values()), 30, "projections to follow")
        # evlog verify beside a server that appends and projects: a
        # checkpoint read after the head may be past it, and is not "ahead"
        cli = os.path.join(os.path.dirname(EVLOGD), "evlog")
        for _ in range(10):
            r = subprocess.run([cli, "--data", s.data, "verify"], capture_output=True, text=True, timeout=60)
            if r.returncode != 0 or "ahead" in r.stdout:
                fail("verify beside the demo: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        if s.stop() != 0:
            fail("second stop:\n" + s.log())
    finally:
        s.close()


def test_demo_rejects_bad_rate():
    s = Server(start=False)
    try:
        s.args = ["--demo", "--demo-rate", "fast"]
        try:
            s.start()
            fail("--demo-rate fast started")
        except AssertionError as e:
            if "bad value" not in str(e):
                raise
    finally:
        s.close()


if __name__ == "__main__":
    run([test_demo, test_demo_rejects_bad_rate])
