#!/usr/bin/python3
"""LMDB readers under many SSE subscribers, and a reader killed mid-read.

1. Baseline: a log is seeded, evlogd restarted (its feed ring empty), and a
   fixed append workload (single events from 4 threads, one commit each)
   runs; data.mdb's growth is measured.
2. The same on a fresh data dir, with 500 subscribers catching up from
   position 1 while the workload runs: every subscriber receives every
   event in order, nothing fails (no MDB_READERS_FULL), the LMDB reader
   slots in use stay few (sampled from /metrics: no read transaction per
   subscriber, none held across a wait), and data.mdb grows no more than in
   the baseline (a held snapshot would keep freed pages from being reused).
3. A reader process (`evlog tail --from 1`, its stdout not read, so it blocks inside
   its read transaction) pins a snapshot; the same workload shows the
   growth a held reader causes.  It is killed with SIGKILL: its slot stays
   behind (mdb_stat -r lists the dead pid) until evlogd's writer clears it,
   which /metrics counts.
"""
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crashlib import EVLOG, scaled  # noqa: E402
from evlsrv import Server, expect, fail, run, wait_for  # noqa: E402

SUBSCRIBERS = 500
SEED = scaled(2000, 600)
WORK = scaled(1200, 400)
ID_RE = re.compile(rb"(?m)^id: (\d+)$")
TMP = tempfile.mkdtemp(prefix="evlog-readers-")
FIGURES = {}


def mdb_size(srv):
    return os.path.getsize(os.path.join(srv.data, "log", "data.mdb"))


