#!/usr/bin/python3
"""Soak test (issue 7): mixed load against one evlogd for a while, RSS
recorded every 10 s.  Not part of ctest (it runs for minutes):

    tests/soak/soak.py [--seconds 600] [--subscribers 200] [--rate 100]
                       [--bin BUILD_DIR] [--out figures.json]

Load, all at once:
- appenders: single events and batches to their own streams with the
  expected revision they know, plus a deliberately stale expected revision
  now and then (each must be a 409 naming the right current revision);
- readers: stream pages and filtered /events pages;
- queriers: the soak projection with min_position = their last append
  (read your own writes), plus the built-in projections;
- SSE subscribers (default 200): four categories, half from position 1
  (catch-up, then live), half from `now`;
- a rebuild of the soak projection every 2 minutes (a new spec hash each
  time is not needed: POST /projections/soak/rebuild rebuilds from 1).

Pass: RSS flat after the warm-up: the server's own memory (RssAnon) has a
least-squares slope over the last 80 % of the samples that projects less
than 8 MiB of growth over that window, and its last third's mean is within
8 MiB of the middle third's.  (VmRSS also counts RssFile, the LMDB pages
touched, which follows the size of the log; it is recorded, not judged); no error
responses except the deliberate 409s; every subscriber saw every event of
its category after its start, in order, with nothing extra; `evlog verify`
passes.  Prints the figures and (--out) writes them as JSON."""
import argparse
import http.client
import json
import os
import random
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))

SPEC = """-- @projection soak
CREATE TABLE items (stream TEXT PRIMARY KEY, n INTEGER NOT NULL, last INTEGER, pos INTEGER);
-- @on Item
INSERT INTO items (stream, n, last, pos) VALUES (@stream, 1, :i, @position)
  ON CONFLICT(stream) DO UPDATE SET n = n + 1, last = :i, pos = @position;
"""
GROUPS = 4


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.codes = {}
        self.errors = []
        self.conflicts_wanted = 0
        self.conflicts_right = 0
        self.appended = 0

    def count(self, what, status, body=b""):
        with self.lock:
            self.codes[(what, status)] = self.codes.get((what, status), 0) + 1
            if status >= 400 and len(self.errors) < 50:
                self.errors.append("%s %d %r" % (what, status, body[:200]))


