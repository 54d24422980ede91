#!/usr/bin/python3
"""evlogd's web console as HTTP: GET / and /console/{file} serve the files of
server/console/ byte for byte (embedded at build time), open even with
tokens on, with their content types, an ETag that revalidates to 304, HEAD
without a body, a Content-Security-Policy on the page, and 404 for a file
that is not there.  The page itself is tested in a browser by
tests/console/console_test.mjs."""
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import Server, expect, expect_problem, fail, run  # noqa: E402

S = None
SRC = os.path.join(os.environ.get("EVL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                   "server", "console")
TYPES = {"index.html": "text/html; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
         "console.css": "text/css; charset=utf-8"}


def source(name):
    with open(os.path.join(SRC, name), "rb") as f:
        return f.read()


def test_files_served_as_in_the_repo():
    for name, ctype in TYPES.items():
        path = "/" if name == "index.html" else "/console/" + name
        r = expect(S.get(path), 200, path)
        if r.body != source(name):
            fail("%s: %d bytes served, the file has %d" % (path, len(r.body), len(source(name))))
        if r.header("Content-Type") != ctype:
            fail("%s: Content-Type %r" % (path, r.header("Content-Type")))
        if r.header("X-Content-Type-Options") != "nosniff" or r.header("Cache-Control") != "no-cache":
            fail("%s: headers %r" % (path, r.headers))
    # everything the page loads is served
    page = source("index.html").decode()
    for ref in re.findall(r'(?:src|href)="(/[^"]*)"', page):
        expect(S.get(ref), 200, "page reference " + ref)


def test_page_policy():
    csp = expect(S.get("/"), 200, "page").header("Content-Security-Policy") or ""
    for d in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
              "frame-ancestors 'none'"):
        if d not in csp:
            fail("CSP %r lacks %r" % (csp, d))
    if "unsafe-inline" in csp:
        fail("CSP allows inline code: %r" % csp)
    page = source("index.html").decode()
    if re.search(r"<script(?![^>]*\bsrc=)", page) or re.search(r"<style|\son\w+=", page):
        fail("inline script, style or handler in index.html: the policy would block it")


def test_etag_revalidates():
    for path in ("/", "/console/console.js"):
        r = expect(S.get(path), 200, path)
        tag = r.header("ETag")
        if not tag or not re.fullmatch(r'"[0-9a-f]{20}"', tag):
            fail("%s: ETag %r" % (path, tag))
        again = expect(S.get(path, headers={"If-None-Match": tag}), 304, path + " revalidated")
        if again.body or again.header("ETag") != tag:
            fail("%s: 304 %r %r" % (path, again.body, again.headers))
        expect(S.get(path, headers={"If-None-Match": '"0000"'}), 200, path + " other tag")


def test_head_and_missing_files():
    r = expect(S.request("HEAD", "/console/console.css"), 200, "HEAD")
    if r.body:
        fail("HEAD with a body")
    expect_problem(S.get("/console/nope.js"), 404, "missing file", "not-found")
    expect_problem(S.get("/console/"), 404, "no file name")
    expect_problem(S.get("/console/a/b"), 404, "deeper path")
    expect_problem(S.post("/console/console.js", {}), 405, "POST")


def test_open_with_tokens_while_the_api_is_not():
    tmp = tempfile.mkdtemp(prefix="evlog-console-")
    tok = os.path.join(tmp, "tokens")
    with open(tok, "w") as f:
        f.write("console-reader reader\n")
    s = Server("--token-file", tok)
    try:
        for path in ("/", "/console/console.js", "/console/console.css"):
            expect(s.get(path), 200, path + " without a token")
        expect_problem(s.get("/metrics"), 401, "metrics without a token")
        expect(s.get("/metrics", headers={"Authorization": "Bearer console-reader"}), 200, "metrics")
    finally:
        code = s.stop()
        s.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if code != 0:
        fail("evlogd with tokens exited %d" % code)


def main():
    global S
    S = Server()
    try:
        run([test_files_served_as_in_the_repo, test_page_policy, test_etag_revalidates,
             test_head_and_missing_files, test_open_with_tokens_while_the_api_is_not])
    finally:
        code = S.stop()
        if code != 0:
            print(S.log())
        S.close()
        if code != 0:
            sys.exit(1)


if __name__ == "__main__":
    main()
