#!/usr/bin/python3
"""clients/python/evlog_client.py against a real evlogd: appends (one, many,
batches, idempotent repeats), Conflict with the current revision, reads and
paging, the filtered log, queries with read-your-writes, projections, tokens,
msgpack, and subscribe(): catch-up then live, resuming with Last-Event-ID
after the connection is cut by a proxy, after evlogd is killed (-9) and
restarted on the same port, and after a graceful stop — no gap, no
duplicate."""
import contextlib
import io
import itertools
import os
import re
import socket
import sys
import types
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
from evlsrv import Server, fail, run, wait_for  # noqa: E402
import evlog_client as ec  # noqa: E402

S = None


def client(**kw):
    return ec.Client("http://127.0.0.1:%d" % S.port, **kw)


def test_append_and_conflict():
    c = client()
    a = c.append("order-1", {"type": "OrderPlaced", "data": {"n": 1}}, expected_revision=ec.NO_STREAM)
    if a.revision != 0 or a.position < 1 or len(a.events) != 1 or a.idempotent:
        fail("first append %r %r" % (a, a.events))
    b = c.append("order-1", [{"type": "ItemAdded", "data": {"i": i}} for i in range(3)], expected_revision=0,
                 meta={"actor": "alice"})
    if [e["revision"] for e in b.events] != [1, 2, 3] or b.position != a.position + 3:
        fail("batch append %r" % b.events)
    try:
        c.append("order-1", {"type": "ItemAdded"}, expected_revision=1)
        fail("a stale expected revision was accepted")
    except ec.Conflict as e:
        if e.status != 409 or e.current_revision != 3 or e.expected_revision != 1 or e.stream != "order-1":
            fail("conflict %r %r" % (e, e.problem))
    try:
        c.append("order-2", {"type": "ItemAdded"}, expected_revision=ec.EXISTS)
        fail("exists on a missing stream")
    except ec.Conflict as e:
        if e.current_revision != "no_stream":
            fail("conflict on a missing stream %r" % e.problem)
    try:
        c.append("order-1", {"type": "OrderPlaced"}, expected_revision=ec.NO_STREAM)
        fail("no_stream on an existing stream")
    except ec.Conflict as e:
        if e.current_revision != 3:
            fail("no_stream conflict %r" % e.problem)
    # the same ids again: the original positions, nothing written
    evs = [{"type": "ItemRemoved", "id": ec.uuid7(), "data": {"i": 0}}]
    first = c.append("order-1", evs, expected_revision=3)
    again = c.append("order-1", evs, expected_revision=3)
    if not again.idempotent or again.position != first.position:
        fail("idempotent repeat %r vs %r" % (again, first))
    if c.head() != first.position:
        fail("head %d after an idempotent repeat, want %d" % (c.head(), first.position))
    # meta reached the events
    if c.read("order-1")[1]["meta"].get("actor") != "alice":
        fail("meta not stored: %r" % c.read("order-1")[1])
    # a multi-stream batch, all or nothing
    m = c.append_batch([("pay-1", {"type": "PaymentTaken"}, ec.NO_STREAM),
                        ("order-1", {"type": "OrderPaid"}, 4)])
    if [e["stream"] for e in m.events] != ["pay-1", "order-1"]:
        fail("batch %r" % m.events)
    try:
        c.append_batch([("pay-2", {"type": "PaymentTaken"}, ec.NO_STREAM), ("order-1", {"type": "X"}, 0)])
        fail("batch conflict accepted")
    except ec.Conflict as e:
        if e.stream != "order-1" or e.current_revision != 5:
            fail("batch conflict %r" % e.problem)
    if c.read("pay-2"):
        fail("a batch that conflicted wrote pay-2")
    try:
        c.append("order-1", {"data": {}})
        fail("an event without a type")
    except ValueError:
        pass
    try:
        c.append("s" * 300, {"type": "X"})
        fail("a stream name of 300 bytes")
    except ec.Error as e:
        if e.status != 400 or e.type != "invalid-event":
            fail("bad stream %r" % e)


