#!/usr/bin/python3
"""evlogd limits: body, headers and URI sizes (413/414 as problem+json, the
413 delivered thanks to lingering close), the connection cap (503), the
request deadline against slowloris, the idle timeout, refused methods and
malformed requests, and a full log (507)."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import Server, expect, expect_problem, fail, run, wait_for  # noqa: E402

S = None


def raw(server, data, timeout=5):
    """Send bytes, return everything the server sends until it closes."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if b"\r\n\r\n" in out:
                head, body = out.split(b"\r\n\r\n", 1)
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:") and len(body) >= int(line.split(b":")[1]):
                        s.close()
                        return out
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out


def problem_of(answer, status, what):
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 %d " % status):
        fail("%s: %r" % (what, answer[:300]))
    if b"application/problem+json" not in head or b'"status":%d' % status not in body:
        fail("%s: not problem+json: %r" % (what, answer[:400]))
    return body


def test_body_limit():
    big = b'{"type":"A","data":{"s":"' + b"x" * (100 * 1024) + b'"}}'
    p = expect_problem(S.post("/streams/big-1", big, headers={"Content-Type": "application/json"}), 413,
                       "body over --max-body", "payload-too-large")
    if "max-body" not in p["detail"]:
        fail("413 detail %r" % p)
    # the answer arrives even though the client is still sending a body it
    # announced: lingering close reads and drops the rest instead of a reset
    body = problem_of(raw(S, b"POST /streams/big-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                          + b"x" * 1000000), 413, "lingering 413")
    expect_problem(S.get("/streams/big-1"), 404, "nothing written")
    expect(S.append("big-1", {"type": "A", "data": {"s": "x" * 1000}}), 201, "a body under the limit")
    del body


def test_header_and_uri_limits():
    body = problem_of(raw(S, b"GET /events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 8000 + b"\r\n\r\n"), 400,
                      "headers over --max-headers")
    if b"max-headers" not in body:
        fail("400 detail %r" % body)
    p = expect_problem(S.get("/events?x=" + "z" * 1500), 414, "URI over --max-uri", "uri-too-long")
    if "1024" not in p["detail"]:
        fail("414 detail %r" % p)
    problem_of(raw(S, b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n"), 501, "TRACE")
    problem_of(raw(S, b"GARBAGE\r\n\r\n"), 400, "malformed request line")
    problem_of(raw(S, b"GET /events HTTP/1.1\r\nHost x\r\n\r\n"), 400, "malformed header")


def test_connection_cap():
    srv = Server("--no-builtin", "--max-connections", "4")
    try:
        held = []
        for _ in range(4):  # four keep-alive connections, each proven accepted by an answer
            c = srv.conn()
            expect(srv.request("GET", "/healthz", conn=c), 200, "under the cap")
            held.append(c)
        r = srv.get("/healthz")
        expect_problem(r, 503, "over the cap", "too-many-connections")
        if r.header("Connection") != "close" or r.header("Retry-After") != "1":
            fail("503 headers %r" % r.headers)
        expect(srv.request("GET", "/healthz", conn=held[0]), 200, "the held ones still work")
        for c in held:
            c.close()
        wait_for(lambda: srv.get("/healthz").status == 200, 5, "room after closing")
        if srv.metric("evlog_http_connections_rejected_total") < 1:
            fail("rejections not counted")
    finally:
        if srv.stop() != 0:
            fail("exit: %s" % srv.log())
        srv.close()


def test_request_deadline_against_slowloris():
    before = S.metric("evlog_http_request_deadline_total")
    for first, trickle in [(b"GET /events HTTP/1.1\r\nHost: x\r\n", b"X-A: b\r\n"),
                           (b"POST /streams/s-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b"x")]:
        s = socket.create_connection(("127.0.0.1", S.port), timeout=5)
        s.sendall(first)
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 5:
            try:
                s.sendall(trickle)  # a byte every 50 ms resets libevent's own timeouts
                s.settimeout(0.05)
                if s.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        took = time.monotonic() - t0
        s.close()
        if not closed or took < 0.4:
            fail("slow request closed=%s after %.2fs (deadline 500 ms)" % (closed, took))
    wait_for(lambda: S.metric("evlog_http_request_deadline_total") >= before + 2, 5, "deadlines counted")


def test_idle_connection_is_closed():
    s = socket.create_connection(("127.0.0.1", S.port), timeout=5)
    t0 = time.monotonic()
    if s.recv(10) != b"":
        fail("idle connection got data")
    if time.monotonic() - t0 > 4:
        fail("idle connection open for %.2fs" % (time.monotonic() - t0))
    s.close()
    wait_for(lambda: S.metric("evlog_http_connections") <= 1, 5, "connections released")


def test_full_log_is_507():
    srv = Server("--no-builtin", "--map-size", "4M")
    try:
        pad = "p" * (200 * 1024)
        status, n = 201, 0
        while status == 201 and n < 100:
            r = srv.append("fill-1", {"type": "Fill", "data": {"pad": pad, "n": n}})
            status, n = r.status, n + 1
        p = expect_problem(r, 507, "full log", "insufficient-storage")
        if "nothing of this append was written" not in p["detail"]:
            fail("507 detail %r" % p)
        page = expect(srv.get("/streams/fill-1?limit=1000"), 200, "reads after full").json()
        if len(page["events"]) != n - 1:
            fail("%d events readable, %d acknowledged" % (len(page["events"]), n - 1))
        expect(srv.get("/readyz"), 200, "a full log is still ready (not read-only)")
    finally:
        if srv.stop() != 0:
            fail("exit: %s" % srv.log())
        srv.close()


def main():
    global S
    S = Server("--no-builtin", "--max-body", "64K", "--max-headers", "4K", "--max-uri", "1K",
               "--header-timeout-ms", "500", "--idle-timeout-ms", "1000")
    try:
        run([test_body_limit, test_header_and_uri_limits, test_connection_cap, test_request_deadline_against_slowloris,
             test_idle_connection_is_closed, test_full_log_is_507])
    finally:
        if S.stop() != 0:
            print(S.log())
            sys.exit(1)
        S.close()


if __name__ == "__main__":
    main()
