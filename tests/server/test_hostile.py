#!/usr/bin/python3
"""Hostile input against a real evlogd (issue 7).

- Malicious msgpack bodies (array32/map32 claiming 4G elements, 33- and
  1000-deep nesting, a str32 longer than the input, truncation, 0xc1,
  duplicate keys, a bomb of nested array16 headers): each is a 400, fast,
  and the server's RSS does not grow.
- A table of bad requests, each with its expected status: malformed JSON,
  10k-deep nesting, huge strings and arrays, invalid UTF-8 and NUL bytes in
  stream names, types and headers, negative and overflowing numbers,
  unknown Expected-Revision words, oversized headers and URIs, 10k headers.
- Connections that misbehave: a chunked body that never ends, one byte a
  second (slowloris), 5000 idle connections, SSE clients that never read.
- SQL in queries that tries to write, attach a file, load an extension,
  VACUUM INTO a file, or run forever.
After all of it the server answers, its memory is bounded, nothing was
written that should not have been, and `evlog verify` passes.

Timing and RSS bounds are functional bounds with margin; under ASan (whose
quarantine keeps freed memory) the RSS bounds are reported, not asserted."""
import os
import resource
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402  (Debian's python3-msgpack)
from evlsrv import BIN, SSE, Server, expect, expect_problem, fail, run, wait_for  # noqa: E402

S = None
MP = {"Content-Type": "application/msgpack"}
FIGURES = []


def note(line):
    FIGURES.append(line)
    print("     " + line, flush=True)


def rss_kib(server):
    with open("/proc/%d/status" % server.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    fail("no VmRSS")


def sanitized(server):
    with open("/proc/%d/maps" % server.proc.pid) as f:
        return "libasan" in f.read()


def raw(server, data, timeout=5, shut=False):
    """Send bytes on a new connection; return what comes back until the
    server closes or a whole response with Content-Length has arrived."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:") and len(body) >= int(line.split(b":")[1]):
                        return out
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        s.close()
    return out


def status_of(answer):
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


# ---------------------------------------------------------------- msgpack

def nested_array16(depth):
    """dc 00 01 repeated: each level an array16 of one element."""
    return b"\xdc\x00\x01" * depth + b"\xc0"


MALICIOUS = [
    ("array32 of 4G elements", b"\xdd\xff\xff\xff\xff"),
    ("map32 of 4G pairs", b"\xdf\xff\xff\xff\xff"),
    ("33-deep nesting", msgpack.packb({"type": "A", "data": {}})[:-1] + b"\x81\xa1k" * 32 + b"\xc0"),
    ("33-deep arrays", b"\x91" * 33 + b"\xc0"),
    ("1000-deep arrays", b"\x91" * 1000 + b"\xc0"),
    ("1000-deep maps", b"\x81\xa1k" * 1000 + b"\xc0"),
    ("str32 longer than the input", b"\x81\xa4type\xdb\xff\xff\xff\xf0AAAA"),
    ("bin32 longer than the input", b"\x82\xa4type\xa1A\xa4data\x81\xa1b\xc6\x7f\xff\xff\xffxx"),
    ("truncated event", msgpack.packb({"type": "A", "data": {"x": "hello"}})[:-3]),
    ("truncated header", b"\xdd\x00"),
    ("0xc1", b"\xc1"),
    ("0xc1 inside data", b"\x82\xa4type\xa1A\xa4data\x81\xa1x\xc1"),
    ("duplicate event keys", b"\x82\xa4type\xa1A\xa4type\xa1B"),
    ("duplicate data keys", b"\x82\xa4type\xa1A\xa4data\x82\xa1k\x01\xa1k\x02"),
    ("nested array16 bomb", nested_array16(20000)),
    ("array16 bomb, wide", b"\xdc\xff\xff" + b"\xdc\xff\xff" * 3000),
    ("map16 header bomb", b"\xde\xff\xff" * 5000),
    ("ext32 longer than the input", b"\x81\xa4type\xc9\x7f\xff\xff\xff\x01"),
    ("empty body", b""),
]


def test_malicious_msgpack_bodies():
    # one whole round first: first-use allocations (malloc arenas of the
    # worker threads, libevent's buffers) are not what is measured
    for name, body in MALICIOUS * 20:
        expect_problem(S.post("/streams/mp-warm", body, headers=MP), 400, name)
    before = rss_kib(S)
    slowest = 0.0
    for name, body in MALICIOUS:
        best = None
        for _ in range(20):
            c = S.conn()
            c.connect()
            t0 = time.monotonic()
            r = S.request("POST", "/streams/mp-bad", body, headers=MP, conn=c)
            took = time.monotonic() - t0
            c.close()
            expect_problem(r, 400, name)
            best = took if best is None else min(best, took)
        slowest = max(slowest, best)
        if best > 0.010:
            fail("%s: answered in %.1f ms at best (bound 10 ms)" % (name, best * 1000))
    after = rss_kib(S)
    note("msgpack: %d malicious bodies x 20 posts, each 400; slowest best-of-20 %.2f ms; "
         "RSS %d -> %d KiB (%+d)" % (len(MALICIOUS), slowest * 1000, before, after, after - before))
    if after - before > 1024 and not sanitized(S):
        fail("RSS grew by %d KiB over the malicious bodies (bound 1 MiB)" % (after - before))
    expect_problem(S.get("/streams/mp-bad"), 404, "nothing written by them")


# --------------------------------------------------------------- the table

def deep_json(levels):
    return b'{"type":"A","data":' + b'{"a":' * levels + b"1" + b"}" * levels + b"}"


def req(method, target, headers=(), body=b""):
    h = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
    if body is not None:
        h += b"Content-Length: %d\r\n" % len(body)
    return b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n%s" % (method, target, h, body or b"")


JSON = (b"Content-Type", b"application/json")
BIG = 1 << 20  # --max-body below is 4 MiB, the event limit 1 MiB

BAD_REQUESTS = [
    # (what, raw request, expected status)
    ("malformed JSON", req(b"POST", b"/streams/t-1", [JSON], b'{"type": "A", "data": {'), 400),
    ("JSON with a trailing comma", req(b"POST", b"/streams/t-1", [JSON], b'{"type":"A",}'), 400),
    ("JSON duplicate keys", req(b"POST", b"/streams/t-1", [JSON], b'{"type":"A","type":"B"}'), 400),
    ("JSON nested 10k levels", req(b"POST", b"/streams/t-1", [JSON], deep_json(10000)), 400),
    ("JSON nested 17 levels in data", req(b"POST", b"/streams/t-1", [JSON], deep_json(17)), 400),
    ("JSON arrays nested 10k levels", req(b"POST", b"/streams/t-1", [JSON], b"[" * 10000 + b"]" * 10000), 400),
    ("a 2 MiB string (over the event limit)",
     req(b"POST", b"/streams/t-1", [JSON], b'{"type":"A","data":{"s":"' + b"x" * (2 * BIG) + b'"}}'), 413),
    ("a 600k-element array (over the event limit)",
     req(b"POST", b"/streams/t-1", [JSON], b'{"type":"A","data":{"a":[' + b"123456," * 600000 + b'1]}}'), 413),
    ("a body over --max-body", req(b"POST", b"/streams/t-1", [JSON], b" " * (5 * BIG)), 413),
    ("a 255-byte type is fine, 256 is not",
     req(b"POST", b"/streams/t-1", [JSON], b'{"type":"' + b"T" * 256 + b'"}'), 400),
    ("a stream name of 256 bytes", req(b"POST", b"/streams/" + b"s" * 256, [JSON], b'{"type":"A"}'), 400),
    ("invalid UTF-8 in a stream name", req(b"POST", b"/streams/ab%ff%fe", [JSON], b'{"type":"A"}'), 400),
    ("an overlong UTF-8 stream name", req(b"POST", b"/streams/a%c0%af", [JSON], b'{"type":"A"}'), 400),
    ("a surrogate in a stream name", req(b"POST", b"/streams/a%ed%a0%80", [JSON], b'{"type":"A"}'), 400),
    ("a raw 0xff byte in the path", req(b"POST", b"/streams/ab\xffc", [JSON], b'{"type":"A"}'), 400),
    ("a NUL in a stream name", req(b"POST", b"/streams/a%00b", [JSON], b'{"type":"A"}'), 400),
    ("a NUL in a read's stream name", req(b"GET", b"/streams/a%00b", [], None), 400),
    ("a NUL in a query parameter", req(b"GET", b"/events?type=a%00b", [], None), 400),
    ("a NUL in a type", req(b"POST", b"/streams/t-1", [JSON], b'{"type":"A\\u0000B"}'), 400),
    ("a NUL byte in a header value", req(b"POST", b"/streams/t-1", [JSON, (b"Expected-Revision", b"1\x00")],
                                         b'{"type":"A"}'), 400),
    ("invalid UTF-8 in a JSON string", req(b"POST", b"/streams/t-1", [JSON], b'{"type":"A\xff"}'), 400),
    ("Expected-Revision: -1", req(b"POST", b"/streams/t-1", [JSON, (b"Expected-Revision", b"-1")],
                                  b'{"type":"A"}'), 400),
    ("Expected-Revision: 2^64", req(b"POST", b"/streams/t-1",
                                    [JSON, (b"Expected-Revision", b"18446744073709551616")], b'{"type":"A"}'), 400),
    ("Expected-Revision: 2^64-1 (would alias 'any')",
     req(b"POST", b"/streams/t-1", [JSON, (b"Expected-Revision", b"18446744073709551615")], b'{"type":"A"}'), 400),
    ("Expected-Revision: 1e3", req(b"POST", b"/streams/t-1", [JSON, (b"Expected-Revision", b"1e3")],
                                   b'{"type":"A"}'), 400),
    ("Expected-Revision: sometimes", req(b"POST", b"/streams/t-1", [JSON, (b"Expected-Revision", b"sometimes")],
                                         b'{"type":"A"}'), 400),
    ("Expected-Revision: ANY", req(b"POST", b"/streams/t-1", [JSON, (b"Expected-Revision", b"ANY")],
                                   b'{"type":"A"}'), 400),
    ("expected_revision -5 in a batch", req(b"POST", b"/append", [JSON],
                                            b'{"streams":[{"stream":"t-2","expected_revision":-5,'
                                            b'"events":[{"type":"A"}]}]}'), 400),
    ("expected_revision 1e30 in a batch", req(b"POST", b"/append", [JSON],
                                              b'{"streams":[{"stream":"t-2","expected_revision":1e30,'
                                              b'"events":[{"type":"A"}]}]}'), 400),
    ("from=-1", req(b"GET", b"/events?from=-1", [], None), 400),
    ("from=2^64", req(b"GET", b"/events?from=18446744073709551616", [], None), 400),
    ("from=99999999999999999999999", req(b"GET", b"/streams/t-0?from=99999999999999999999999", [], None), 400),
    ("a revision of 2^64 on a stream", req(b"GET", b"/streams/t-0?from=18446744073709551616", [], None), 400),
    ("limit=-1", req(b"GET", b"/events?limit=-1", [], None), 400),
    ("limit=0", req(b"GET", b"/events?limit=0", [], None), 400),
    ("limit=2^64-1", req(b"GET", b"/events?limit=18446744073709551615", [], None), 400),
    ("since in year 0039", req(b"GET", b"/events?since=0039-11-23T10:30:00Z", [], None), 400),
    ("until in year 9999", req(b"GET", b"/events?since=9999-01-01", [], None), 400),
    # a path that names no event is a resource that does not exist
    ("event position -1", req(b"GET", b"/events/-1", [], None), 404),
    ("event position 2^64", req(b"GET", b"/events/18446744073709551616", [], None), 404),
    ("min_position -1", req(b"POST", b"/projections/jobs/query", [JSON],
                            b'{"sql":"SELECT 1","min_position":-1}'), 400),
    ("min_position 2^70", req(b"POST", b"/projections/jobs/query", [JSON],
                              b'{"sql":"SELECT 1","min_position":1180591620717411303424}'), 400),
    ("Last-Event-ID: -1", req(b"GET", b"/subscribe", [(b"Last-Event-ID", b"-1")], None), 400),
    ("Last-Event-ID: 2^64", req(b"GET", b"/subscribe", [(b"Last-Event-ID", b"18446744073709551616")], None), 400),
    ("from=soon on a feed", req(b"GET", b"/subscribe?from=soon", [], None), 400),
    ("URI over --max-uri", req(b"GET", b"/events?x=" + b"z" * 9000, [], None), 414),
    ("a header over --max-headers", req(b"GET", b"/events", [(b"X-Big", b"y" * 40000)], None), 400),
    ("10k headers", req(b"GET", b"/events", [(b"X-H%d" % i, b"v") for i in range(10000)], None), 400),
    # --max-headers bounds the head's bytes, not its lines: 6000 headers of
    # 5 bytes ("A: " and CRLF) fit in 32K
    ("6000 tiny headers within --max-headers", req(b"GET", b"/events", [(b"A", b"") for _ in range(6000)], None), 200),
    ("a request line without a version", b"GET /events\r\n\r\n", 400),
    ("an unknown method", req(b"BREW", b"/events", [], None), 501),
    ("a method a route does not take", req(b"PUT", b"/events", [], b""), 405),
    ("a negative Content-Length", b"POST /streams/t-1 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    ("a Content-Length of 2^64", b"POST /streams/t-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616"
                                 b"\r\n\r\n", 400),
    ("a chunk size of 2^64", b"POST /streams/t-1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"10000000000000000\r\nx\r\n", 413),
    ("an unknown projection", req(b"POST", b"/projections/nope%00/query", [JSON], b'{"sql":"SELECT 1"}'), 400),
]


def test_bad_request_table():
    expect(S.append("t-0", {"type": "Here"}), 201, "a stream to read")
    head0 = S.get("/events?limit=1").json()["head"]
    wrong = []
    for what, data, want in BAD_REQUESTS:
        answer = raw(S, data, timeout=10, shut=False)
        got = status_of(answer)
        if got != want:
            wrong.append("%s: want %s, got %s %r" % (what, want, got, answer[:200]))
        elif want and want >= 400 and b"application/problem+json" not in answer.split(b"\r\n\r\n")[0]:
            wrong.append("%s: %d is not problem+json: %r" % (what, got, answer[:300]))
    if wrong:
        fail("%d of %d bad requests answered wrongly:\n  " % (len(wrong), len(BAD_REQUESTS)) + "\n  ".join(wrong))
    head1 = S.get("/events?limit=1").json()["head"]
    if head1 != head0:
        fail("bad requests wrote %d events" % (head1 - head0))
    note("bad requests: %d kinds, each with its expected status, nothing written" % len(BAD_REQUESTS))


# --------------------------------------------------------- connections

def wait_closed(sock, limit):
    """Seconds until the server closes @sock (reading what it sends)."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
    return None


def test_chunked_body_that_never_ends():
    # a chunk, then silence: the request deadline (1 s here) closes it
    s = socket.create_connection(("127.0.0.1", S.port))
    s.sendall(b"POST /streams/t-chunk HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"typ\r\n")
    took = wait_closed(s, 10)
    s.close()
    if took is None or took > 4:
        fail("a stalled chunked body held its connection for %s s (deadline 1 s)" % took)
    # chunks that keep coming and never end: --max-body stops them (413)
    s = socket.create_connection(("127.0.0.1", S.port))
    s.sendall(b"POST /streams/t-chunk HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    sent, answer = 0, b""
    # Whole chunks only (a send that timed out half-way would break the
    # framing); the answer is looked for between them without blocking.  A
    # server that answered and stopped reading makes sendall time out.
    s.settimeout(5)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 10 and not answer:
            s.sendall(chunk)
            sent += len(chunk)
            if select.select([s], [], [], 0)[0]:
                answer = s.recv(4096)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    s.settimeout(2)
    try:
        answer += s.recv(4096)
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    if status_of(answer) != 413:
        fail("an endless chunked body (%d bytes sent): %r" % (sent, answer[:200]))
    expect_problem(S.get("/streams/t-chunk"), 404, "nothing of them written")
    note("chunked: a stalled body closed after %.2f s; an endless one 413 after %d KiB" % (took, sent // 1024))


def test_one_byte_a_second():
    """Slowloris: a header byte every 0.2 s (the deadline is 1 s here; one
    byte a second behaves the same, only slower to test)."""
    before = S.metric("evlog_http_request_deadline_total")
    s = socket.create_connection(("127.0.0.1", S.port), timeout=5)
    data = b"GET /events HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 100
    t0 = time.monotonic()
    closed = None
    for b in data:
        try:
            s.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            closed = time.monotonic() - t0
            break
        took = wait_closed(s, 0.2)
        if took is not None:
            closed = time.monotonic() - t0
            break
    s.close()
    if closed is None or closed > 3:
        fail("slowloris connection open for %s s (deadline 1 s)" % closed)
    wait_for(lambda: S.metric("evlog_http_request_deadline_total") >= before + 1, 5, "the deadline counted")
    note("slowloris: cut off after %.2f s (request deadline 1 s)" % closed)


def test_5000_idle_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 5200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 6000), hard))
    n = min(5000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200)
    cap = min(1000, n // 2)  # a machine whose hard limit is low still tests the cap
    srv = Server("--no-builtin", "--max-connections", str(cap), "--idle-timeout-ms", "3000",
                 "--header-timeout-ms", "1000")
    try:
        before = rss_kib(srv)
        socks = []
        for _ in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.connect(("127.0.0.1", srv.port))
            socks.append(s)
        # over the cap a request is answered 503, it does not hang
        r = srv.get("/healthz")
        expect_problem(r, 503, "over the connection cap", "too-many-connections")
        peak = rss_kib(srv)
        # the server closes idle connections itself, and then answers again
        wait_for(lambda: srv.get("/healthz").status == 200, 20, "healthz after the idle timeout")
        # healthz answers once fewer than the cap are open; the last ones
        # opened reach their idle timeout a little later
        wait_for(lambda: srv.metric("evlog_http_connections") <= 1, 20, "every idle connection closed")
        closed = 0
        for s in socks:
            s.settimeout(0.001)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except (socket.timeout, BlockingIOError):
                pass
            except ConnectionResetError:
                closed += 1
            s.close()
        after = rss_kib(srv)
        note("idle: %d idle connections (cap %d): 503 over the cap, %d closed by the idle timeout, "
             "RSS %d -> %d (peak) -> %d KiB" % (n, cap, closed, before, peak, after))
        if closed < n * 0.9:
            fail("only %d of %d idle connections closed by the server" % (closed, n))
        if peak - before > 64 * 1024 and not sanitized(srv):
            fail("%d idle connections cost %d KiB" % (n, peak - before))
    finally:
        if srv.stop() != 0:
            fail("exit: %s" % srv.log())
        srv.close()


def test_sse_clients_that_never_read():
    srv = Server("--no-builtin", "--sse-stall-ms", "1500", "--sse-buffer", "64K")
    try:
        subs = [SSE(srv, "/subscribe?from=1", rcvbuf=4096) for _ in range(20)]
        wait_for(lambda: srv.metric("evlog_sse_subscribers") == 20, 10, "20 subscribers")
        before = rss_kib(srv)
        pad = "p" * 2000
        c = srv.conn()
        for i in range(0, 3000, 100):
            expect(srv.request("POST", "/streams/flood-1", [{"type": "F", "data": {"i": i + k, "pad": pad}}
                                                            for k in range(100)], conn=c), 201, "flood")
        c.close()
        peak_queued = srv.metric("evlog_sse_queued_bytes") or 0
        wait_for(lambda: srv.metric("evlog_sse_slow_disconnects_total") == 20, 30, "the stalled ones dropped")
        wait_for(lambda: srv.metric("evlog_sse_subscribers") == 0, 10, "no subscribers left")
        after = rss_kib(srv)
        for s in subs:
            s.close()
        note("never-reading SSE: 20 clients, 6 MB of events: all 20 disconnected after the stall limit, "
             "queued at most %d bytes, RSS %d -> %d KiB" % (peak_queued, before, after))
        if after - before > 64 * 1024 and not sanitized(srv):
            fail("20 stalled subscribers cost %d KiB" % (after - before))
        expect(srv.get("/healthz"), 200, "still answering")
    finally:
        if srv.stop() != 0:
            fail("exit: %s" % srv.log())
        srv.close()


# ------------------------------------------------------------------ SQL

def query(body, name="guard"):
    return S.post("/projections/%s/query" % name, body)


def test_sql_cannot_write_attach_load_or_run_forever():
    expect(S.append("g-1", {"type": "Seen", "data": {"k": "a"}}), 201, "one event")
    pos = S.get("/events?limit=1").json()["head"]
    expect(query({"sql": "SELECT count(*) FROM seen", "min_position": pos}), 200, "reads work")
    victim = os.path.join(S.tmp, "written-by-sql.db")
    cases = [
        ("INSERT", "INSERT INTO seen (k) VALUES ('x')"),
        ("UPDATE", "UPDATE seen SET k = 'y'"),
        ("DELETE", "DELETE FROM seen"),
        ("DROP", "DROP TABLE seen"),
        ("CREATE", "CREATE TABLE t (a)"),
        ("CREATE TEMP", "CREATE TEMP TABLE t (a)"),
        ("REPLACE", "REPLACE INTO seen (k) VALUES ('z')"),
        ("ATTACH", "ATTACH DATABASE '%s' AS x" % victim),
        ("ATTACH via SELECT", "SELECT * FROM pragma_database_list"),
        ("VACUUM INTO", "VACUUM INTO '%s'" % victim),
        ("load_extension", "SELECT load_extension('/lib/x86_64-linux-gnu/libm.so.6')"),
        ("writable_schema", "PRAGMA writable_schema = 1"),
        ("journal_mode", "PRAGMA journal_mode = DELETE"),
        ("BEGIN", "BEGIN IMMEDIATE"),
        ("two statements", "SELECT 1; DELETE FROM seen"),
        ("readfile", "SELECT readfile('/etc/passwd')"),
        ("writefile", "SELECT writefile('%s', 'x')" % victim),
        ("fts3_tokenizer", "SELECT fts3_tokenizer('simple')"),
        ("a 100 MB blob", "SELECT length(zeroblob(100000000))"),
        ("a 100 MB string", "SELECT length(printf('%.*c', 100000000, 'x'))"),
        ("checkpoint table", "UPDATE _evl_checkpoint SET position = 0"),
    ]
    allowed = []
    for what, sql in cases:
        r = query({"sql": sql})
        if r.status == 200 and what == "ATTACH via SELECT":
            continue  # reading the list of attached databases is harmless
        if r.status == 200 and what == "a 100 MB string" and r.json()["rows"] == [[None]]:
            continue  # printf gives up (NULL) beyond the length limit: nothing allocated
        if r.status != 400:
            allowed.append("%s: %r" % (what, r))
    if allowed:
        fail("SQL that must be refused was not:\n  " + "\n  ".join(allowed))
    if os.path.exists(victim):
        fail("a query created %s" % victim)
    r = expect(query({"sql": "SELECT count(*), min(k) FROM seen"}), 200, "the table is intact").json()
    if r["rows"] != [[1, "a"]]:
        fail("rows after the refused SQL: %r" % r["rows"])
    # a query that would run forever stops at its deadline
    t0 = time.monotonic()
    p = expect_problem(query({"sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                                     "SELECT count(*) FROM c", "timeout_ms": 300}), 400, "endless query")
    took = time.monotonic() - t0
    if took > 3:
        fail("endless query ran %.2f s (timeout 300 ms)" % took)
    t1 = time.monotonic()
    expect_problem(query({"sql": "SELECT count(*) FROM seen a, seen b, seen c, seen d, seen e, seen f, "
                                 "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000000) "
                                 "SELECT x FROM c)", "timeout_ms": 300}), 400, "a huge join")
    took2 = time.monotonic() - t1
    if took2 > 3:
        fail("a huge join ran %.2f s (timeout 300 ms)" % took2)
    note("SQL: %d writing/attaching/loading statements refused (400), nothing written; endless queries "
         "stopped after %.2f s and %.2f s (timeout 0.3 s): %s" % (len(cases) - 1, took, took2, p["detail"][:60]))


# ------------------------------------------------------------- afterwards

def test_after_all_of_it():
    expect(S.get("/healthz"), 200, "the server answers")
    expect(S.append("after-1", {"type": "Fine", "data": {"ok": True}}), 201, "appends work")
    rss = rss_kib(S)
    note("after all of it: RSS %d KiB (start %d KiB)" % (rss, START_RSS))
    if rss - START_RSS > 256 * 1024 and not sanitized(S):
        fail("RSS grew from %d to %d KiB" % (START_RSS, rss))
    v = subprocess.run([os.path.join(BIN, "evlog"), "--data", S.data, "verify"], capture_output=True, text=True)
    if v.returncode != 0:
        fail("evlog verify: %s %s" % (v.stdout, v.stderr))
    note("evlog verify: %s" % (v.stdout.strip().splitlines() or ["ok"])[0])


GUARD_SQL = """-- @projection guard
CREATE TABLE seen (k TEXT);
-- @on Seen
INSERT INTO seen (k) VALUES (:k);
"""

START_RSS = 0


def main():
    global S, START_RSS
    import tempfile
    specs = tempfile.mkdtemp(prefix="evlog-hostile-specs-")
    with open(os.path.join(specs, "guard.sql"), "w") as f:
        f.write(GUARD_SQL)
    S = Server("--max-body", "4M", "--max-headers", "32K", "--max-uri", "8K", "--header-timeout-ms", "1000",
               "--idle-timeout-ms", "5000", "--projections", specs)
    START_RSS = rss_kib(S)
    try:
        run([test_malicious_msgpack_bodies, test_bad_request_table, test_chunked_body_that_never_ends,
             test_one_byte_a_second, test_5000_idle_connections, test_sse_clients_that_never_read,
             test_sql_cannot_write_attach_load_or_run_forever, test_after_all_of_it])
    finally:
        code = S.stop()
        S.close()
        import shutil
        shutil.rmtree(specs, ignore_errors=True)
        if code != 0:
            print(S.log())
            sys.exit(1)


if __name__ == "__main__":
    main()
