#!/usr/bin/python3
"""evlogd HTTP API: appends (201/200/409/400), multi-stream batches, msgpack
in and out, reads with paging and filters, single events, routing errors."""
import json
import os
import sys
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402  (Debian's python3-msgpack)
from evlsrv import Server, expect, expect_problem, fail, run  # noqa: E402

S = None


def test_append_one_and_idempotent_repeat():
    eid = str(uuid.uuid4())
    r = expect(S.append("job-1", {"type": "JobQueued", "id": eid, "data": {"model": "m1"}}), 201, "append")
    ack = r.json()["events"]
    if ack != [{"id": eid, "stream": "job-1", "position": ack[0]["position"], "revision": 0}]:
        fail("ack %r" % ack)
    if r.header("Location") != "/events/%d" % ack[0]["position"]:
        fail("Location %r" % r.header("Location"))
    again = expect(S.append("job-1", {"type": "JobQueued", "id": eid, "data": {"model": "m1"}}), 200,
                   "idempotent repeat")
    if again.json()["events"] != ack or again.json().get("idempotent") is not True:
        fail("repeat %r, first %r" % (again.json(), ack))
    r = expect(S.get("/streams/job-1"), 200, "read")
    if len(r.json()["events"]) != 1:
        fail("the repeat wrote an event: %r" % r.json())


def test_id_conflicts():
    eid, other = str(uuid.uuid4()), str(uuid.uuid4())
    expect(S.append("idc-1", {"type": "A", "id": eid}), 201, "first")
    p = expect_problem(S.append("idc-2", {"type": "A", "id": eid}), 409, "same id, other stream", "id-conflict")
    if p.get("stream") != "idc-2":
        fail("409 %r" % p)
    expect_problem(S.append("idc-1", [{"type": "A", "id": eid}, {"type": "A", "id": other}]), 409,
                   "repeated and new ids in one batch", "id-conflict")
    expect_problem(S.append("idc-1", [{"type": "A", "id": other}, {"type": "B", "id": other}]), 400,
                   "one id twice in a batch", "invalid-event")
    if len(S.get("/streams/idc-1").json()["events"]) != 1:
        fail("a refused batch wrote")


def test_append_array_and_expected_revision():
    evs = [{"type": "T%d" % i, "data": {"i": i}} for i in range(5)]
    r = expect(S.append("batch-1", evs, expected="no_stream"), 201, "array")
    acks = r.json()["events"]
    pos = [a["position"] for a in acks]
    if [a["revision"] for a in acks] != list(range(5)) or pos != list(range(pos[0], pos[0] + 5)):
        fail("acks %r" % acks)
    expect(S.append("batch-1", {"type": "X"}, expected=4), 201, "expected 4")
    p = expect_problem(S.append("batch-1", {"type": "X"}, expected=3), 409, "expected 3", "conflict")
    if (p["stream"], p["expected_revision"], p["current_revision"]) != ("batch-1", 3, 5):
        fail("409 body %r" % p)
    p = expect_problem(S.append("batch-1", {"type": "X"}, expected="no_stream"), 409, "no_stream")
    if (p["expected_revision"], p["current_revision"]) != ("no_stream", 5):
        fail("409 body %r" % p)
    p = expect_problem(S.append("nothing-here", {"type": "X"}, expected="exists"), 409, "exists")
    if p["current_revision"] != "no_stream":
        fail("409 body %r" % p)
    expect(S.post("/streams/batch-1?expected_revision=5", {"type": "Y"}), 201, "query expected_revision")
    p = expect_problem(S.append("batch-1", {"type": "X"}, expected="soon"), 400, "bad expected")
    if "Expected-Revision" not in p["detail"]:
        fail("detail %r" % p)


def test_append_400_names_the_problem():
    cases = [
        (b'{"type": "A", ', "line 1"),
        ([{"type": "A"}, {"data": {}}], "events[1]"),
        ({"type": "A", "data": [1, 2]}, "data"),
        ({"type": "A", "id": "not-a-uuid"}, "id"),
        ({"type": "A\u0001"}, "type"),
        ([], "non-empty array"),
        (b"", "empty"),
        (b"42", "event object"),
        ({"type": "A", "subject": "other-stream"}, "subject"),
    ]
    for body, word in cases:
        p = expect_problem(S.post("/streams/x-1", body, headers={"Content-Type": "application/json"}),
                           400, "body %r" % (body,))
        if word not in p["detail"]:
            fail("body %r: detail %r does not name %r" % (body, p["detail"], word))
    # msgpack batches name the event too (the index is formatted by hand)
    mp_cases = [
        ([{"type": "A"}] * 12 + [{"data": {}}], "events[12]"),
        ([{"type": "A"}] * 3 + [{"type": "A", "data": 5}], "events[3].data"),
    ]
    for body, word in mp_cases:
        p = expect_problem(S.post("/streams/x-1", msgpack.packb(body),
                                  headers={"Content-Type": "application/msgpack"}), 400, word)
        if word not in p["detail"]:
            fail("msgpack body: detail %r does not name %r" % (p["detail"], word))
    p = expect_problem(S.post("/streams/bad%01name", {"type": "A"}), 400, "stream name")
    if "stream" not in p["detail"]:
        fail("detail %r" % p)
    deep = {"type": "A", "data": {}}
    d = deep["data"]
    for _ in range(20):
        d["x"] = {}
        d = d["x"]
    expect_problem(S.post("/streams/x-1", deep), 400, "too deep")


def test_append_multi_stream_is_atomic():
    body = {"streams": [{"stream": "order-1", "expected_revision": "no_stream", "events": [{"type": "Placed"}]},
                        {"stream": "stock-1", "events": [{"type": "Reserved"}, {"type": "Reserved"}]}]}
    r = expect(S.post("/append", body), 201, "multi")
    if [(a["stream"], a["revision"]) for a in r.json()["events"]] != [("order-1", 0), ("stock-1", 0), ("stock-1", 1)]:
        fail("multi acks %r" % r.json())
    body = {"streams": [{"stream": "stock-2", "events": [{"type": "Reserved"}]},
                        {"stream": "order-1", "expected_revision": "no_stream", "events": [{"type": "Placed"}]}]}
    p = expect_problem(S.post("/append", body), 409, "multi conflict")
    if p["stream"] != "order-1":
        fail("409 names %r" % p)
    expect_problem(S.get("/streams/stock-2"), 404, "nothing of a refused batch is written")
    for bad, word in [({"streams": []}, "streams"), ({"streams": [{"events": [{"type": "A"}]}]}, "streams[0].stream"),
                      ({"streams": [{"stream": "a-1", "events": [{"type": "A"}], "expected_revision": -1}]},
                       "expected_revision"),
                      ({"streams": [{"stream": "a-1", "events": {}}]}, "events")]:
        p = expect_problem(S.post("/append", bad), 400, "multi %r" % bad)
        if word not in p["detail"]:
            fail("detail %r lacks %r" % (p["detail"], word))


def test_append_answer_escapes_and_idempotent():
    # the 201/200 body is written by hand (no JSON tree): a stream name with
    # a quote and a backslash must come back intact, in JSON and in msgpack,
    # and a repeat of the same ids must say idempotent in both
    name = 'q"uo\\te-1'
    path = "/streams/" + urllib.parse.quote(name, safe="")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    evs = [{"type": "T", "id": i, "data": {"k": n}} for n, i in enumerate(ids)]
    r = expect(S.post(path, evs), 201, "append to an odd name")
    body = r.json()
    if [a["stream"] for a in body["events"]] != [name] * 3 or [a["id"] for a in body["events"]] != ids:
        fail("acks %r" % body)
    if [a["revision"] for a in body["events"]] != [0, 1, 2] or "idempotent" in body:
        fail("acks %r" % body)
    first = body["events"][0]["position"]
    if r.header("Location") != "/events/%d" % first:
        fail("Location %r" % r.header("Location"))
    r = expect(S.post(path, evs), 200, "the same ids again")
    if r.json() != dict(body, idempotent=True):
        fail("idempotent answer %r" % r.body)
    mp = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}
    r = expect(S.post(path, msgpack.packb(evs), headers=mp), 200, "again, in msgpack")
    if msgpack.unpackb(r.body, raw=False) != dict(body, idempotent=True):
        fail("msgpack idempotent answer %r" % r.body)


