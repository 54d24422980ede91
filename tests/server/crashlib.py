"""Helpers for the crash and concurrency tests (test_crash_*.py, test_race,
test_readers): the scale of a run, reading the whole log over HTTP, the CLI,
and the check that every projection equals a from-scratch replay.

Standard library only.  The figures a test prints are the ones
docs/reliability.md reports."""
import os
import shutil
import sqlite3
import subprocess
import tempfile

from evlsrv import BIN, fail, wait_for

EVLOG = os.path.join(BIN, "evlog")


def sanitized():
    """True in the ASan/UBSan build (set by tests/server/CMakeLists.txt):
    evlogd is several times slower there, so tests scale their counts down."""
    return os.environ.get("EVL_SANITIZED", "") not in ("", "0", "OFF")


def scaled(full, asan):
    """`full` in the Release build, `asan` under the sanitizers; either may be
    overridden with EVL_CRASH_SCALE=FACTOR (a float multiplying `full`)."""
    f = os.environ.get("EVL_CRASH_SCALE")
    if f:
        return max(1, int(full * float(f)))
    return asan if sanitized() else full


def cli(*args, check=True, timeout=120):
    """Run `evlog ARGS...`; returns the CompletedProcess (text)."""
    p = subprocess.run([EVLOG] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        fail("evlog %s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    return p


def all_events(srv, page=10000):
    """Every event of the log, in position order, over GET /events."""
    out, frm = [], 1
    c = srv.conn(timeout=60)
    try:
        while True:
            r = srv.request("GET", "/events?from=%d&limit=%d" % (frm, page), conn=c)
            if r.status != 200:
                fail("GET /events: %r" % r)
            j = r.json()
            out += j["events"]
            if j.get("next_from") is None:
                return out
            frm = j["next_from"]
    finally:
        c.close()


def check_log_shape(events):
    """Positions gap-free from 1, each stream's revisions contiguous from 0.
    Returns {stream: [events...]}."""
    streams = {}
    for i, ev in enumerate(events):
        if ev["position"] != i + 1:
            fail("position %d where %d was expected (gap or disorder)" % (ev["position"], i + 1))
        s = streams.setdefault(ev["subject"], [])
        if ev["revision"] != len(s):
            fail("stream %s: revision %d at position %d, want %d" % (ev["subject"], ev["revision"], ev["position"],
                                                                     len(s)))
        s.append(ev)
    return streams


def wait_projections(srv, timeout=60):
    """Wait until every projection is live at the head; returns (head, names)."""
    head = srv.get("/events?limit=1").json()["head"]

    def caught_up():
        ps = srv.get("/projections").json()
        for p in ps:
            if p.get("error"):
                fail("projection %s faulted: %r" % (p["name"], p))
        return all(p["checkpoint"] >= head and p["state"] == "live" and not p.get("rebuild") for p in ps) and ps
    ps = wait_for(caught_up, timeout, "every projection at head %d" % head)
    return head, sorted(p["name"] for p in ps)


def dump(path):
    """Every user table of a projection file: {table: sorted rows}."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                          "'sqlite%' AND name NOT LIKE '\\_evl\\_%' ESCAPE '\\' ORDER BY name")]
        return {t: sorted((tuple(r) for r in db.execute('SELECT * FROM "%s"' % t)), key=repr) for t in names}
    finally:
        db.close()


def checkpoint(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return db.execute("SELECT position FROM _evl_checkpoint").fetchone()[0]
    finally:
        db.close()


def compare_with_replay(data, names, head, specs=None):
    """Each projection file of the (stopped) server's data dir against
    `evlog replay --until HEAD` built from scratch: same tables, same rows.
    Returns the number of rows compared."""
    rows = 0
    tmp = tempfile.mkdtemp(prefix="evlog-replay-")
    try:
        return _compare(data, names, head, specs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compare(data, names, head, specs, tmp):
    rows = 0
    for name in names:
        live = os.path.join(data, "projections", name + ".db")
        cp = checkpoint(live)
        if cp != head:
            fail("projection %s checkpoint %d, head %d" % (name, cp, head))
        out = os.path.join(tmp, name + ".db")
        args = ["--data", data] + (["--projections", specs] if specs else [])
        cli(*(args + ["replay", "--projection", name, "--until", str(head), "--out", out]))
        a, b = dump(live), dump(out)
        if a != b:
            for t in sorted(set(a) | set(b)):
                if a.get(t) != b.get(t):
                    la, lb = a.get(t) or [], b.get(t) or []
                    fail("projection %s table %s differs from a replay: live %d rows, replay %d rows; "
                         "only live %r; only replay %r" % (name, t, len(la), len(lb),
                                                           [r for r in la if r not in lb][:3],
                                                           [r for r in lb if r not in la][:3]))
        rows += sum(len(v) for v in a.values())
    return rows
