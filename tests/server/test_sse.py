#!/usr/bin/python3
"""evlogd feeds (GET /subscribe): catch-up then live under concurrent appends
with no gap and no duplicate at the seam, resume with Last-Event-ID, from=now,
filters, heartbeats and retry:, and the slow-subscriber policy (fed from the
log instead of queued copies; disconnected with a final comment when it
reads nothing at all)."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import SSE, Server, expect, expect_problem, fail, run, wait_for  # noqa: E402

S = None


def head():
    return S.get("/events?limit=1").json()["head"]


def fill(stream, n, size=0, per=500, server=None):
    srv = server or S
    pad = "x" * size
    c = srv.conn()
    for start in range(0, n, per):
        evs = [{"type": "Fill", "data": {"i": i, "pad": pad}} for i in range(start, min(n, start + per))]
        expect(srv.request("POST", "/streams/" + stream, evs, conn=c), 201, "fill")
    c.close()


class Appenders:
    """Threads appending one event per request to their own streams."""

    def __init__(self, n=2, category="live"):
        self.stop = threading.Event()
        self.count = [0] * n
        self.threads = [threading.Thread(target=self.loop, args=(k, category)) for k in range(n)]
        for t in self.threads:
            t.start()

    def loop(self, k, category):
        c = S.conn()
        while not self.stop.is_set():
            expect(S.request("POST", "/streams/%s-%d" % (category, k),
                             {"type": "Tick%d" % k, "data": {"k": k, "i": self.count[k]}}, conn=c), 201, "tick")
            self.count[k] += 1
        c.close()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def check_contiguous(evs, first, last, what):
    ids = [e["id"] for e in evs]
    if ids != list(range(first, last + 1)):
        gaps = [(a, b) for a, b in zip(ids, ids[1:]) if b != a + 1]
        fail("%s: ids %d..%d not contiguous from %d to %d (first breaks: %r)" %
             (what, ids[0] if ids else -1, ids[-1] if ids else -1, first, last, gaps[:5]))
    for e in evs:
        if e["data"]["position"] != e["id"] or e["event"] != e["data"]["type"]:
            fail("%s: frame and event disagree: %r" % (what, e))


def read_until(sub, last, timeout=30, have=0):
    """Events until position `last`; `have`: the last position already received."""
    out = []
    deadline = time.monotonic() + timeout
    while (out[-1]["id"] if out else have) < last:
        ev = sub.next(max(0.1, deadline - time.monotonic()))
        if ev is None:
            fail("stream ended at %r, want %d; comments %r" % (out[-1]["id"] if out else None, last, sub.comments))
        out.append(ev)
    return out


def test_catch_up_then_live_without_gap_or_duplicate():
    fill("bulk-1", 6000)  # beyond the ring (4096): catch-up comes from the log
    app = Appenders()
    try:
        wait_for(lambda: sum(app.count) > 50, 10, "appends to start")
        subs = [SSE(S, "/subscribe?from=1"), SSE(S, "/subscribe"), SSE(S, "/subscribe?from=3000")]
        starts = [1, 1, 3000]
        # drain part of the way while the appenders go on
        early = [s.take(2000) for s in subs]
        h_before = head()
        late = SSE(S, "/subscribe?from=now")
        h0 = head()  # the subscription was taken between the two
        wait_for(lambda: head() > h0 + 100, 10, "more appends")
    finally:
        app.finish()
    h = head()
    for s, first, got in zip(subs, starts, early):
        check_contiguous(got + read_until(s, h, have=got[-1]["id"]), first, h, "subscriber from %d" % first)
        s.close()
    got = read_until(late, h)
    if not h_before < got[0]["id"] <= h0 + 1:
        fail("from=now started at %d, head was %d..%d" % (got[0]["id"], h_before, h0))
    check_contiguous(got, got[0]["id"], h, "from=now")
    late.close()


def test_resume_with_last_event_id_at_the_seam():
    app = Appenders(category="seam")
    try:
        sub = SSE(S, "/subscribe?category=seam")
        got = sub.take(300)
        sub.close()
        last = got[-1]["id"]
        resumed = SSE(S, "/subscribe?category=seam&from=1", headers={"Last-Event-ID": str(last)})
        more = resumed.take(200)
    finally:
        app.finish()
    h = head()
    more += read_until(resumed, S.get("/events?category=seam&backward&limit=1").json()["events"][0]["position"],
                       have=more[-1]["id"])
    resumed.close()
    ids = [e["id"] for e in got + more]
    if len(set(ids)) != len(ids) or ids != sorted(ids):
        fail("duplicates or disorder across the resume: %r" % ids[290:320])
    # no gap: exactly the category's events, from the log's own read
    want, url = [], "/events?category=seam&limit=1000"
    while url:
        page = S.get(url).json()
        want += [e["position"] for e in page["events"] if e["position"] <= h]
        url = page["next"]
    if ids != want[:len(ids)] or len(ids) != len(want):
        fail("feed across resume %d events, log has %d" % (len(ids), len(want)))
    if more[0]["id"] <= last:
        fail("resume repeated %d" % more[0]["id"])


def test_filters_retry_and_heartbeat():
    h = head()
    by_type = SSE(S, "/subscribe?from=%d&type=Pick" % (h + 1))
    by_stream = SSE(S, "/subscribe?from=%d&stream=pick-2" % (h + 1))
    by_cat = SSE(S, "/subscribe?from=%d&category=pick" % (h + 1))
    for k in range(3):
        expect(S.append("pick-%d" % k, [{"type": "Pick"}, {"type": "Other"}]), 201, "append")
    t = by_type.take(3)
    if [e["event"] for e in t] != ["Pick"] * 3 or [e["data"]["subject"] for e in t] != ["pick-0", "pick-1", "pick-2"]:
        fail("type filter %r" % t)
    t = by_stream.take(2)
    if {e["data"]["subject"] for e in t} != {"pick-2"}:
        fail("stream filter %r" % t)
    if len(by_cat.take(6)) != 6:
        fail("category filter")
    if by_type.retry != 3000:
        fail("retry: %r" % by_type.retry)
    if by_type.headers.get("content-type") != "text/event-stream" or by_type.headers.get("cache-control") != "no-cache":
        fail("headers %r" % by_type.headers)
    deadline = time.monotonic() + 5
    while not any("heartbeat" in c for c in by_stream.comments):
        if time.monotonic() > deadline:
            fail("no heartbeat: %r" % by_stream.comments)
        try:
            by_stream.next(0.3)
        except AssertionError:
            pass
    for s in (by_type, by_stream, by_cat):
        s.close()
    bad = SSE(S, "/subscribe", headers={"Last-Event-ID": "yesterday"})
    if bad.status != 400:
        fail("bad Last-Event-ID: %d" % bad.status)
    bad.close()
    expect_problem(S.get("/subscribe?from=soon"), 400, "bad from")


def test_slow_subscriber_is_fed_from_the_log_not_queued():
    start = head() + 1
    reads_before = S.metric("evlog_sse_catchup_reads_total")
    slow = SSE(S, "/subscribe?from=%d&category=slow" % start, rcvbuf=4096)
    # ~16 MB of frames: more than the kernel's socket buffers absorb, far
    # past the 64 KiB cap, and past what the ring holds (4096 frames)
    n = 9000
    fill("slow-1", n, size=1500)
    wait_for(lambda: (S.metric("evlog_sse_queued_bytes") or 0) > 32 * 1024, 5, "the cap to be reached")
    queued = S.metric("evlog_sse_queued_bytes")
    if queued > 64 * 1024 + 32 * 1024:
        fail("a slow subscriber has %d bytes queued; the cap is 64 KiB" % queued)
    got = slow.take(n, timeout=60)
    check_contiguous(got, got[0]["id"], got[0]["id"] + n - 1, "slow subscriber")
    if got[0]["data"]["data"]["i"] != 0 or got[-1]["data"]["data"]["i"] != n - 1:
        fail("slow subscriber got %r..%r" % (got[0]["data"]["data"]["i"], got[-1]["data"]["data"]["i"]))
    if S.metric("evlog_sse_catchup_reads_total") <= reads_before:
        fail("the slow subscriber was not fed from the log")
    slow.close()


def test_stalled_subscriber_is_disconnected_with_a_reason():
    srv = Server("--no-builtin", "--sse-stall-ms", "1000", "--sse-buffer", "16K")
    try:
        stalled = SSE(srv, "/subscribe?from=1", rcvbuf=4096)
        fill("stall-1", 3000, size=1000, server=srv)
        wait_for(lambda: srv.metric("evlog_sse_slow_disconnects_total") == 1, 15, "the stall disconnect")
        got = []
        while True:
            ev = stalled.next(10)
            if ev is None:
                break
            got.append(ev)
        if not any("too slow" in c and "Last-Event-ID" in c for c in stalled.comments):
            fail("no closing comment: %r" % stalled.comments[-3:])
        check_contiguous(got, 1, got[-1]["id"], "before the disconnect")
        if got[-1]["id"] >= 3000:
            fail("a stalled subscriber got everything?")
        stalled.close()
        again = SSE(srv, "/subscribe", headers={"Last-Event-ID": str(got[-1]["id"])})
        rest = read_until(again, 3000)
        check_contiguous(got + rest, 1, 3000, "after resuming")
        again.close()
        if srv.metric("evlog_sse_subscribers") != 0:
            wait_for(lambda: srv.metric("evlog_sse_subscribers") == 0, 5, "subscribers to go")
    finally:
        if srv.stop() != 0:
            fail("stall server exit: %s" % srv.log())
        srv.close()


def test_idle_subscribers_cost_little():
    h = head()
    subs = [SSE(S, "/subscribe?from=now&type=Rare") for _ in range(200)]
    wait_for(lambda: S.metric("evlog_sse_subscribers") >= 200, 10, "200 subscribers")
    expect(S.append("rare-1", {"type": "Rare", "data": {"x": 1}}), 201, "rare")
    for s in subs:
        ev = s.next(10)
        if ev["event"] != "Rare" or ev["id"] <= h:
            fail("idle subscriber got %r" % ev)
        s.close()
    wait_for(lambda: S.metric("evlog_sse_subscribers") == 0, 10, "subscribers to be released")
    wait_for(lambda: S.metric("evlog_http_connections") <= 1, 10, "connections to be released")


def test_actor_and_correlation_filters():
    h = head()
    live = SSE(S, "/subscribe?from=%d&actor=carol" % (h + 1))
    both = SSE(S, "/subscribe?from=%d&actor=carol&correlation_id=r-1" % (h + 1))
    for i in range(6):
        meta = {"actor": "carol" if i % 2 == 0 else "dave", "correlation_id": "r-%d" % (i // 3)}
        expect(S.append("who-%d" % i, {"type": "Did", "data": {"i": i}, "meta": meta}), 201, "append")
    expect(S.append("who-9", {"type": "Did", "data": {"i": 9}, "meta": {"actor": ["carol"]}}), 201, "not a string")
    later = SSE(S, "/subscribe?from=%d&actor=carol" % (h + 1))  # after the appends: a catch-up
    for sub, want in ((live, [0, 2, 4]), (later, [0, 2, 4]), (both, [4])):
        got = [e["data"]["data"]["i"] for e in sub.take(len(want))]
        if got != want:
            fail("actor/correlation feed %r, want %r" % (got, want))
    # nothing else arrives: the next frame a feed gets is an event appended now
    expect(S.append("who-10", {"type": "Did", "data": {"i": 10}, "meta": {"actor": "carol", "correlation_id": "r-1"}}),
           201, "append")
    for sub in (live, later, both):
        if sub.take(1)[0]["data"]["data"]["i"] != 10:
            fail("a feed let an unmatched event through")
        sub.close()


def main():
    global S
    S = Server("--no-builtin", "--sse-buffer", "64K", "--sse-heartbeat-ms", "200")
    try:
        run([test_catch_up_then_live_without_gap_or_duplicate, test_resume_with_last_event_id_at_the_seam,
             test_filters_retry_and_heartbeat, test_actor_and_correlation_filters,
             test_slow_subscriber_is_fed_from_the_log_not_queued,
             test_stalled_subscriber_is_disconnected_with_a_reason, test_idle_subscribers_cost_little])
    finally:
        if S.stop() != 0:
            print(S.log())
            sys.exit(1)
        S.close()


if __name__ == "__main__":
    main()