def test_msgpack_in_and_out():
    mp = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}
    eid = uuid.uuid4()
    body = msgpack.packb([{"type": "Blob", "id": eid.bytes, "data": {"b": b"\x00\xff", "n": 7}},
                          {"type": "Blob", "data": {"s": "x"}, "meta": {"actor": "me"}}], use_bin_type=True)
    r = expect(S.post("/streams/mp-1", body, headers=mp), 201, "msgpack append")
    if r.header("Content-Type") != "application/msgpack":
        fail("answer type %r" % r.header("Content-Type"))
    acks = msgpack.unpackb(r.body, raw=False)["events"]
    if acks[0]["id"] != str(eid) or acks[1]["revision"] != 1:
        fail("msgpack acks %r" % acks)
    r = expect(S.get("/streams/mp-1", headers={"Accept": "application/msgpack"}), 200, "msgpack read")
    page = msgpack.unpackb(r.body, raw=False)
    ev = page["events"][0]
    if ev["data"] != {"b": b"\x00\xff", "n": 7} or ev["subject"] != "mp-1" or page["next"] is not None:
        fail("msgpack page %r" % page)
    if page["events"][1]["meta"] != {"actor": "me"}:
        fail("meta %r" % page["events"][1])
    r = expect(S.get("/events/%d" % ev["position"], headers={"Accept": "application/msgpack"}), 200, "one")
    if msgpack.unpackb(r.body, raw=False)["id"] != str(eid):
        fail("msgpack event %r" % r.body)
    # the multi-stream shape in msgpack
    body = msgpack.packb({"streams": [{"stream": "mp-2", "expected_revision": "no_stream",
                                       "events": [{"type": "A", "data": {}}]}]})
    expect(S.post("/append", body, headers=mp), 201, "msgpack multi")
    # hostile bodies are refused by the pre-scan, before anything allocates
    for bad, word in [(b"\xdd\xff\x00\x00\x00", "msgpack"), (b"\x92\x81\xa4type", "msgpack"),
                      (b"\xc1", "msgpack"), (msgpack.packb({"type": 5}), "type"),
                      (msgpack.packb([{"type": "A", "data": [1]}]), "data"),
                      (msgpack.packb({"type": "A"}) + b"\x00", "msgpack")]:
        p = expect_problem(S.post("/streams/mp-3", bad, headers=mp), 400, "msgpack %r" % bad)
        if word not in p["detail"]:
            fail("detail %r lacks %r" % (p["detail"], word))
    expect_problem(S.get("/streams/mp-3"), 404, "nothing written by bad msgpack")