class Client:
    def __init__(self, port):
        self.port = port
        self.c = None

    def req(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                h = dict(headers or {})
                if body is not None and not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                    h["Content-Type"] = "application/json"
                self.c.request(method, path, body=body, headers=h)
                r = self.c.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.c.close()
                    self.c = None
                return r.status, data
            except (ConnectionError, http.client.HTTPException, socket.timeout):
                # a keep-alive connection the server closed while idle: once more
                self.c.close()
                self.c = None
                if attempt:
                    raise
        return None


def appender(port, idx, stop, st, acked):
    cl = Client(port)
    rnd = random.Random(idx)
    revs = {}
    g = idx % GROUPS
    while not stop.is_set():
        stream = "soak%d-%d-%d" % (g, idx, rnd.randrange(20))
        rev = revs.get(stream)
        n = 1 if rnd.random() < 0.7 else rnd.randrange(2, 6)
        evs = [{"type": "Item", "data": {"i": rnd.randrange(1 << 30), "pad": "x" * rnd.randrange(200)},
                "meta": {"actor": "soak-%d" % idx}} for _ in range(n)]
        if rev is not None and rnd.random() < 0.05:
            # deliberately stale: must be a 409 naming the current revision
            stale = str(rev - 1) if rev > 0 else "no_stream"
            s, body = cl.req("POST", "/streams/" + stream, evs, {"Expected-Revision": stale})
            st.count("append-stale", s, body)
            with st.lock:
                st.conflicts_wanted += 1
                if s == 409 and json.loads(body).get("current_revision") == rev:
                    st.conflicts_right += 1
            continue
        hdr = {"Expected-Revision": "no_stream" if rev is None else str(rev)}
        s, body = cl.req("POST", "/streams/" + stream, evs, hdr)
        st.count("append", s, body)
        if s == 201:
            ack = json.loads(body)["events"]
            revs[stream] = ack[-1]["revision"]
            with st.lock:
                st.appended += len(ack)
            acked[idx] = ack[-1]["position"]
        stop.wait(rnd.random() * 2 * n / RATE_PER_APPENDER)


def reader(port, idx, stop, st):
    cl = Client(port)
    rnd = random.Random(1000 + idx)
    while not stop.is_set():
        g = rnd.randrange(GROUPS)
        if rnd.random() < 0.5:
            s, body = cl.req("GET", "/events?category=soak%d&from=%d&limit=200" % (g, rnd.randrange(1, 5000)))
            st.count("read-events", s, body)
        else:
            stream = "soak%d-%d-%d" % (g, g + GROUPS * rnd.randrange(2), rnd.randrange(20))
            s, body = cl.req("GET", "/streams/%s?from=0&limit=50" % stream)
            if s != 404:  # a stream nobody appended to yet
                st.count("read-stream", s, body)
        stop.wait(0.02)


def querier(port, idx, stop, st, acked):
    cl = Client(port)
    rnd = random.Random(2000 + idx)
    while not stop.is_set():
        pos = max(acked.values() or [0])
        if rnd.random() < 0.7:
            s, body = cl.req("POST", "/projections/soak/query",
                             {"sql": "SELECT count(*), sum(n), max(pos) FROM items WHERE stream LIKE :p",
                              "params": {"p": "soak%d-%%" % rnd.randrange(GROUPS)},
                              "min_position": pos, "timeout_ms": 30000})
            st.count("query-soak", s, body)
            if s == 200 and json.loads(body)["position"] < pos:
                st.count("query-stale", 599, body)  # read-your-writes broken: an error
        else:
            s, body = cl.req("POST", "/projections/jobs/query", {"sql": "SELECT count(*) FROM jobs"})
            st.count("query-jobs", s, body)
        stop.wait(0.05)


class Sub:
    """One SSE subscriber on a non-blocking socket."""

    def __init__(self, port, group, from_now):
        self.group = group
        self.sock = socket.create_connection(("127.0.0.1", port))
        path = "/subscribe?category=soak%d&from=%s" % (group, "now" if from_now else "1")
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n" % path).encode())
        self.sock.setblocking(False)
        self.raw = b""
        self.text = b""
        self.head = False
        self.after = None   # the position the feed starts after
        self.ids = []
        self.bad = None
        self.closed = False

    def feed(self, data):
        self.raw += data
        if not self.head:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return
            if not self.raw.startswith(b"HTTP/1.1 200"):
                self.bad = "status %r" % self.raw[:40]
            self.raw = self.raw[i + 4:]
            self.head = True
        while True:  # de-chunk
            i = self.raw.find(b"\r\n")
            if i < 0:
                break
            n = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + n + 2:
                break
            self.text += self.raw[i + 2:i + 2 + n]
            self.raw = self.raw[i + 2 + n + 2:]
            if n == 0:
                self.closed = True
        while True:
            j = self.text.find(b"\n\n")
            if j < 0:
                break
            frame, self.text = self.text[:j], self.text[j + 2:]
            for line in frame.split(b"\n"):
                if line.startswith(b"id: "):
                    p = int(line[4:])
                    if self.ids and p <= self.ids[-1]:
                        self.bad = "out of order: %d after %d" % (p, self.ids[-1])
                    self.ids.append(p)
                elif line.startswith(b": evlog feed after position ") and self.after is None:
                    self.after = int(re.match(rb": evlog feed after position (\d+)", line).group(1))


def sse_loop(subs, stop):
    sel = selectors.DefaultSelector()
    for s in subs:
        sel.register(s.sock, selectors.EVENT_READ, s)
    while not stop.is_set():
        for key, _ in sel.select(0.2):
            s = key.data
            try:
                data = s.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionError as e:
                data = b""
                s.bad = s.bad or "reset: %s" % e
            if not data:
                s.closed = True
                s.bad = s.bad or "closed by the server"
                sel.unregister(s.sock)
                continue
            s.feed(data)


def rss(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def category_positions(port, g, head):
    cl = Client(port)
    out, frm = [], 1
    while True:
        s, body = cl.req("GET", "/events?category=soak%d&from=%d&limit=10000" % (g, frm))
        if s != 200:
            raise RuntimeError("listing soak%d: %d %r" % (g, s, body[:200]))
        page = json.loads(body)
        out += [e["position"] for e in page["events"] if e["position"] <= head]
        if not page["events"] or page.get("next_from") is None or page["events"][-1]["position"] >= head:
            return out
        frm = page["next_from"]


def slope_kib_per_min(samples):
    """Least-squares slope of (t seconds, rss KiB)."""
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 60 * sum((t - mt) * (r - mr) for t, r in samples) / den if den else 0.0


RATE_PER_APPENDER = 25.0


def main():
    global RATE_PER_APPENDER
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--appenders", type=int, default=4)
    ap.add_argument("--rate", type=float, default=100.0, help="events per second, all appenders together")
    ap.add_argument("--rebuild-every", type=int, default=120)
    ap.add_argument("--sample-every", type=int, default=10)
    ap.add_argument("--bin", default=os.environ.get("EVL_BIN_DIR", os.path.join(HERE, "..", "..", "build")))
    ap.add_argument("--out")
    a = ap.parse_args()
    RATE_PER_APPENDER = a.rate / a.appenders
    tmp = tempfile.mkdtemp(prefix="evlog-soak-")
    specs = os.path.join(tmp, "specs")
    os.makedirs(specs)
    with open(os.path.join(specs, "soak.sql"), "w") as f:
        f.write(SPEC)
    data = os.path.join(tmp, "data")
    errlog = open(os.path.join(tmp, "evlogd.err"), "w")
    proc = subprocess.Popen([os.path.join(a.bin, "evlogd"), "--data", data, "--listen", "127.0.0.1:0",
                             "--projections", specs, "--threads", "2", "--sync", "full"],
                            stderr=errlog, stdout=subprocess.DEVNULL)
    port = None
    deadline = time.monotonic() + 20
    while port is None and time.monotonic() < deadline:
        with open(errlog.name) as f:
            m = re.search(r"listening on http://\S+:(\d+) ", f.read())
        if m:
            port = int(m.group(1))
        elif proc.poll() is not None:
            sys.exit("evlogd exited: " + open(errlog.name).read())
        else:
            time.sleep(0.05)
    ok = True
    figures = {"seconds": a.seconds, "subscribers": a.subscribers, "appenders": a.appenders, "rate": a.rate}
    try:
        st = Stats()
        stop = threading.Event()
        acked = {}
        subs = [Sub(port, i % GROUPS, i % 2 == 1) for i in range(a.subscribers)]
        threads = [threading.Thread(target=sse_loop, args=(subs, stop), daemon=True)]
        threads += [threading.Thread(target=appender, args=(port, i, stop, st, acked), daemon=True)
                    for i in range(a.appenders)]
        threads += [threading.Thread(target=reader, args=(port, i, stop, st), daemon=True) for i in range(2)]
        threads += [threading.Thread(target=querier, args=(port, i, stop, st, acked), daemon=True)
                    for i in range(2)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        samples, rebuilds = [], 0
        admin = Client(port)
        next_rebuild = a.rebuild_every
        while True:
            el = time.monotonic() - t0
            r = rss(proc.pid)
            samples.append((round(el), r["VmRSS"], r.get("RssAnon", 0), r.get("RssFile", 0)))
            print("t=%4ds  RSS %7d KiB (anon %7d, file %7d)  appended %d" %
                  (el, r["VmRSS"], r.get("RssAnon", 0), r.get("RssFile", 0), st.appended), flush=True)
            if el >= a.seconds:
                break
            if el >= next_rebuild:
                s, body = admin.req("POST", "/projections/soak/rebuild")
                st.count("rebuild", s, body)
                rebuilds += 1
                next_rebuild += a.rebuild_every
            stop.wait(min(a.sample_every, max(0.1, a.seconds - el)))
        # stop the load, then let every subscriber catch up to the head
        stop_load = [t for t in threads[1:]]
        stop.set()
        for t in stop_load:
            t.join(60)
        head = json.loads(admin.req("GET", "/events?limit=1")[1])["head"]
        expected = {g: category_positions(port, g, head) for g in range(GROUPS)}
        stop2 = threading.Event()
        t_sse = threading.Thread(target=sse_loop, args=(subs, stop2), daemon=True)
        threads[0].join(5)
        t_sse.start()
        want_last = {g: (expected[g][-1] if expected[g] else 0) for g in range(GROUPS)}
        end = time.monotonic() + 120
        while time.monotonic() < end and not all(
                s.bad or (s.ids and s.ids[-1] >= want_last[s.group]) or not expected[s.group] for s in subs):
            time.sleep(0.2)
        stop2.set()
        t_sse.join(5)
        incomplete = []
        for i, s in enumerate(subs):
            want = [p for p in expected[s.group] if p > (s.after or 0)]
            if s.bad or s.ids != want:
                incomplete.append("subscriber %d (soak%d, after %s): %s; got %d events, want %d" %
                                  (i, s.group, s.after, s.bad, len(s.ids), len(want)))
            s.sock.close()
        delivered = sum(len(s.ids) for s in subs)
        errors = {"%s %d" % k: v for k, v in st.codes.items() if k[1] >= 400 and k != ("append-stale", 409)}
        # RSS trend after the warm-up (the first 20 % of the run)
        # judged on RssAnon, the server's own memory; RssFile is the pages of
        # the LMDB map it has touched, which follow the size of a growing
        # log (clean, shared, reclaimable page cache) and are reported apart
        warm = [(t, anon) for t, _, anon, _ in samples if t >= a.seconds * 0.2]
        slope = slope_kib_per_min(warm) if len(warm) >= 3 else 0.0
        window_min = (warm[-1][0] - warm[0][0]) / 60 if len(warm) >= 2 else 0
        third = max(1, len(warm) // 3)
        mid = sum(r for _, r in warm[third:2 * third]) / max(1, len(warm[third:2 * third]))
        last = sum(r for _, r in warm[-third:]) / third
        figures.update(samples=samples, rebuilds=rebuilds, appended=st.appended, head=head,
                       codes={"%s %d" % k: v for k, v in sorted(st.codes.items())},
                       conflicts_wanted=st.conflicts_wanted, conflicts_right=st.conflicts_right,
                       sse_delivered=delivered, incomplete_subscribers=len(incomplete),
                       rss_slope_kib_per_min=round(slope, 1), rss_mid_mean=round(mid), rss_last_mean=round(last))
        print("\nsoak: %d s, %d appenders (%.0f ev/s asked), %d events appended (head %d), %d rebuilds" %
              (a.seconds, a.appenders, a.rate, st.appended, head, rebuilds))
        print("soak: responses: %s" % ", ".join("%s: %d" % (k, v) for k, v in sorted(figures["codes"].items())))
        print("soak: deliberate conflicts %d, answered 409 with the right revision %d" %
              (st.conflicts_wanted, st.conflicts_right))
        print("soak: %d subscribers, %d events delivered, %d incomplete" % (len(subs), delivered, len(incomplete)))
        file_growth = samples[-1][3] - samples[0][3]
        figures["rss_file_growth_kib"] = file_growth
        print("soak: RssAnon after warm-up: slope %+.1f KiB/min over %.1f min; middle third %.0f KiB, last third "
              "%.0f KiB; RssFile (log pages) %+d KiB over the run" % (slope, window_min, mid, last, file_growth))
        if errors:
            ok = False
            print("FAIL: error responses: %r\n  %s" % (errors, "\n  ".join(st.errors[:10])))
        if st.conflicts_right != st.conflicts_wanted:
            ok = False
            print("FAIL: %d deliberate conflicts, %d answered right" % (st.conflicts_wanted, st.conflicts_right))
        if incomplete:
            ok = False
            print("FAIL: subscribers:\n  " + "\n  ".join(incomplete[:10]))
        if slope * window_min > 8192 or last - mid > 8192:
            ok = False
            print("FAIL: RSS grows")
        proc.terminate()
        proc.wait(30)
        v = subprocess.run([os.path.join(a.bin, "evlog"), "--data", data, "verify"], capture_output=True, text=True)
        print("soak: evlog verify: %s" % (v.stdout.strip().splitlines() or [v.stderr.strip()])[0])
        figures["verify"] = v.returncode == 0
        if v.returncode != 0:
            ok = False
            print("FAIL: verify: %s %s" % (v.stdout, v.stderr))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        figures["pass"] = ok
        if a.out:
            with open(a.out, "w") as f:
                json.dump(figures, f, indent=1)
        shutil.rmtree(tmp, ignore_errors=True)
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
