#!/usr/bin/python3
"""Idempotent retry across crashes.  A client sends an append with its own
event ids and never gets the answer, because evlogd is killed between
taking the request and answering it; after the restart it re-sends the same
request.  Whatever the kill interrupted, the events must be in the log
exactly once and the retry must answer their one position:

- lost after the commit: the events are visible in the log (seen from
  another connection), the server is SIGKILLed, the client drops its
  connection unread; the retry answers 200 idempotent with those positions;
- timed out: the server is SIGSTOPped as soon as the request is sent, the
  client's read times out, the stopped server is SIGKILLed; the retry
  answers 201 (it had not committed) or 200 (it had), never a second copy.

Single events with an expected revision, batches, and multi-stream
POST /append batches.  Then the same id with another payload (data, meta,
type, stream) is 409 id-conflict naming the id, and writes nothing."""
import http.client
import json
import os
import signal
import socket
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crashlib import all_events, check_log_shape, cli, scaled  # noqa: E402
from evlsrv import Server, expect, expect_problem, fail, run, wait_for  # noqa: E402

S = None
STATS = {"after_commit": 0, "timed_out_uncommitted": 0, "timed_out_committed": 0}


def raw_send(path, body, headers):
    """Send one request on a fresh socket and return the socket, unread."""
    data = json.dumps(body).encode()
    req = "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        path, len(data))
    for k, v in headers.items():
        req += "%s: %s\r\n" % (k, v)
    s = socket.create_connection(("127.0.0.1", S.port), timeout=10)
    s.sendall(req.encode() + b"\r\n" + data)
    return s


def request_for(trial, expected_rev):
    """The trial's request: (path, body, headers, [(stream, id)...])."""
    kind = trial % 3
    if kind == 0:
        ev = {"type": "Step", "data": {"trial": trial}, "id": str(uuid.uuid4()), "meta": {"actor": "retry"}}
        hdr = {"Expected-Revision": "no_stream" if expected_rev is None else str(expected_rev)}
        return "/streams/own-1", ev, hdr, [("own-1", ev["id"])]
    if kind == 1:
        evs = [{"type": "Step", "data": {"trial": trial, "i": i}, "id": str(uuid.uuid4())} for i in range(4)]
        return "/streams/batch-1", evs, {}, [("batch-1", e["id"]) for e in evs]
    streams = [{"stream": s, "events": [{"type": "Step", "data": {"trial": trial, "i": i}, "id": str(uuid.uuid4())}
                                        for i in range(2)]} for s in ("multi-x", "multi-y")]
    return "/append", {"streams": streams}, {}, [(s["stream"], e["id"]) for s in streams for e in s["events"]]


def in_log(ids):
    """The positions of these ids in the log (by reading their streams)."""
    found = {}
    for stream in {s for s, _ in ids}:
        r = S.get("/streams/%s?limit=10000" % stream)
        if r.status == 404:
            continue
        for ev in expect(r, 200, "read " + stream).json()["events"]:
            found.setdefault(ev["id"], []).append(ev["position"])
    return {i: found[i] for _, i in ids if i in found}


def restart_after_kill():
    S.proc.send_signal(signal.SIGKILL)
    S.proc.wait(20)
    S.start()


def retry_and_check(path, body, headers, ids, committed_before):
    r = S.post(path, body, headers=headers)
    if r.status not in (200, 201):
        fail("retry: %r" % r)
    acks = r.json()["events"]
    if r.status == 200 and r.json().get("idempotent") is not True:
        fail("a 200 without idempotent: %r" % r)
    found = in_log(ids)
    for (stream, eid), a in zip(ids, acks):
        if a["id"] != eid or a["stream"] != stream:
            fail("ack %r for %s in %s" % (a, eid, stream))
        if found.get(eid) != [a["position"]]:
            fail("event %s at %r in the log, acknowledged at %d" % (eid, found.get(eid), a["position"]))
    if committed_before and (r.status != 200 or [committed_before[i] for _, i in ids] != [[a["position"]]
                                                                                      for a in acks]):
        fail("the events were committed before the kill at %r, the retry answered %r" % (committed_before, r))
    return r.status, acks