def test_read_paging_follows_next_to_the_end():
    evs = [{"type": "Step", "data": {"i": i}} for i in range(23)]
    expect(S.append("pager-1", evs), 201, "append 23")
    seen, url, pages = [], "/streams/pager-1?limit=5", 0
    while url:
        page = expect(S.get(url), 200, url).json()
        seen += [e["data"]["i"] for e in page["events"]]
        url, pages = page["next"], pages + 1
        if url and page["next_from"] != page["events"][-1]["revision"] + 1:
            fail("next_from %r" % page)
    if seen != list(range(23)) or pages != 5:
        fail("paged %r in %d pages" % (seen, pages))
    page = S.get("/streams/pager-1?backward&limit=4").json()
    if [e["revision"] for e in page["events"]] != [22, 21, 20, 19] or page["next_from"] != 18:
        fail("backward %r" % page)
    page = S.get("/streams/pager-1?from=10&until=12").json()
    if [e["revision"] for e in page["events"]] != [10, 11, 12] or page["next"] is not None:
        fail("from/until %r" % page)
    # the whole log, filtered, paged
    head = S.get("/events?limit=1").json()["head"]
    seen, url = [], "/events?type=Step&limit=7"
    while url:
        page = S.get(url).json()
        seen += [e["data"]["i"] for e in page["events"]]
        url = page["next"]
    if seen != list(range(23)):
        fail("filtered paging %r" % seen)
    page = S.get("/events?category=pager&limit=100").json()
    if len(page["events"]) != 23 or any(e["subject"] != "pager-1" for e in page["events"]):
        fail("category %r" % page)
    page = S.get("/events?stream=pager-1&from=%d&until=%d" % (head - 2, head)).json()
    if [e["position"] for e in page["events"]] != [head - 2, head - 1, head]:
        fail("from/until positions %r" % page)
    first = page["events"][0]
    t = urllib.parse.quote(first["time"])
    page = S.get("/events?stream=pager-1&since=" + t).json()
    if page["events"][0]["time"] < first["time"] or not page["events"]:
        fail("since %r" % page)
    page = S.get("/events?backward&limit=2&until=%d" % (head - 1)).json()
    if [e["position"] for e in page["events"]] != [head, head - 1]:
        fail("backward until %r" % page)


