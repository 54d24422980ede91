#!/usr/bin/python3
"""Two evlogd on one data directory: the second refuses to start, with a
clear message naming the lock and its holder, and changes nothing, even
while the first is under load; the CLI's writers are refused the same way.
The lock dies with its holder: after a SIGKILL the next evlogd starts."""
import hashlib
import os
import signal
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crashlib import all_events, check_log_shape, cli, wait_projections  # noqa: E402
from evlsrv import EVLOGD, Server, expect, fail, run, wait_for  # noqa: E402

S = None


def files(d):
    """Every file under d (content hashes): what a refused start must not change."""
    out = {}
    for root, _, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = hashlib.sha256(f.read()).hexdigest()
    return out


def second(*extra):
    p = subprocess.run([EVLOGD, "--data", S.data, "--listen", "127.0.0.1:0"] + list(extra),
                       stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, timeout=30)
    return p.returncode, p.stderr


def test_second_evlogd_refused_idle():
    for i in range(3):
        expect(S.append("lock-1", {"type": "T", "data": {"i": i}}), 201, "append")
    wait_projections(S)
    before = files(S.data)
    for extra in ([], ["--sync", "none"], ["--no-builtin"]):
        code, err = second(*extra)
        want = "%s: data directory in use by another process (%s/LOCK is locked by pid %d)" % (
            S.data, S.data, S.proc.pid)
        if code != 1 or want not in err or "one evlogd per data directory" not in err:
            fail("second evlogd %r: exit %d, %r" % (extra, code, err))
        if "listening" in err or "started" in err:
            fail("the second evlogd got as far as %r" % err)
    if files(S.data) != before:
        fail("a refused evlogd changed the data directory")
    # the CLI's writers are refused too; its readers work beside evlogd
    p = cli("--data", S.data, "append", "lock-1", "T", "{}", check=False)
    if p.returncode != 1 or "in use by another process" not in p.stderr:
        fail("evlog append beside evlogd: %d %r" % (p.returncode, p.stderr))
    if files(S.data) != before:
        fail("a refused evlog append changed the data directory")
    if len(cli("--data", S.data, "read", "lock-1").stdout.splitlines()) != 3:
        fail("evlog read beside evlogd")


def test_second_evlogd_refused_under_load():
    acked, stop, errors = [], threading.Event(), []

    def appender(k):
        c = S.conn()
        while not stop.is_set():
            r = S.request("POST", "/streams/load-%d" % k, {"type": "T", "data": {"k": k}}, conn=c)
            if r.status != 201:
                errors.append(r)
                return
            acked.append(r.json()["events"][0])
        c.close()
    threads = [threading.Thread(target=appender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    try:
        attempts = 0
        for i in range(10):
            n = len(acked)
            wait_for(lambda: len(acked) > n + 20 or errors, 20, "appends")
            code, err = second()
            attempts += 1
            if code != 1 or "in use by another process" not in err:
                fail("second evlogd under load: exit %d %r" % (code, err))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    if errors:
        fail("appends beside the refused starts: %r" % errors[:3])
    events = all_events(S)
    check_log_shape(events)
    got = {(e["id"], e["position"]) for e in events}
    missing = [a for a in acked if (a["id"], a["position"]) not in got]
    if missing:
        fail("%d acknowledged events missing" % len(missing))
    print("     %d refused starts during %d appends" % (attempts, len(acked)), flush=True)


def test_lock_released_by_a_kill():
    head = S.get("/events?limit=1").json()["head"]
    S.proc.send_signal(signal.SIGKILL)
    S.proc.wait(20)
    S.start()  # the kernel dropped the dead holder's lock
    if S.get("/events?limit=1").json()["head"] != head:
        fail("head changed across the kill")
    code, err = second()
    if code != 1 or "locked by pid %d" % S.proc.pid not in err:
        fail("after the restart: %d %r" % (code, err))
    S.stop()
    cli("--data", S.data, "verify")


def main():
    global S
    S = Server("--sync", "full")
    try:
        run([test_second_evlogd_refused_idle, test_second_evlogd_refused_under_load, test_lock_released_by_a_kill])
    finally:
        S.close()


if __name__ == "__main__":
    main()