def test_retry_after_lost_answers():
    trials = scaled(24, 9)
    own_rev = None
    for trial in range(trials):
        path, body, headers, ids = request_for(trial, own_rev)
        sock = raw_send(path, body, headers)
        if trial % 2 == 0:
            # lost after the commit: wait until the events are in the log
            committed = wait_for(lambda: len(in_log(ids)) == len(ids) and in_log(ids), 20, "the commit")
            restart_after_kill()
            sock.close()  # the answer, if any arrived, is never read
            status, acks = retry_and_check(path, body, headers, ids, committed)
            STATS["after_commit"] += 1
        else:
            # timed out: the server stops right after taking the request
            S.proc.send_signal(signal.SIGSTOP)
            sock.settimeout(0.3)
            try:
                sock.recv(65536)  # an answer sent before it stopped is dropped like a lost one
            except socket.timeout:
                pass
            S.proc.send_signal(signal.SIGKILL)
            S.proc.wait(20)
            sock.close()
            S.start()
            before = in_log(ids)
            if before and len(before) != len(ids):
                fail("half a batch committed: %r of %r" % (before, ids))
            status, acks = retry_and_check(path, body, headers, ids, before or None)
            STATS["timed_out_committed" if before else "timed_out_uncommitted"] += 1
        if trial % 3 == 0:
            own_rev = acks[-1]["revision"]
    # nothing twice, anywhere; the log verifies
    events = all_events(S)
    check_log_shape(events)
    ids = [e["id"] for e in events]
    if len(ids) != len(set(ids)):
        fail("duplicate ids in the log")
    if len(events) != sum(len(request_for(t, 0)[3]) for t in range(trials)):
        fail("%d events for %d trials" % (len(events), trials))
    print("     %d kills between receipt and answer: %r; %d events, none twice"
          % (trials, STATS, len(events)), flush=True)


def test_same_id_other_payload_is_a_conflict():
    eid = str(uuid.uuid4())
    ev = {"type": "Step", "data": {"v": 1}, "id": eid, "meta": {"actor": "a"}}
    first = expect(S.append("idc-1", ev), 201, "first").json()["events"][0]
    restart_after_kill()
    again = expect(S.append("idc-1", ev), 200, "the same event again, after a crash").json()
    if again["events"][0]["position"] != first["position"] or again.get("idempotent") is not True:
        fail("repeat: %r" % again)
    head = S.get("/events?limit=1").json()["head"]
    variants = [("idc-1", dict(ev, data={"v": 2})), ("idc-1", dict(ev, data={})),
                ("idc-1", dict(ev, meta={"actor": "b"})), ("idc-1", {k: v for k, v in ev.items() if k != "meta"}),
                ("idc-1", dict(ev, type="Other")), ("idc-2", ev)]
    for stream, body in variants:
        p = expect_problem(S.append(stream, body), 409, "same id, %r" % body, slug="id-conflict")
        if eid not in p["detail"] or "different event" not in p["detail"]:
            fail("detail %r" % p["detail"])
    # in a batch and in a multi-stream append too (the whole batch refused)
    expect_problem(S.append("idc-1", [dict(ev, data={"v": 3})]), 409, "in a batch", slug="id-conflict")
    expect_problem(S.post("/append", {"streams": [{"stream": "idc-1", "events": [dict(ev, data={"v": 3})]}]}), 409,
                   "in /append", slug="id-conflict")
    # msgpack body with the data in a wider integer encoding is the same event
    import msgpack
    mp = msgpack.packb({"type": "Step", "data": {"v": 1}, "id": eid, "meta": {"actor": "a"}})
    wide = mp.replace(b"\xa1v\x01", b"\xa1v\xcd\x00\x01")
    if wide == mp:
        fail("could not widen the msgpack integer")
    r = expect(S.post("/streams/idc-1", wide, headers={"Content-Type": "application/msgpack"}), 200,
               "the same event, another msgpack encoding")
    if r.json()["events"][0]["position"] != first["position"]:
        fail("wide repeat %r" % r)
    if S.get("/events?limit=1").json()["head"] != head:
        fail("a conflict wrote something")


def main():
    global S
    S = Server("--no-builtin", "--sync", "full")
    try:
        run([test_retry_after_lost_answers, test_same_id_other_payload_is_a_conflict])
    finally:
        if S.proc and S.proc.poll() is None:
            S.stop()
            cli("--data", S.data, "verify")
        S.close()


if __name__ == "__main__":
    main()