def test_read_by_actor_and_correlation():
    # 30 events over three streams; alice every third, one request id per five
    for i in range(30):
        meta = {"actor": "alice" if i % 3 == 0 else "bob", "correlation_id": "req-%d" % (i // 5)}
        expect(S.append("aud-%d" % (i % 3), {"type": "Odd" if i % 2 else "Even", "data": {"i": i},
                                             "meta": meta}), 201, "append %d" % i)
    expect(S.append("aud-0", {"type": "Even", "data": {"i": 99}, "meta": {"actor": 7}}), 201, "actor not a string")

    def follow(url):
        seen, pages = [], 0
        while url:
            page = expect(S.get(url), 200, url).json()
            seen += [e["data"]["i"] for e in page["events"]]
            url, pages = page["next"], pages + 1
        return seen, pages
    seen, pages = follow("/events?actor=alice&limit=3")
    if seen != list(range(0, 30, 3)) or pages != 4:
        fail("actor paging %r in %d pages" % (seen, pages))
    seen, _ = follow("/events?actor=bob&type=Odd&limit=2")
    if seen != [i for i in range(30) if i % 3 and i % 2]:
        fail("actor+type paging %r" % seen)
    seen, _ = follow("/events?correlation_id=req-2&backward&limit=2")
    if seen != [14, 13, 12, 11, 10]:
        fail("correlation backward paging %r" % seen)
    seen, _ = follow("/events?actor=alice&correlation_id=req-1&category=aud")
    if seen != [6, 9]:
        fail("actor+correlation %r" % seen)
    evs = S.get("/events?actor=alice&limit=100").json()["events"]
    since, until = urllib.parse.quote(evs[2]["time"]), urllib.parse.quote(evs[5]["time"])
    seen, _ = follow("/events?actor=alice&since=%s&until=%s&limit=1" % (since, until))
    if seen != [6, 9, 12, 15]:
        fail("actor in a time range %r" % seen)
    if S.get("/events?actor=nobody").json()["events"] != []:
        fail("unknown actor")
    if S.get("/events?actor=7").json()["events"] != []:
        fail("a number is not the string '7'")


def test_read_errors_and_single_events():
    expect_problem(S.get("/streams/never-1"), 404, "unknown stream", "not-found")
    for q in ["limit=0", "limit=999999", "from=abc", "until=yesterday", "since=12:00"]:
        expect_problem(S.get("/events?" + q), 400, q)
    head = S.get("/events?limit=1").json()["head"]
    ev = expect(S.get("/events/%d" % head), 200, "event").json()
    if ev["position"] != head or ev["specversion"] != "1.0" or "revision" not in ev:
        fail("event %r" % ev)
    for p in ["0", str(head + 1), "x"]:
        expect_problem(S.get("/events/" + p), 404, "event " + p)


def test_routing():
    p = expect_problem(S.request("DELETE", "/streams/a-1"), 405, "DELETE")
    r = S.request("PUT", "/events")
    if r.status != 405 or "GET" not in (r.header("Allow") or ""):
        fail("405 Allow %r" % r.headers)
    r = expect(S.request("OPTIONS", "/streams/a-1"), 204, "OPTIONS")
    if "POST" not in r.header("Allow"):
        fail("Allow %r" % r.header("Allow"))
    r = expect(S.request("HEAD", "/streams/job-1"), 200, "HEAD")
    if r.body:
        fail("HEAD with a body")
    expect_problem(S.get("/no/such/thing"), 404, "unknown path")
    expect_problem(S.post("/events", {"type": "A"}), 405, "POST /events")
    r = expect(S.get("/"), 200, "console")
    if b"<title>evlog</title>" not in r.body:
        fail("console %r" % r.body[:100])
    if expect(S.get("/healthz"), 200, "healthz").json() != {"status": "ok"}:
        fail("healthz")
    if expect(S.get("/readyz"), 200, "readyz").json()["status"] != "ready":
        fail("readyz")
    del p


def test_keep_alive_and_pipelining():
    c = S.conn()
    for i in range(20):
        expect(S.request("POST", "/streams/ka-1", {"type": "K", "data": {"i": i}}, conn=c), 201, "keep-alive")
    c.close()
    import socket
    s = socket.create_connection(("127.0.0.1", S.port))
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(req * 3)
    got = b""
    while got.count(b"HTTP/1.1 200") < 3:
        b = s.recv(65536)
        if not b:
            break
        got += b
    if got.count(b"HTTP/1.1 200") != 3:
        fail("pipelined answers %r" % got)
    s.close()


def main():
    global S
    S = Server("--no-builtin")
    try:
        run([test_append_one_and_idempotent_repeat, test_id_conflicts, test_append_array_and_expected_revision,
             test_append_400_names_the_problem, test_append_multi_stream_is_atomic,
             test_append_answer_escapes_and_idempotent, test_msgpack_in_and_out,
             test_read_paging_follows_next_to_the_end, test_read_by_actor_and_correlation,
             test_read_errors_and_single_events, test_routing,
             test_keep_alive_and_pipelining])
    finally:
        if S.stop() != 0:
            print(S.log())
            sys.exit(1)
        S.close()


if __name__ == "__main__":
    main()