def test_reads():
    c = client()
    for i in range(7):
        c.append("page-1", {"type": "Paged", "data": {"i": i}})
    evs = c.read("page-1", page_size=2)
    if [e["data"]["i"] for e in evs] != list(range(7)) or [e["revision"] for e in evs] != list(range(7)):
        fail("read with paging %r" % evs)
    if any(e["subject"] != "page-1" or e["type"] != "Paged" for e in evs):
        fail("event shape %r" % evs[0])
    back = c.read("page-1", backward=True, page_size=3)
    if [e["data"]["i"] for e in back] != list(range(6, -1, -1)):
        fail("backward %r" % [e["data"] for e in back])
    if [e["revision"] for e in c.read("page-1", from_revision=2, until=4)] != [2, 3, 4]:
        fail("from/until")
    if c.read("never-written") != []:
        fail("a missing stream is not empty")
    gen = c.events(type="Paged", page_size=3)
    if next(gen)["data"]["i"] != 0:
        fail("events() first")
    if [e["data"]["i"] for e in gen] != list(range(1, 7)):
        fail("events() lazily over pages")
    cat = list(c.events(category="page"))
    if len(cat) != 7:
        fail("category filter %d" % len(cat))
    one = c.event(evs[3]["position"])
    if one["data"]["i"] != 3:
        fail("event(position) %r" % one)
    try:
        c.event(10 ** 9)
        fail("event beyond the head")
    except ec.NotFound:
        pass


def test_queries():
    c = client()
    a = c.append("job-q1", {"type": "JobQueued", "data": {"id": "q1", "model": "gpt2", "quantize": "auto"}},
                 expected_revision=ec.NO_STREAM)
    r = c.query("jobs", "SELECT id, model, status FROM jobs WHERE id = :id", {"id": "q1"},
                min_position=a.position)
    if r.columns != ["id", "model", "status"] or r.rows != [["q1", "gpt2", "queued"]]:
        fail("query %r %r" % (r.columns, r.rows))
    if r.position < a.position or r.truncated or r.dicts() != [{"id": "q1", "model": "gpt2", "status": "queued"}]:
        fail("query answer %r" % r.dicts())
    r = c.query("jobs", "SELECT count(*) FROM jobs WHERE id = ? AND model = ?", ["q1", "gpt2"])
    if list(r) != [[1]]:
        fail("positional params %r" % r.rows)
    try:
        c.query("jobs", "DELETE FROM jobs")
        fail("a write was accepted")
    except ec.Error as e:
        if e.status != 400 or e.type != "bad-sql":
            fail("write %r" % e)
    try:
        c.query("jobs", "SELECT 1", min_position=c.head() + 1000, timeout_ms=100)
        fail("min_position beyond the head answered")
    except ec.QueryTimeout:
        pass
    try:
        c.query("nope", "SELECT 1")
        fail("an unknown projection")
    except ec.NotFound:
        pass
    names = {p["name"] for p in c.projections()}
    if "jobs" not in names or "tasks" not in names:
        fail("projections %r" % names)
    p = c.projection("jobs")
    if p["name"] != "jobs" or p["state"] not in ("live", "catching_up") or "checkpoint" not in p:
        fail("projection %r" % p)
    if not c.ready():
        fail("not ready")


def test_msgpack():
    if ec.msgpack is None:
        fail("python3-msgpack is not installed (scripts/deps.sh installs it)")
    c = client(use_msgpack=True)
    a = c.append("blob-1", {"type": "Blob", "data": {"raw": b"\x00\xff\x01", "n": 5}})
    evs = c.read("blob-1")
    if evs[0]["data"] != {"raw": b"\x00\xff\x01", "n": 5} or evs[0]["position"] != a.position:
        fail("msgpack round trip %r" % evs)
    r = c.query("jobs", "SELECT 1 AS one")
    if r.rows != [[1]]:
        fail("msgpack query %r" % r.rows)


