#!/usr/bin/python3
"""meta.actor against the bearer token (docs/audit.md): the server fills
meta.actor from the token's name when the client gives none; a non-admin
token cannot append as another token's name (403 actor-forbidden, nothing
written), however the body spells it (JSON, msgpack, a repeated key); an
admin may; other lineage fields (causation_id, source, correlation_id) pass
through untouched; without a token file the client's actor is kept as
given.  Also GET /digest, the hash-chain head, against `evlog digest`, and
GET /projections/{name}/digest against `evlog digest --projection`."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import BIN, Server, expect, expect_problem, fail, run  # noqa: E402

EVLOG = os.path.join(BIN, "evlog")
S = None
TMP = tempfile.mkdtemp(prefix="evlog-actor-")
TOKENS = """# name the tokens: the name is the actor
alice-secret writer alice
bob-secret writer bob
anon-secret writer
reader-secret reader carol
root-secret admin ops-admin
"""


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def events(stream):
    r = expect(S.get("/streams/" + stream, headers=bearer("reader-secret")), 200, "read " + stream)
    return r.json()["events"]


def test_actor_filled_from_token():
    expect(S.append("order-1", {"type": "OrderPlaced", "data": {"n": 1}}, headers=bearer("alice-secret")),
           201, "alice appends")
    expect(S.append("order-1", {"type": "OrderPaid", "meta": {"correlation_id": "c-1"}},
                    headers=bearer("bob-secret")), 201, "bob appends with meta")
    ev = events("order-1")
    if [e["meta"].get("actor") for e in ev] != ["alice", "bob"]:
        fail("actors %r" % [e["meta"] for e in ev])
    if ev[1]["meta"] != {"correlation_id": "c-1", "actor": "bob"}:
        fail("meta kept and actor added: %r" % ev[1]["meta"])
    # and the actor index serves them
    r = expect(S.get("/events?actor=bob", headers=bearer("reader-secret")), 200, "events by actor")
    if [e["type"] for e in r.json()["events"]] != ["OrderPaid"]:
        fail("?actor=bob %r" % r.json())
    # the own name given explicitly is fine; an unnamed token adds nothing
    expect(S.append("order-2", {"type": "A", "meta": {"actor": "alice"}}, headers=bearer("alice-secret")),
           201, "own name")
    expect(S.append("order-2", {"type": "B"}, headers=bearer("anon-secret")), 201, "unnamed token")
    ev = events("order-2")
    if ev[0]["meta"] != {"actor": "alice"} or "actor" in ev[1]["meta"]:
        fail("order-2 metas %r" % [e["meta"] for e in ev])


def test_actor_not_spoofable():
    before = S.get("/digest", headers=bearer("reader-secret")).json()["position"]
    p = expect_problem(S.append("order-3", {"type": "X", "meta": {"actor": "bob"}}, headers=bearer("alice-secret")),
                       403, "alice as bob", "actor-forbidden")
    if "bob" not in p["detail"] or "admin" not in p["detail"] or p.get("token") != "alice":
        fail("403 body %r" % p)
    expect_problem(S.append("order-3", {"type": "X", "meta": {"actor": "ops-admin"}}, headers=bearer("anon-secret")),
                   403, "unnamed as admin's name", "actor-forbidden")
    # a batch is refused whole when one of its events lies
    body = {"streams": [{"stream": "order-3", "events": [{"type": "Ok"}]},
                        {"stream": "order-4", "events": [{"type": "Y", "meta": {"actor": "carol"}}]}]}
    p = expect_problem(S.post("/append", body, headers=bearer("bob-secret")), 403, "batch", "actor-forbidden")
    if p.get("event_index") != 1:
        fail("event_index %r" % p)
    # msgpack: the key twice (decoders disagree on which wins): a map with a
    # repeated key is refused as malformed before any actor check
    # (evl_mp_unique_keys), as JSON bodies with one are
    meta = b"\x82\xa5actor\xa5alice\xa5actor\xa3bob"
    body = b"\x82\xa4type\xa1Z\xa4meta" + meta
    r = S.post("/streams/order-3", body, headers=dict(bearer("alice-secret"), **{"Content-Type": "application/msgpack"}))
    p = expect_problem(r, 400, "repeated actor key in msgpack", "bad-request")
    if "same key twice" not in p["detail"]:
        fail("repeated actor key: %r" % p)
    after = S.get("/digest", headers=bearer("reader-secret")).json()["position"]
    if after != before:
        fail("refused appends wrote something: head %d -> %d" % (before, after))
    # a name that is no token's is the client's business (e.g. an end user)
    expect(S.append("order-3", {"type": "X", "meta": {"actor": "user:42"}}, headers=bearer("alice-secret")),
           201, "non-token actor")
    if events("order-3")[0]["meta"]["actor"] != "user:42":
        fail("client actor not kept")


def test_admin_may_set_actor():
    expect(S.append("order-5", {"type": "Fixed", "meta": {"actor": "alice"}}, headers=bearer("root-secret")),
           201, "admin as alice")
    expect(S.append("order-5", {"type": "Own"}, headers=bearer("root-secret")), 201, "admin plain")
    if [e["meta"]["actor"] for e in events("order-5")] != ["alice", "ops-admin"]:
        fail("admin actors %r" % [e["meta"] for e in events("order-5")])


def test_lineage_passes_through():
    meta = {"causation_id": "evt-9", "source": "billing/v2", "correlation_id": "c-7", "n": [1, {"x": None}]}
    expect(S.append("order-6", {"type": "Q", "meta": meta}, headers=bearer("alice-secret")), 201, "lineage")
    got = events("order-6")[0]["meta"]
    if got != dict(meta, actor="alice"):
        fail("meta %r" % got)
    # msgpack body: bin values survive, the actor is appended after them
    body = msgpack.packb({"type": "R", "meta": {"causation_id": "evt-10", "blob": b"\x00\x01"}})
    expect(S.post("/streams/order-6", body, headers=dict(bearer("bob-secret"), **{"Content-Type": "application/msgpack"})),
           201, "msgpack lineage")
    r = S.get("/streams/order-6?from=1", headers=dict(bearer("reader-secret"), Accept="application/msgpack"))
    ev = msgpack.unpackb(expect(r, 200, "msgpack read").body, raw=False)["events"][0]
    if ev["meta"] != {"causation_id": "evt-10", "blob": b"\x00\x01", "actor": "bob"}:
        fail("msgpack meta %r" % ev["meta"])
    # 16 keys already: the map header grows from fixmap to map16
    big = {"k%02d" % i: i for i in range(15)}
    expect(S.append("order-7", {"type": "Big", "meta": big}, headers=bearer("alice-secret")), 201, "15 keys")
    if events("order-7")[0]["meta"] != dict(big, actor="alice"):
        fail("15-key meta %r" % events("order-7")[0]["meta"])


def test_digest_endpoint():
    expect_problem(S.get("/digest"), 401, "digest needs a token")
    d = expect(S.get("/digest", headers=bearer("reader-secret")), 200, "digest").json()
    if set(d) != {"position", "hash"} or len(d["hash"]) != 64:
        fail("digest %r" % d)
    d1 = expect(S.get("/digest?at=1", headers=bearer("reader-secret")), 200, "digest at 1").json()
    # the CLI reads the same data dir alongside the server (read-only)
    for at, want in ((None, d), (1, d1)):
        argv = [EVLOG, "--data", S.data, "digest"] + (["--at", str(at)] if at else [])
        out = subprocess.run(argv, stdout=subprocess.PIPE, check=True, timeout=30).stdout
        if json.loads(out) != want:
            fail("evlog digest %r != GET /digest %r" % (out, want))
    expect_problem(S.get("/digest?at=%d" % (d["position"] + 1), headers=bearer("reader-secret")), 404, "past head")
    expect_problem(S.get("/digest?at=0", headers=bearer("reader-secret")), 400, "at=0")
    expect_problem(S.get("/digest?at=x", headers=bearer("reader-secret")), 400, "at=x")


def test_projection_digest_endpoint():
    """GET /projections/{name}/digest equals `evlog digest --projection` on the
    same data dir, and on a backup of its log that the CLI replays."""
    o = Server()
    try:
        for i in range(5):
            expect(o.append("job-%d" % i, {"type": "JobQueued", "data": {"id": "j%d" % i, "model": "m"}}), 201, "job")
        expect(o.append("job-1", {"type": "JobStarted", "data": {"id": "j1"}}), 201, "start")
        expect(o.post("/projections/jobs/query", {"sql": "SELECT 1", "min_position": 6, "timeout_ms": 15000}), 200,
               "jobs caught up")
        d = expect(o.get("/projections/jobs/digest"), 200, "digest").json()
        if (d["projection"], d["position"], d["tables"], d["rows"]) != ("jobs", 6, 1, 5) or len(d["hash"]) != 64:
            fail("projection digest %r" % d)
        cli = subprocess.run([EVLOG, "--data", o.data, "digest", "--projection", "jobs"], stdout=subprocess.PIPE,
                             check=True, timeout=60).stdout
        if json.loads(cli) != d:
            fail("evlog digest --projection %r != GET %r" % (cli, d))
        copy = os.path.join(o.tmp, "copy")
        subprocess.run([EVLOG, "--data", o.data, "backup", copy], stdout=subprocess.DEVNULL, check=True, timeout=60)
        cli = subprocess.run([EVLOG, "--data", copy, "digest", "--projection", "jobs"], stdout=subprocess.PIPE,
                             check=True, timeout=120).stdout
        if json.loads(cli) != d:
            fail("replayed backup %r != %r" % (cli, d))
        expect_problem(o.get("/projections/nope/digest"), 404, "unknown projection")
    finally:
        o.stop()
        o.close()


def test_open_server_keeps_actor():
    o = Server("--no-builtin")
    try:
        expect(o.append("x-1", {"type": "A", "meta": {"actor": "bob"}}), 201, "open server")
        expect(o.append("x-1", {"type": "B"}), 201, "open server, no actor")
        ev = expect(o.get("/streams/x-1"), 200, "read").json()["events"]
        if ev[0]["meta"] != {"actor": "bob"} or ev[1]["meta"] != {}:
            fail("open server metas %r" % [e["meta"] for e in ev])
    finally:
        o.stop()
        o.close()


def main():
    global S
    tok = os.path.join(TMP, "tokens")
    with open(tok, "w") as f:
        f.write(TOKENS)
    S = Server("--no-builtin", "--token-file", tok)
    try:
        run([test_actor_filled_from_token, test_actor_not_spoofable, test_admin_may_set_actor,
             test_lineage_passes_through, test_digest_endpoint, test_projection_digest_endpoint,
             test_open_server_keeps_actor])
    finally:
        code = S.stop()
        if code != 0:
            print(S.log())
        S.close()
        shutil.rmtree(TMP, ignore_errors=True)
        if code != 0:
            sys.exit(1)


if __name__ == "__main__":
    main()