def seed(srv):
    c = srv.conn(timeout=60)
    for b in range(SEED // 100):
        expect(srv.request("POST", "/streams/seed-%d" % b, [{"type": "Seed", "data": {"b": b, "i": i}}
                                                            for i in range(100)], conn=c), 201, "seed")
    c.close()
    srv.stop()
    srv.start()


def workload(srv, tag):
    """WORK single-event appends from 4 threads: one commit each, mostly."""
    errors = []

    def go(k):
        c = srv.conn()
        for i in range(WORK // 4):
            r = srv.request("POST", "/streams/%s-%d" % (tag, k), {"type": "Work", "data": {"k": k, "i": i}}, conn=c)
            if r.status != 201:
                errors.append(r)
                return
        c.close()
    ts = [threading.Thread(target=go, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    if errors:
        fail("workload: %r" % errors[:3])


class Subscriber:
    def __init__(self, srv):
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        self.sock.sendall(b"GET /subscribe?from=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        self.sock.setblocking(False)
        self.raw = bytearray()
        self.text = bytearray()
        self.head_done = False
        self.last = 0
        self.closed = False

    def feed(self, data):
        self.raw += data
        if not self.head_done:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(self.raw[:i])
            if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
                fail("subscriber answered %r" % head[:200])
            del self.raw[:i + 4]
            self.head_done = True
        pos = 0
        while True:  # de-chunk
            j = self.raw.find(b"\r\n", pos)
            if j < 0:
                break
            n = int(bytes(self.raw[pos:j]).split(b";")[0], 16)
            if n == 0:
                self.closed = True
                break
            if len(self.raw) < j + 2 + n + 2:
                break
            self.text += self.raw[j + 2:j + 2 + n]
            pos = j + 2 + n + 2
        del self.raw[:pos]
        cut = self.text.rfind(b"\n\n")
        if cut < 0:
            return
        block = bytes(self.text[:cut + 2])
        del self.text[:cut + 2]
        nums = [int(x) for x in ID_RE.findall(block)]
        if nums:
            if nums != list(range(self.last + 1, self.last + 1 + len(nums))):
                fail("subscriber: ids %r... after %d" % (nums[:5], self.last))
            self.last = nums[-1]


class Reader(threading.Thread):
    """Reads every subscriber until each has seen `target` (set later)."""

    def __init__(self, subs):
        super().__init__(daemon=True)
        self.subs, self.target, self.error = subs, None, None
        self.sel = selectors.DefaultSelector()
        for s in subs:
            self.sel.register(s.sock, selectors.EVENT_READ, s)

    def run(self):
        try:
            while True:
                if self.target is not None and all(s.last >= self.target for s in self.subs):
                    return
                for key, _ in self.sel.select(1.0):
                    s = key.data
                    try:
                        data = s.sock.recv(262144)
                    except BlockingIOError:
                        continue
                    if not data:
                        raise AssertionError("a subscriber's connection closed at %d" % s.last)
                    s.feed(data)
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.error = e


def test_baseline():
    srv = Server("--no-builtin", "--sync", "none", tmp=TMP, data=os.path.join(TMP, "base"))
    try:
        seed(srv)
        s0 = mdb_size(srv)
        workload(srv, "w")
        srv.stop()
        FIGURES["baseline_growth"] = mdb_size(srv) - s0
    finally:
        srv.close()


def test_500_subscribers_catching_up():
    srv = Server("--no-builtin", "--sync", "none", tmp=TMP, data=os.path.join(TMP, "subs"))
    srv.up = True
    try:
        seed(srv)
        s0 = mdb_size(srv)
        subs = [Subscriber(srv) for _ in range(SUBSCRIBERS)]
        reader = Reader(subs)
        reader.start()
        peak = [0]
        halt = threading.Event()

        def sample():
            while not halt.is_set():
                v = srv.metric("evlog_log_readers")
                peak[0] = max(peak[0], int(v or 0))
                halt.wait(0.02)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        workload(srv, "w")
        head = srv.get("/events?limit=1").json()["head"]
        reader.target = head
        reader.join(300)
        halt.set()
        sampler.join(10)
        if reader.error:
            raise reader.error
        if reader.is_alive():
            fail("subscribers did not all reach %d: lowest %d" % (head, min(s.last for s in subs)))
        dt = time.monotonic() - t0
        log = srv.log()
        if "READERS_FULL" in log or "fault" in log:
            fail("evlogd log: %s" % log[-2000:])
        for s in subs:
            s.sock.close()
        srv.stop()
        growth = mdb_size(srv) - s0
        FIGURES.update(subs_growth=growth, peak_readers=peak[0], subs_seconds=round(dt, 1), head=head)
        print("     %d subscribers x %d events each in %.1fs; reader slots in use at most %d; data.mdb grew "
              "%d KiB (without subscribers: %d KiB)" % (SUBSCRIBERS, head, dt, peak[0], growth // 1024,
                                                       FIGURES["baseline_growth"] // 1024), flush=True)
        if peak[0] > 32:
            fail("%d LMDB reader slots in use with %d subscribers" % (peak[0], SUBSCRIBERS))
        if growth > 2 * FIGURES["baseline_growth"] + (2 << 20):
            fail("data.mdb grew %d bytes with subscribers, %d without" % (growth, FIGURES["baseline_growth"]))
    finally:
        srv.close()


def slots(srv):
    """pids of the LMDB reader table's slots (mdb_stat -r; it clears nothing)."""
    p = subprocess.run(["mdb_stat", "-r", os.path.join(srv.data, "log")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    if "Reader Table Status" not in p.stdout:  # (its exit status is 1 even then)
        fail("mdb_stat -r: %d %s %s" % (p.returncode, p.stdout, p.stderr))
    return [int(line.split()[0]) for line in p.stdout.splitlines() if re.match(r"\s*\d+\s+\S+\s+\S+", line)]


def test_reader_killed_mid_read():
    srv = Server("--no-builtin", "--sync", "none", tmp=TMP, data=os.path.join(TMP, "stale"))
    reader = None
    try:
        seed(srv)
        # a reader that blocks inside its read transaction: nobody reads its stdout
        reader = subprocess.Popen([EVLOG, "--data", srv.data, "tail", "--from", "1"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        wait_for(lambda: reader.pid in slots(srv), 20, "the reader's slot")
        s0 = mdb_size(srv)
        workload(srv, "p")
        pinned = mdb_size(srv) - s0
        reader.send_signal(signal.SIGKILL)
        reader.wait(10)
        reader.stdout.close()
        if reader.pid not in slots(srv):
            fail("the killed reader left no slot: nothing to test")
        cleared0 = srv.metric("evlog_log_stale_readers_cleared_total")
        # the writer clears it before a commit, at most a second after the last check
        wait_for(lambda: srv.append("poke-1", {"type": "Poke"}).status == 201 and reader.pid not in slots(srv),
                 10, "the dead reader's slot to be cleared")
        cleared = srv.metric("evlog_log_stale_readers_cleared_total")
        if not cleared or cleared < (cleared0 or 0) + 1:
            fail("stale readers cleared: %r then %r" % (cleared0, cleared))
        # and the space the snapshot pinned is reused again
        s1 = mdb_size(srv)
        workload(srv, "q")
        after = mdb_size(srv) - s1
        FIGURES.update(pinned_growth=pinned, after_clear_growth=after)
        print("     a reader holding one snapshot: data.mdb grew %d KiB for the same workload; killed -9, its "
              "slot cleared by evlogd; then %d KiB" % (pinned // 1024, after // 1024), flush=True)
        if after > 2 * FIGURES["baseline_growth"] + (2 << 20):
            fail("data.mdb still grows after the stale slot was cleared: %d" % after)
        srv.stop()
        p = subprocess.run([EVLOG, "--data", srv.data, "verify"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=120)
        if p.returncode != 0:
            fail("verify: %s %s" % (p.stdout, p.stderr))
    finally:
        if reader and reader.poll() is None:
            reader.kill()
            reader.wait()
        srv.close()


def main():
    try:
        run([test_baseline, test_500_subscribers_catching_up, test_reader_killed_mid_read])
    finally:
        print("     FIGURES %r" % FIGURES, flush=True)
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
