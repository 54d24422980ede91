#!/usr/bin/python3
"""evlogd's HTTP/1.1 connection layer (server/conn.c, server/http1.c) on raw
sockets: what a client library may do that the other tests' http.client
does not.

- a chunked request body, whole and one byte per write;
- Expect: 100-continue: the interim answer, then the real one;
- HTTP/1.0: closed after the answer, or kept with Connection: keep-alive;
- 50 appends pipelined in one write: 50 answers, in order, one group each;
- a client that half-closes after its request still gets the answer;
- a client that goes away while its append is committed: the event is
  durable, and the server goes on serving;
- framing that could be read two ways (Content-Length with
  Transfer-Encoding, two different Content-Lengths, a folded header, a
  space before the colon): 400 and the connection closed;
- every answer carries Date and Content-Length."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import Server, expect, fail, run, wait_for  # noqa: E402

S = None


def sock():
    s = socket.create_connection(("127.0.0.1", S.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_answer(s, buf=b""):
    """One answer from @s: (status, headers dict, body, rest of the buffer)."""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            fail("connection closed before an answer: %r" % buf)
        buf += b
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    if status == 100:
        return status, hdrs, b"", buf
    n = int(hdrs.get("content-length", "-1"))
    if n < 0:
        fail("answer without Content-Length: %r" % head)
    while len(buf) < n:
        b = s.recv(65536)
        if not b:
            fail("connection closed mid-body")
        buf += b
    return status, hdrs, buf[:n], buf[n:]


def closed(s, limit=5.0):
    s.settimeout(limit)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return True
    except (socket.timeout, ConnectionResetError):
        return False


def post(stream, body, extra=b"", version=b"1.1"):
    return (b"POST /streams/%s HTTP/%s\r\nHost: x\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (stream.encode(), version, extra, len(body), body))


def revision(stream):
    return S.get("/streams/%s?limit=1000" % stream).json()


def test_chunked_body():
    body = json.dumps({"type": "Chunked", "data": {"n": 1}}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    req = (b"POST /streams/ch-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Trailer: y\r\n\r\n")
    s = sock()
    s.sendall(req)
    st, h, b, _ = read_answer(s)
    if st != 201 or "date" not in h:
        fail("chunked: %d %r %r" % (st, h, b))
    # the same one byte per write, on a kept connection
    for i in range(len(req)):
        s.sendall(req[i:i + 1])
    st, h, b, _ = read_answer(s)
    if st != 201:
        fail("chunked byte by byte: %d %r" % (st, b))
    s.close()
    evs = revision("ch-1")["events"]
    if len(evs) != 2 or evs[1]["data"] != {"n": 1}:
        fail("chunked events %r" % evs)


def test_expect_continue():
    body = json.dumps({"type": "Cont"}).encode()
    s = sock()
    s.sendall(b"POST /streams/co-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    st, h, b, rest = read_answer(s)
    if st != 100:
        fail("Expect: 100-continue answered %d" % st)
    s.sendall(body)
    st, h, b, _ = read_answer(s, rest)
    if st != 201:
        fail("after 100 Continue: %d %r" % (st, b))
    s.close()


def test_http10():
    s = sock()
    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    st, h, b, _ = read_answer(s)
    if st != 200 or not closed(s):
        fail("HTTP/1.0 without keep-alive: %d, closed after it: no" % st)
    s.close()
    s = sock()
    for i in range(3):
        s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        st, h, b, _ = read_answer(s)
        if st != 200 or h.get("connection", "").lower() != "keep-alive":
            fail("HTTP/1.0 keep-alive answer %d: %r" % (i, h))
    s.close()


def test_pipelined_appends():
    reqs = b"".join(post("pi-1", json.dumps({"type": "P", "data": {"i": i}}).encode()) for i in range(50))
    s = sock()
    s.sendall(reqs)
    buf, revs = b"", []
    for i in range(50):
        st, h, b, buf = read_answer(s, buf)
        if st != 201:
            fail("pipelined append %d: %d %r" % (i, st, b))
        revs.append(json.loads(b)["events"][0]["revision"])
    s.close()
    if revs != list(range(50)):
        fail("pipelined answers out of order: %r" % revs)


def test_half_close():
    s = sock()
    s.sendall(post("hc-1", b'{"type":"Half"}'))
    s.shutdown(socket.SHUT_WR)
    st, h, b, _ = read_answer(s)
    if st != 201:
        fail("half-closed client: %d" % st)
    s.close()


def test_client_gone_mid_append():
    for i in range(20):
        s = sock()
        s.sendall(post("gone-1", json.dumps({"type": "Gone", "data": {"i": i}}).encode()))
        s.close()  # before the answer
    # every append that reached the server is durable; the server serves on
    # (until the first append is in, the stream does not exist: a 404 problem)
    wait_for(lambda: len(revision("gone-1").get("events", [])) == 20, 10, "20 appends of vanished clients")
    expect(S.get("/healthz"), 200, "after vanished clients")


def test_ambiguous_framing():
    bad = [
        b"POST /streams/am-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /streams/am-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
    ]
    for req in bad:
        s = sock()
        s.sendall(req)
        st, h, b, _ = read_answer(s)
        if st != 400 or h.get("connection", "").lower() != "close" or not closed(s):
            fail("ambiguous framing %r: %d %r" % (req[:60], st, h))
        s.close()
    if revision("am-1").get("events"):
        fail("ambiguous framing wrote events")


def main():
    global S
    S = Server("--no-builtin")
    try:
        run([test_chunked_body, test_expect_continue, test_http10, test_pipelined_appends, test_half_close,
             test_client_gone_mid_append, test_ambiguous_framing])
    finally:
        if S.stop() != 0:
            print(S.log())


if __name__ == "__main__":
    main()