def test_tokens():
    tmp = tempfile.mkdtemp(prefix="evlog-cpy-tok-")
    tf = os.path.join(tmp, "tokens")
    with open(tf, "w") as f:
        f.write("rd-secret reader\nwr-secret writer\n")
    srv = Server("--token-file", tf, tmp=tmp)
    try:
        url = "http://127.0.0.1:%d" % srv.port
        try:
            ec.Client(url).head()
            fail("no token read")
        except ec.Unauthorized:
            pass
        try:
            ec.Client(url, token="rd-secret").append("t-1", {"type": "T"})
            fail("reader appended")
        except ec.Forbidden:
            pass
        w = ec.Client(url, token="wr-secret")
        a = w.append("t-1", {"type": "T", "data": {"k": 1}})
        sub = ec.Client(url, token="rd-secret").subscribe(from_position=1, reconnect=False)
        ev = next(sub)
        sub.close()
        if ev["position"] != a.position:
            fail("subscribe with a token %r" % ev)
        try:
            next(ec.Client(url).subscribe())
            fail("subscribe without a token")
        except ec.Unauthorized:
            pass
    finally:
        srv.close()


class Proxy:
    """A TCP relay to evlogd whose connections can be cut at will."""

    def __init__(self, port):
        self.up = port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.socks, self.accepted = [], 0
        self.mu = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.up))
            with self.mu:
                self.socks += [a, b]
                self.accepted += 1
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self.pump, args=(x, y), daemon=True).start()

    @staticmethod
    def pump(src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def wait_accepted(self, n, what):
        wait_for(lambda: self.accepted >= n, 20, "%s (%d connections accepted)" % (what, n))

    def cut(self):
        with self.mu:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.lsock.close()
        self.cut()


class Follower(threading.Thread):
    """Runs subscribe() in a thread and collects what it yields."""

    def __init__(self, url, **kw):
        super().__init__(daemon=True)
        self.gen = ec.Client(url).subscribe(retry_delay=0.05, **kw)
        self.got, self.halt, self.error = [], threading.Event(), None

    def run(self):
        try:
            for ev in self.gen:
                self.got.append(ev)
                if self.halt.is_set():
                    break
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.error = e

    def wait(self, n, what):
        wait_for(lambda: len(self.got) >= n or self.error, 30, what)
        if self.error:
            fail("%s: subscribe raised %r" % (what, self.error))


def check_feed(got, first, last, stream=None):
    pos = [e["position"] for e in got]
    if pos != list(range(first, last + 1)):
        dup = len(pos) - len(set(pos))
        fail("feed positions %d..%d with %d duplicates, want %d..%d; %r" %
             (pos[0], pos[-1], dup, first, last, pos[:50]))
    if stream and any(e["subject"] != stream for e in got):
        fail("foreign stream in the feed")


def test_subscribe_resumes_after_cut():
    c = client()
    start = c.head() + 1
    for i in range(50):
        c.append("feed-1", {"type": "Fed", "data": {"i": i}})
    px = Proxy(S.port)
    f = Follower("http://127.0.0.1:%d" % px.port, from_position=start, stream="feed-1")
    f.start()
    f.wait(50, "catch-up")
    for round_ in range(3):
        px.cut()  # mid-feed: the client sees a reset or an EOF
        for i in range(20):
            c.append("feed-1", {"type": "Fed", "data": {"r": round_, "i": i}})
        f.wait(50 + 20 * (round_ + 1), "live events after cut %d" % round_)
    # cut while appends go on, from another thread
    stop = threading.Event()

    def appender():
        c2 = client()
        while not stop.is_set():
            c2.append("feed-1", {"type": "Fed", "data": {"k": 1}})

    t = threading.Thread(target=appender)
    t.start()
    try:
        for k in range(6):
            # Events already in the old connection's socket buffer can satisfy
            # the wait below, so also wait for the reconnection: every cut
            # must hit a live connection.
            px.wait_accepted(4 + k, "reconnect before cut %d" % k)
            n = len(f.got)
            f.wait(n + 10, "events between cuts")
            px.cut()
    finally:
        stop.set()
        t.join()
    total = len(c.read("feed-1"))
    f.wait(total, "every event after the cuts")
    px.wait_accepted(10, "reconnect after the last cut")
    f.halt.set()
    c.append("feed-1", {"type": "Fed", "data": {"wake": 1}})
    f.join(10)
    check_feed(f.got[:total], f.got[0]["position"], f.got[total - 1]["position"])
    evs = c.read("feed-1")
    if [e["position"] for e in evs[:total]] != [e["position"] for e in f.got[:total]]:
        fail("the feed differs from the stream")
    px.close()


def test_subscribe_resumes_after_restart():
    srv = Server()
    try:
        port = srv.port
        url = "http://127.0.0.1:%d" % port
        c = ec.Client(url)
        for i in range(30):
            c.append("res-1", {"type": "Fed", "data": {"i": i}})
        f = Follower(url, from_position=1)
        f.start()
        f.wait(30, "catch-up")
        srv.proc.kill()  # -9: no closing comment, the socket just dies
        srv.proc.wait()
        srv.start("--listen", "127.0.0.1:%d" % port)
        c = ec.Client(url)
        for i in range(30, 60):
            c.append("res-1", {"type": "Fed", "data": {"i": i}})
        f.wait(60, "events after kill -9 and restart")
        # graceful stop: the feed ends with a closing comment, the client reconnects
        srv.stop()
        srv.start("--listen", "127.0.0.1:%d" % port)
        c = ec.Client(url)
        for i in range(60, 90):
            c.append("res-1", {"type": "Fed", "data": {"i": i}})
        f.wait(90, "events after SIGTERM and restart")
        f.halt.set()
        c.append("res-1", {"type": "Fed", "data": {"wake": 1}})
        f.join(10)
        check_feed(f.got[:90], 1, 90, "res-1")
        if [e["data"]["i"] for e in f.got[:90]] != list(range(90)):
            fail("feed data out of order")
    finally:
        srv.close()


def test_subscribe_gives_up():
    srv = Server()
    url = "http://127.0.0.1:%d" % srv.port
    srv.close()
    gen = ec.Client(url).subscribe(retry_delay=0.05, give_up_after=0.3)
    try:
        next(gen)
        fail("subscribe to a dead server yielded")
    except OSError:
        pass
    gen = ec.Client(url).subscribe(reconnect=False)
    try:
        next(gen)
        fail("subscribe without reconnect yielded")
    except OSError:
        pass


def test_readme_example():
    """The README's Python example runs as printed (its endless feed cut
    after one event)."""
    src = os.environ.get("EVL_SOURCE_DIR", os.path.join(HERE, "..", ".."))
    with open(os.path.join(src, "README.md")) as f:
        code = re.search(r"^```python\n(.*?)^```", f.read(), re.S | re.M).group(1)
    code = code.replace("http://127.0.0.1:7070", "http://127.0.0.1:%d" % S.port)
    shim = types.ModuleType("evlog_client")
    shim.__dict__.update(ec.__dict__)

    class OneEvent(ec.Client):
        def subscribe(self, *a, **kw):
            return itertools.islice(ec.Client.subscribe(self, *a, **kw), 1)

    shim.Client = OneEvent
    out = io.StringIO()
    saved = sys.modules.get("evlog_client")
    sys.modules["evlog_client"] = shim
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    finally:
        sys.modules["evlog_client"] = saved
    lines = out.getvalue().splitlines()
    if len(lines) != 3 or lines[0] != "the stream is at 0" or lines[1] != "[{'id': 'j1', 'status': 'queued'}]":
        fail("README example printed %r" % lines)
    if not re.match(r"^\d+ Job\w+ \{", lines[2]):
        fail("README example's feed line %r" % lines[2])


def main():
    global S
    S = Server()
    try:
        run([test_append_and_conflict, test_readme_example, test_reads, test_queries, test_msgpack, test_tokens,
             test_subscribe_resumes_after_cut, test_subscribe_resumes_after_restart, test_subscribe_gives_up])
    finally:
        S.close()


if __name__ == "__main__":
    main()
