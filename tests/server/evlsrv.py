"""Helpers for the evlogd integration tests: start a real evlogd on a free
loopback port, talk HTTP and SSE to it, wait on conditions with deadlines.

Standard library only (plus python3-msgpack where a test needs it).  The
port is the one evlogd reports ("listening on http://127.0.0.1:PORT") after
binding --listen 127.0.0.1:0, so there is no race for a free port.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("EVL_BIN_DIR", os.getcwd())
EVLOGD = os.path.join(BIN, "evlogd")


def fail(msg):
    raise AssertionError(msg)


def wait_for(cond, timeout=10.0, what="condition"):
    """Poll cond() until it is true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            fail("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


class Server:
    """One evlogd process with its own temporary data directory."""

    def __init__(self, *args, tmp=None, data=None, start=True):
        self.tmp = tmp or tempfile.mkdtemp(prefix="evlog-srv-")
        self.own_tmp = tmp is None
        self.data = data or os.path.join(self.tmp, "data")
        self.args = list(args)
        self.proc = None
        self.runs = 0
        if start:
            self.start()

    def start(self, *extra):
        self.runs += 1
        self.errpath = os.path.join(self.tmp, "evlogd-%d.err" % self.runs)
        argv = [EVLOGD, "--data", self.data, "--listen", "127.0.0.1:0", "--threads", "2"]
        argv += self.args + list(extra)
        self.proc = subprocess.Popen(argv, stderr=open(self.errpath, "w"), stdout=subprocess.DEVNULL)
        m = wait_for(lambda: re.search(r"listening on http://\S+:(\d+) ", self.log())
                     or self.proc.poll() is not None, 15, "evlogd to start")
        if self.proc.poll() is not None:
            fail("evlogd exited %s: %s" % (self.proc.returncode, self.log()))
        self.port = int(m.group(1))
        return self

    def log(self):
        with open(self.errpath) as f:
            return f.read()

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        c = conn or self.conn()
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        resp = Response(r.status, r.getheaders(), r.read())
        if conn is None:
            c.close()
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def append(self, stream, events, expected=None, headers=None):
        h = dict(headers or {})
        if expected is not None:
            h["Expected-Revision"] = str(expected)
        return self.post("/streams/" + stream, events, headers=h)

    def metric(self, name, headers=None):
        """The value of one sample line of /metrics, e.g. 'evlog_sse_subscribers'."""
        r = self.get("/metrics", headers=headers)
        if r.status != 200:
            fail("metrics: %r" % r)
        for line in r.body.decode().splitlines():
            if not line.startswith("#") and line.rsplit(" ", 1)[0] == name:
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("evlogd did not stop within %ss after signal %d:\n%s" % (timeout, sig, self.log()))

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def expect(resp, status, what=""):
    if resp.status != status:
        fail("%s: want %d, got %r" % (what, status, resp))
    return resp


def expect_problem(resp, status, what="", slug=None):
    expect(resp, status, what)
    ct = resp.header("Content-Type") or ""
    if not ct.startswith("application/problem+json"):
        fail("%s: Content-Type %r, want application/problem+json" % (what, ct))
    p = resp.json()
    if p.get("status") != status or not p.get("detail") or not p.get("type", "").startswith("urn:evlog:problem:"):
        fail("%s: not a problem: %r" % (what, p))
    if slug and p["type"] != "urn:evlog:problem:" + slug:
        fail("%s: type %s, want %s" % (what, p["type"], slug))
    return p


class SSE:
    """A Server-Sent Events client on a raw socket (HTTP/1.1, chunked)."""

    def __init__(self, server, path, headers=None, rcvbuf=None, timeout=10):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", server.port))
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" % path
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        self.sock.sendall((req + "\r\n").encode())
        self.raw = b""        # bytes received, not yet de-chunked
        self.text = b""       # de-chunked stream, not yet parsed
        self.ended = False    # the final chunk arrived
        self.eof = False
        self.comments = []
        self.retry = None
        head = self._until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            while len(self.raw) < n and self._recv():
                pass
            self.body = self.raw[:n]

    def _recv(self):
        try:
            b = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not b:
            self.eof = True
            return False
        self.raw += b
        return True

    def _until(self, sep):
        while sep not in self.raw:
            if not self._recv():
                fail("SSE: connection ended before %r" % sep)
        i = self.raw.index(sep)
        out, self.raw = self.raw[:i], self.raw[i + len(sep):]
        return out

    def _dechunk(self):
        if not self.chunked:
            self.text += self.raw
            self.raw = b""
            return
        while not self.ended:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            n = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + n + 2:
                return
            self.text += self.raw[i + 2:i + 2 + n]
            self.raw = self.raw[i + 2 + n + 2:]
            if n == 0:
                self.ended = True

    def next(self, timeout=10.0):
        """The next event as a dict (id, event, data), or None at the end of
        the stream.  Comments and retry: lines are recorded on the way."""
        deadline = time.monotonic() + timeout
        while True:
            self._dechunk()
            while b"\n\n" in self.text:
                frame, self.text = self.text.split(b"\n\n", 1)
                ev = {}
                for line in frame.decode().split("\n"):
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line.startswith("retry: "):
                        self.retry = int(line[7:])
                    elif line.startswith("id: "):
                        ev["id"] = int(line[4:])
                    elif line.startswith("event: "):
                        ev["event"] = line[7:]
                    elif line.startswith("data: "):
                        ev["data"] = json.loads(line[6:])
                if "id" in ev:
                    return ev
            if self.ended or self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                fail("SSE: no event within %ss" % timeout)
            self.sock.settimeout(min(left, 1.0))
            self._recv()

    def take(self, n, timeout=10.0):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.next(max(0.01, deadline - time.monotonic()))
            if ev is None:
                fail("SSE: stream ended after %d of %d events; comments %r" % (len(out), n, self.comments))
            out.append(ev)
        return out

    def close(self):
        self.sock.close()


class QueryLoop(threading.Thread):
    """Query a projection over and over on one keep-alive connection until
    stop(): what a reader sees while the projection is rebuilt.  `values`
    holds the first column of the first row of each answer, `errors` every
    answer that was not a 200 (or an exception), `queries` the count."""

    def __init__(self, server, name, sql, pace=0.005):
        super().__init__(daemon=True)
        self.server, self.name, self.sql, self.pace = server, name, sql, pace
        self.values, self.errors, self.queries = [], [], 0
        self.columns = set()
        self._halt = threading.Event()

    def run(self):
        c = self.server.conn()
        while not self._halt.is_set():
            try:
                r = self.server.request("POST", "/projections/%s/query" % self.name, {"sql": self.sql}, conn=c)
            except Exception as e:  # noqa: BLE001 (a reset is an error the test reports)
                self.errors.append(repr(e))
                c.close()
                c = self.server.conn()
                continue
            self.queries += 1
            if r.status != 200:
                self.errors.append(r)
            else:
                q = r.json()
                self.columns.add(tuple(q["columns"]))
                self.values.append(q["rows"][0][0] if q["rows"] else None)
            self._halt.wait(self.pace)
        c.close()

    def stop(self):
        self._halt.set()
        self.join(15)
        return self


def run(tests):
    """Run test functions in order; print ok/FAIL lines; exit 1 on failure."""
    failed = 0
    for t in tests:
        t0 = time.monotonic()
        try:
            t()
            print("ok   %-40s %.2fs" % (t.__name__, time.monotonic() - t0), flush=True)
        except Exception:
            failed += 1
            import traceback
            print("FAIL %s" % t.__name__, flush=True)
            traceback.print_exc()
    sys.exit(1 if failed else 0)
