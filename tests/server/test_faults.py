#!/usr/bin/python3
"""evlogd under storage faults (docs/reliability.md, "Power loss and I/O
faults"):

- I/O error sweep: the ioshim (tests/fault/ioshim.c, LD_PRELOAD) fails the
  Nth write or sync of data.mdb, N = 1, 2, ... until a run reaches no fault,
  once and forever-after.  No failed append is answered 201; after the first
  failure /readyz answers 503 and appends 503 while reads go on; after a
  restart without the shim `evlog verify` passes and every acknowledged event
  is there.
- Full disk: the data dir on a 3 MiB tmpfs (or, where mount is refused, a
  4 MiB LMDB map): appends answer 507 with a clear message, reads, queries and
  feeds keep working, and once space is freed appends work again with nothing
  lost.
- Projection files: EIO and short writes (the shim, switched on by a trigger
  file), the projections directory removed, a file replaced by garbage: that
  projection faults with a clear status (GET /projections, evlog projections),
  never the log, and the others keep running.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import BIN, Server, SSE, expect, expect_problem, fail, run, wait_for  # noqa: E402

SHIM = os.path.join(BIN, "tests", "fault", "libevl_ioshim.so")
EVLOG = os.path.join(BIN, "evlog")
FIGURES = {}
READS_REFUSED = [0]
RO_FILES = []


class shim_env:
    """Preload the shim into the evlogd started within (Popen inherits the
    environment); the sanitizer runtime would otherwise insist on coming first."""

    def __init__(self, **kv):
        self.kv = {"LD_PRELOAD": SHIM}
        self.kv.update({"EVL_SHIM_" + k.upper(): str(v) for k, v in kv.items()})
        ao = os.environ.get("ASAN_OPTIONS", "")
        self.kv["ASAN_OPTIONS"] = (ao + ":" if ao else "") + "verify_asan_link_order=0"

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.kv}
        os.environ.update(self.kv)

    def __exit__(self, *a):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def evlog(*args):
    return subprocess.run([EVLOG] + list(args), capture_output=True, text=True, timeout=120)


def all_ids(srv):
    r = expect(srv.get("/events?limit=10000"), 200, "read all").json()
    return [e["id"] for e in r["events"]]


def stat(path, key):
    try:
        with open(path) as f:
            for kv in f.read().split():
                k, v = kv.split("=")
                if k == key:
                    return int(v)
    except FileNotFoundError:
        pass
    return 0


# ------------------------------------------------------------------ I/O errors

def sweep_one(tmp, n, sticky):
    data = os.path.join(tmp, "d%d%s" % (n, "s" if sticky else ""))
    stats = os.path.join(tmp, "shim.stats")
    if os.path.exists(stats):
        os.unlink(stats)
    env = dict(fail_at=n, fake_sync=1, exit_drop=1, stats=stats)
    if sticky:
        env["fail_sticky"] = 1
    srv = Server("--no-builtin", tmp=tmp, data=data, start=False)
    acked, failed_at = [], None
    with shim_env(**env):
        try:
            srv.start()
        except AssertionError as e:
            # the fault hit the log's creation: evlogd must say so and exit
            if "exited" not in str(e):
                raise
            if "evlogd" not in srv.log() or srv.proc.returncode == 0:
                fail("N=%d: evlogd start failed without a clear message: %s" % (n, srv.log()))
            return "open", acked, stat(stats, "failed")
    try:
        for i in range(6):
            ids = ["%08x-0000-4000-8000-%012x" % (n * 2 + sticky, i * 2 + k) for k in range(2)]
            if i % 2:
                r = srv.post("/append", {"streams": [
                    {"stream": "io-a", "events": [{"type": "T", "id": ids[0], "data": {"i": i}}]},
                    {"stream": "io-b", "events": [{"type": "T", "id": ids[1], "data": {"i": i}}]}]})
                ids_sent = ids
            else:
                r = srv.append("io-a", {"type": "T", "id": ids[0], "data": {"i": i}})
                ids_sent = ids[:1]
            if r.status == 201:
                if failed_at is not None:
                    fail("N=%d: an append answered 201 after a failed commit" % n)
                acked += ids_sent
                continue
            if failed_at is None:
                p = expect_problem(r, 503, "N=%d: the failed commit" % n, "unavailable")
                # the append's own journal write failed ("could not
                # commit"), or an earlier one's LMDB commit in the applier
                # did, after that append was acknowledged (read-only since)
                if "could not commit" not in p["detail"] and "read-only after a failed sync" not in p["detail"]:
                    fail("N=%d: failed commit detail %r" % (n, p))
            if failed_at is None:
                failed_at = i
                # read-only from now on, and not ready
                p = expect_problem(srv.get("/readyz"), 503, "readyz after a failed commit")
                if "refuses appends" not in p["detail"]:
                    fail("N=%d: readyz detail %r" % (n, p))
                expect_problem(srv.append("io-a", {"type": "T"}), 503, "append after a failed commit",
                               "unavailable")
                # reads go on, except after a failed write of LMDB's meta
                # page: then LMDB refuses every transaction until a restart
                r = srv.get("/events?limit=10000")
                if r.status == 200:
                    # what the applier had put in LMDB before the failure:
                    # the rest is in the journal, readable after a restart
                    got = [e["id"] for e in r.json()["events"]]
                    if got != acked[:len(got)]:
                        fail("N=%d: reads after the failure show %r, acknowledged %r" % (n, got, acked))
                else:
                    p = expect_problem(r, 503, "reads after a failed meta page write", "unavailable")
                    if "restart required" not in p["detail"]:
                        fail("N=%d: read refused with %r" % (n, p))
                    READS_REFUSED[0] += 1
        if failed_at is None:
            r = srv.get("/readyz")
            if r.status != 200:
                # the applier's LMDB commit failed after the last append was
                # acknowledged: read-only, and every acknowledged event is
                # in the journal (checked after the restart below)
                p = expect_problem(r, 503, "readyz after the applier failed")
                if "refuses appends" not in p["detail"]:
                    fail("N=%d: readyz detail %r" % (n, p))
                failed_at = len(acked)
    finally:
        code = srv.stop()
        if code is None or code < 0:
            fail("N=%d: evlogd ended with %s: %s" % (n, code, srv.log()))
    injected = stat(stats, "failed")
    # restart without the shim: verify, then every acknowledged event is there
    v = evlog("--data", data, "verify")
    if v.returncode != 0:
        fail("N=%d: verify after the fault: %s %s" % (n, v.stdout, v.stderr))
    srv.start()
    try:
        got = set(all_ids(srv))
        missing = [i for i in acked if i not in got]
        if missing:
            fail("N=%d: acknowledged events lost: %r" % (n, missing))
        expect(srv.append("io-a", {"type": "T"}), 201, "append after the restart")
    finally:
        srv.stop()
    return ("failed" if failed_at is not None else "clean"), acked, injected


def test_io_error_sweep():
    tmp = tempfile.mkdtemp(prefix="evlog-ioerr-")
    try:
        for sticky in (False, True):
            counts = {"open": 0, "failed": 0, "clean": 0}
            acked_total = 0
            n = 0
            while True:
                n += 1
                outcome, acked, injected = sweep_one(tmp, n, sticky)
                counts[outcome] += 1
                acked_total += len(acked)
                if injected == 0:
                    break
                if n > 400:
                    fail("the sweep does not end")
            name = "sticky" if sticky else "once"
            FIGURES["evlogd sweep " + name] = ("N = 1..%d: %d runs failed at start, %d with a failed append "
                                               "(503 'could not commit', then readyz 503, each time), %d acknowledged events, "
                                               "all present after restart; reads refused until the restart "
                                               "(LMDB panic after a failed meta write) in %d runs so far"
                                               % (n, counts["open"], counts["failed"], acked_total, READS_REFUSED[0]))
            if counts["failed"] < n // 2:
                fail("the sweep hardly hit an append: %r" % counts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ full disk

SPEC_FILLS = """-- @projection fills
CREATE TABLE fills (n INTEGER PRIMARY KEY, len INTEGER NOT NULL);
-- @on Fill
INSERT INTO fills (n, len) VALUES (:n, length(:pad));
"""
# 500 kB a row, ten times the log's event: it runs out of room before the
# log does (so it surely meets the full disk), and must wait, not fault
SPEC_PADS = """-- @projection pads
CREATE TABLE pads (n INTEGER PRIMARY KEY, pad BLOB NOT NULL);
-- @on Fill
INSERT INTO pads (n, pad) VALUES (:n, zeroblob(500000));
"""


def try_mount(path, size):
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path], capture_output=True)
    return r.returncode == 0


def test_full_disk():
    tmp = tempfile.mkdtemp(prefix="evlog-full-")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    specs = os.path.join(tmp, "specs")
    os.mkdir(specs)
    with open(os.path.join(specs, "fills.sql"), "w") as f:
        f.write(SPEC_FILLS)
    with open(os.path.join(specs, "pads.sql"), "w") as f:
        f.write(SPEC_PADS)
    # EVL_FAULTS_NO_MOUNT=1 takes the fallback even where mount works
    mounted = not os.environ.get("EVL_FAULTS_NO_MOUNT") and try_mount(mnt, "3m")
    FIGURES["full disk"] = "a 3 MiB tmpfs" if mounted else "mount refused: a 4 MiB LMDB map"
    print("full disk: using", FIGURES["full disk"], flush=True)
    args = ["--no-builtin", "--projections", specs]
    if not mounted:
        args += ["--map-size", "4M"]
    data = os.path.join(mnt, "data")
    srv = Server(*args, tmp=tmp, data=data)
    try:
        sub = SSE(srv, "/subscribe?from=1&type=Fill")
        pad = "p" * 50000
        acked, status, n = [], 201, 0
        while status == 201 and n < 500:
            r = srv.append("fill-1", {"type": "Fill", "data": {"pad": pad, "n": n}})
            status = r.status
            if status == 201:
                acked.append(r.json()["events"][0]["id"])
            n += 1
        p = expect_problem(r, 507, "append on a full disk", "insufficient-storage")
        if "nothing of this append was written" not in p["detail"]:
            fail("507 detail %r" % p)
        print("full disk: %d appends of 50 kB acknowledged before 507: %s" % (len(acked), p["detail"]), flush=True)
        FIGURES["full disk appends"] = len(acked)
        # reads, queries and feeds keep working.  They show what LMDB holds:
        # every acknowledged event is durable in the journal, but when the
        # applier's commit met the full disk first, the last ones become
        # readable only once there is room again (checked below)
        readable = all_ids(srv)
        if readable != acked[:len(readable)] or not readable:
            fail("reads on a full disk: %d events, not a prefix of the %d acknowledged" % (len(readable), len(acked)))
        print("full disk: %d of %d acknowledged readable while full" % (len(readable), len(acked)), flush=True)
        page = expect(srv.get("/streams/fill-1?limit=1000"), 200, "stream read").json()
        if len(page["events"]) != len(readable):
            fail("stream read: %d of %d" % (len(page["events"]), len(readable)))
        fed = 0
        for i in range(len(readable)):
            ev = sub.next(timeout=20)
            if ev is None or str(ev["id"]) != str(i + 1):
                fail("feed on a full disk: %r at %d" % (ev and ev["id"], i))
            fed += 1
        q = srv.post("/projections/fills/query", {"sql": "SELECT count(*) FROM fills"})
        expect(q, 200, "query on a full disk")
        st = expect(srv.get("/projections/fills"), 200, "status").json()
        print("full disk: projection fills is %s (%s), %d rows" % (st["state"], st.get("error"),
                                                                  q.json()["rows"][0][0]), flush=True)
        if mounted:
            # the log filled the disk: pads cannot store its rows, and says so without faulting
            wait_for(lambda: "disk full" in (srv.get("/projections/pads").json().get("error") or "")
                     or srv.get("/projections/pads").json()["state"] == "faulted", 20, "pads to hit the full disk")
            st = srv.get("/projections/pads").json()
            print("full disk: projection pads is %s (%s)" % (st["state"], st.get("error")), flush=True)
            if st["state"] == "faulted":
                fail("a full disk faulted the projection: %r" % st)
        again = expect_problem(srv.append("fill-1", {"type": "Fill", "data": {"pad": pad, "n": -1}}), 507,
                               "still full")
        del again
        # free space: a bigger filesystem (or map), then appends go on
        if mounted:
            r = subprocess.run(["mount", "-o", "remount,size=64m", mnt], capture_output=True)
            if r.returncode != 0:
                fail("remount: %s" % r.stderr)
        else:
            srv.stop()
            srv.args = ["--no-builtin", "--projections", specs, "--map-size", "64M"]
            srv.start()
        for i in range(5):
            r = expect(srv.append("fill-1", {"type": "Fill", "data": {"pad": pad, "n": 1000 + i}}), 201,
                       "append after space was freed")
            acked.append(r.json()["events"][0]["id"])
        if all_ids(srv) != acked:
            fail("events lost across the full disk")
        head = len(acked)
        # the feed goes on where it stopped, without a gap (the fallback
        # restarted evlogd, and the feed with it)
        for i in range(fed, head if mounted else fed):
            ev = sub.next(timeout=20)
            if ev is None or str(ev["id"]) != str(i + 1):
                fail("feed after the full disk: %r at %d" % (ev and ev["id"], i))
        # the projection catches up once it can write again
        wait_for(lambda: srv.get("/projections/fills").json()["checkpoint"] == head
                 or srv.get("/projections/fills").json()["state"] == "faulted", 20, "fills to catch up")
        st = srv.get("/projections/fills").json()
        FIGURES["full disk projection"] = "%s at %d of %d (%s)" % (st["state"], st["checkpoint"], head, st["error"])
        print("full disk: after freeing space, fills is", FIGURES["full disk projection"], flush=True)
        if st["state"] == "faulted":
            fail("the projection stays faulted once the disk has space again: %r" % st)
        # pads needed room the disk did not have: it waited (not faulted) and catches up
        wait_for(lambda: srv.get("/projections/pads").json()["checkpoint"] == head
                 or srv.get("/projections/pads").json()["state"] == "faulted", 30, "pads to catch up")
        st = srv.get("/projections/pads").json()
        FIGURES["full disk pads"] = "%s at %d of %d (%s)" % (st["state"], st["checkpoint"], head, st["error"])
        print("full disk: after freeing space, pads is", FIGURES["full disk pads"], flush=True)
        if st["state"] == "faulted" or st["error"]:
            fail("pads did not recover from the full disk: %r" % st)
        n_pads = srv.post("/projections/pads/query", {"sql": "SELECT count(*) FROM pads"}).json()["rows"][0][0]
        if n_pads != head:
            fail("pads holds %d rows of %d" % (n_pads, head))
        sub.close()
    finally:
        if srv.stop() not in (0, None):
            print(srv.log())
            fail("evlogd exit")
        v = evlog("--data", data, "verify")
        if v.returncode != 0:
            fail("verify after the full disk: %s %s" % (v.stdout, v.stderr))
        if mounted:
            subprocess.run(["umount", mnt])
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ projection files

def spec(name):
    return ("-- @projection %s\nCREATE TABLE t (n INTEGER PRIMARY KEY, s TEXT);\n"
            "-- @on P\nINSERT INTO t (n, s) VALUES (:n, :s);\n" % name)


def states(srv):
    return {p["name"]: p for p in expect(srv.get("/projections"), 200, "projections").json()}


def append_some(srv, k, n0):
    for i in range(k):
        expect(srv.append("p-1", {"type": "P", "data": {"n": n0 + i, "s": "x" * 3000}}), 201,
               "appends while projections fault")


def check_faulted(srv, faulted, ok, head, what):
    def settled():
        st = states(srv)
        return all(st[n]["state"] == "faulted" for n in faulted) and \
            all(st[n]["checkpoint"] == head for n in ok)
    wait_for(settled, 20, what)
    st = states(srv)
    for n in faulted:
        if not st[n]["error"]:
            fail("%s: %s faulted without a message: %r" % (what, n, st[n]))
    for n in ok:
        if st[n]["state"] not in ("live", "catching_up"):
            fail("%s: %s is %r" % (what, n, st[n]))
    p = expect_problem(srv.get("/readyz"), 503, what + ": readyz")
    if sorted(p.get("faulted", [])) != sorted(faulted):
        fail("%s: readyz names %r" % (what, p))
    return st


def test_projection_file_faults():
    tmp = tempfile.mkdtemp(prefix="evlog-projfault-")
    specs = os.path.join(tmp, "specs")
    os.mkdir(specs)
    names = ["p_eio", "p_short", "p_ok", "p_ro"]
    for n in names:
        with open(os.path.join(specs, n + ".sql"), "w") as f:
            f.write(spec(n))
    trig_eio, trig_short = os.path.join(tmp, "eio.on"), os.path.join(tmp, "short.on")
    data = os.path.join(tmp, "data")
    srv = Server("--no-builtin", "--projections", specs, tmp=tmp, data=data, start=False)
    try:
        # EIO in one projection's files, short writes in another's: two
        # shims cannot be preloaded with different settings, so the short
        # writes get a second run below
        with shim_env(match="/p_eio.db", fail_when=trig_eio):
            srv.start()
        append_some(srv, 5, 0)
        wait_for(lambda: all(p["checkpoint"] == 5 for p in states(srv).values()), 20, "projections live")
        open(trig_eio, "w").close()
        append_some(srv, 5, 5)
        st = check_faulted(srv, ["p_eio"], ["p_short", "p_ok", "p_ro"], 10, "EIO in p_eio")
        FIGURES["projection EIO"] = st["p_eio"]["error"]
        if "p_eio.db" not in st["p_eio"]["error"] or "failed" not in st["p_eio"]["error"]:
            fail("the EIO fault does not name the file and the failing call: %r" % st["p_eio"]["error"])
        c = evlog("--data", data, "projections")  # beside the running server: from the files
        # the fault cannot be recorded in a file that refuses writes: beside
        # the server, evlog sees p_eio behind the head (the server says why)
        rows = {l.split()[0]: l.split() for l in c.stdout.splitlines()[1:] if l.strip()}
        if c.returncode != 0 or "p_eio" not in rows or rows["p_eio"][1] == "live" or \
                int(rows["p_eio"][2]) >= 10 or rows["p_ok"][2] != "10":
            fail("evlog projections: %r %r" % (c.stdout, c.stderr))
        FIGURES["evlog projections beside the server, p_eio"] = " ".join(rows["p_eio"])
        os.unlink(trig_eio)
        srv.stop()

        with shim_env(match="/p_short.db", fail_when=trig_short, fail_short=1):
            srv.start()
        st = states(srv)
        append_some(srv, 2, 10)
        wait_for(lambda: states(srv)["p_short"]["checkpoint"] == 12, 20, "p_short live again")
        open(trig_short, "w").close()
        append_some(srv, 5, 12)
        # p_eio recovered with its file: it resumed where its checkpoint was
        st = check_faulted(srv, ["p_short"], ["p_eio", "p_ok", "p_ro"], 17, "short writes in p_short")
        FIGURES["projection short writes"] = st["p_short"]["error"]
        os.unlink(trig_short)
        srv.stop()

        # a read-only file: mode 0444, and immutable where chattr works (root
        # ignores the mode)
        ro = os.path.join(data, "projections", "p_ro.db")
        for ext in ("-wal", "-shm"):
            if os.path.exists(ro + ext):
                fail("p_ro left a %s file after a clean stop" % ext)
        os.chmod(ro, 0o444)
        immutable = subprocess.run(["chattr", "+i", ro], capture_output=True).returncode == 0
        RO_FILES.append(ro if immutable else None)
        FIGURES["read-only file"] = "mode 0444" + (" and chattr +i" if immutable else " (chattr refused)")
        srv.start()
        append_some(srv, 2, 17)
        if immutable or os.geteuid() != 0:
            st = check_faulted(srv, ["p_ro"], ["p_eio", "p_short"], 19, "read-only p_ro")
            FIGURES["projection read-only"] = st["p_ro"]["error"]
        else:
            print("read-only file: skipped, root ignores the mode and chattr is refused here", flush=True)
        srv.stop()
        if immutable:
            subprocess.run(["chattr", "-i", ro])
        os.chmod(ro, 0o644)
        RO_FILES.clear()

        # garbage in place of a projection's file
        with open(os.path.join(data, "projections", "p_ok.db"), "r+b") as f:
            f.write(b"this is not an SQLite file" * 200)
        for ext in ("-wal", "-shm"):
            try:
                os.unlink(os.path.join(data, "projections", "p_ok.db" + ext))
            except FileNotFoundError:
                pass
        srv.start()
        append_some(srv, 3, 19)
        st = states(srv)
        print("garbage: p_ok is %s: %s" % (st["p_ok"]["state"], st["p_ok"]["error"]), flush=True)
        FIGURES["projection garbage"] = "%s: %s" % (st["p_ok"]["state"], st["p_ok"]["error"])
        if st["p_ok"]["state"] != "faulted" or not st["p_ok"]["error"]:
            fail("garbage file: %r" % st["p_ok"])

        # the projections directory removed under a running server
        shutil.rmtree(os.path.join(data, "projections"))
        append_some(srv, 3, 22)
        wait_for(lambda: all(p["state"] == "faulted" or p["checkpoint"] == 25 for p in states(srv).values()), 20,
                 "projections to settle after their directory went")
        st = states(srv)
        FIGURES["projection dir removed"] = {n: (st[n]["state"], st[n]["error"]) for n in names}
        print("directory removed:", FIGURES["projection dir removed"], flush=True)
        for n in ("p_eio", "p_short", "p_ro"):
            if st[n]["state"] != "faulted" or "removed or replaced" not in (st[n]["error"] or ""):
                fail("projections directory removed: %s is %r" % (n, st[n]))
        # the log never faults
        expect(srv.append("p-1", {"type": "Other"}), 201, "the log goes on")
        srv.stop()
        v = evlog("--data", data, "verify")
        if v.returncode != 0:
            fail("verify: %s %s" % (v.stdout, v.stderr))
    finally:
        srv.close()
        for f in RO_FILES:
            if f:
                subprocess.run(["chattr", "-i", f])
        shutil.rmtree(tmp, ignore_errors=True)


def print_figures():
    for k, v in FIGURES.items():
        print("figure: %s: %s" % (k, v))


def main():
    import atexit
    atexit.register(print_figures)
    tests = [test_projection_file_faults, test_full_disk, test_io_error_sweep]
    only = os.environ.get("EVL_FAULTS_ONLY")
    run([t for t in tests if not only or t.__name__ == only])


if __name__ == "__main__":
    main()
