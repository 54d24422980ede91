#!/usr/bin/python3
"""evlogd authentication: bearer tokens from --token-file (plain and
sha256:HEX), roles reader < writer < admin, 401 and 403, ?access_token= on
/subscribe only, open probes, token files that are refused, and the warning
for a server reachable beyond loopback without tokens."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import EVLOGD, SSE, Server, expect, expect_problem, fail, run  # noqa: E402

S = None
TMP = tempfile.mkdtemp(prefix="evlog-auth-")
LONG = "L" * 100  # two SHA-256 blocks of padding
TOKENS = """# evlog tokens
r3ader-secret reader

writer-secret   writer
sha256:%s admin
sha256:%s reader
""" % (hashlib.sha256(b"admin-secret").hexdigest(), hashlib.sha256(LONG.encode()).hexdigest().upper())


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def test_roles():
    p = expect_problem(S.get("/events"), 401, "no token", "unauthorized")
    r = S.get("/events")
    if r.header("WWW-Authenticate") != 'Bearer realm="evlog"':
        fail("WWW-Authenticate %r" % r.header("WWW-Authenticate"))
    expect_problem(S.get("/events", headers=bearer("wrong")), 401, "bad token")
    expect_problem(S.get("/events", headers={"Authorization": "Basic cjNhZGVyLXNlY3JldDo="}), 401, "basic")
    expect_problem(S.get("/events", headers=bearer("r3ader-secre")), 401, "prefix of a token")
    expect(S.get("/events", headers=bearer("r3ader-secret")), 200, "reader reads")
    expect(S.get("/events", headers=bearer(LONG)), 200, "long hashed token")
    p = expect_problem(S.append("a-1", {"type": "A"}, headers=bearer("r3ader-secret")), 403, "reader appends",
                       "forbidden")
    if "writer" not in p["detail"]:
        fail("403 detail %r" % p)
    expect(S.append("a-1", {"type": "A"}, headers=bearer("writer-secret")), 201, "writer appends")
    expect(S.post("/append", {"streams": [{"stream": "a-2", "events": [{"type": "A"}]}]},
                  headers=bearer("admin-secret")), 201, "admin appends")
    expect_problem(S.post("/projections/jobs/rebuild", headers=bearer("writer-secret")), 403, "writer rebuilds")
    r = expect(S.post("/projections/jobs/rebuild", headers=bearer("admin-secret")), 202, "admin rebuilds")
    if r.header("Location") != "/projections/jobs":
        fail("rebuild Location %r" % r.header("Location"))
    expect_problem(S.post("/projections/jobs/rebuild"), 401, "rebuild without a token")
    expect(S.post("/projections/jobs/query", {"sql": "SELECT 1"}, headers=bearer("r3ader-secret")), 200,
           "reader queries")
    expect_problem(S.get("/metrics"), 401, "metrics without token")
    expect(S.get("/metrics", headers=bearer("r3ader-secret")), 200, "metrics")
    for path in ("/healthz", "/readyz", "/"):
        expect(S.get(path), 200, path + " is open")
    del p


def test_access_token_on_subscribe_only():
    sub = SSE(S, "/subscribe?from=1&access_token=r3ader-secret")
    if sub.status != 200 or sub.next(5)["data"]["subject"] != "a-1":
        fail("subscribe with access_token")
    sub.close()
    sub = SSE(S, "/subscribe?from=1")
    if sub.status != 401:
        fail("subscribe without a token: %d" % sub.status)
    sub.close()
    sub = SSE(S, "/subscribe?from=1&access_token=nope")
    if sub.status != 401:
        fail("subscribe with a bad token: %d" % sub.status)
    sub.close()
    expect_problem(S.get("/events?access_token=r3ader-secret"), 401, "access_token elsewhere")
    log = S.log()
    for secret in ("r3ader-secret", "writer-secret", "admin-secret"):
        if secret in log:
            fail("a token reached the log: %s" % log)


def bad_token_file(text, word):
    path = os.path.join(TMP, "bad-tokens")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([EVLOGD, "--data", os.path.join(TMP, "d2"), "--listen", "127.0.0.1:0", "--no-builtin",
                        "--token-file", path], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, timeout=30)
    err = p.stderr.decode()
    if p.returncode == 0 or word not in err:
        fail("token file %r: exit %d, %r" % (text, p.returncode, err))


def test_refused_token_files():
    bad_token_file("secret superuser\n", "bad-tokens:1")
    bad_token_file("# only a comment\n", "no tokens")
    bad_token_file("ok reader\nsha256:abc admin\n", "bad-tokens:2: sha256: wants 64 hex digits")
    bad_token_file("a b c\n", "bad-tokens:1")
    bad_token_file("x reader alice extra\n", "bad-tokens:1")
    bad_token_file("ok reader\ny writer \x7fname\n", "bad-tokens:2: NAME")
    p = subprocess.run([EVLOGD, "--data", os.path.join(TMP, "d3"), "--listen", "127.0.0.1:0",
                        "--token-file", os.path.join(TMP, "missing")], stderr=subprocess.PIPE, timeout=30)
    if p.returncode == 0 or b"missing" not in p.stderr:
        fail("missing token file: %r" % p.stderr)


def test_warning_beyond_loopback():
    open_srv = Server("--no-builtin", "--listen", "0.0.0.0:0")
    try:
        if "warning: listening on 0.0.0.0" not in open_srv.log() or "without --token-file" not in open_srv.log():
            fail("no warning: %s" % open_srv.log())
        expect(open_srv.get("/events"), 200, "open server")
    finally:
        open_srv.stop()
        open_srv.close()
    tok = os.path.join(TMP, "tokens")
    closed = Server("--no-builtin", "--listen", "0.0.0.0:0", "--token-file", tok)
    try:
        if "warning" in closed.log():
            fail("warning with tokens: %s" % closed.log())
        if "tokens required" not in closed.log():
            fail("start line does not say tokens are required: %s" % closed.log())
    finally:
        closed.stop()
        closed.close()
    if "warning" in S.log():
        fail("warning on loopback: %s" % S.log())


def main():
    global S
    tok = os.path.join(TMP, "tokens")
    with open(tok, "w") as f:
        f.write(TOKENS)
    S = Server("--token-file", tok)
    try:
        run([test_roles, test_access_token_on_subscribe_only, test_refused_token_files, test_warning_beyond_loopback])
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
