#!/usr/bin/python3
"""The reference docs against the code: every evlogd option (`evlogd --help`)
is in docs/operations.md's flag table and nothing else is; every metric a
live evlogd exports is in the metric tables of docs/operations.md and
docs/http.md, and they name no other; every route of server/router.c is
documented in docs/http.md with its methods; and every relative link in
README.md and docs/*.md points at a file that exists."""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from evlsrv import EVLOGD, Server, expect, fail, run  # noqa: E402

SRC = os.environ.get("EVL_SOURCE_DIR", os.path.join(HERE, "..", ".."))


def read(*p):
    with open(os.path.join(SRC, *p)) as f:
        return f.read()


def section(text, title):
    """The text of the markdown section whose heading is `title`."""
    m = re.search(r"^(#+) %s\s*$(.*?)(?=^#{1,%d} |\Z)" % (re.escape(title), 9), text, re.S | re.M)
    if not m:
        fail("no section %r" % title)
    level = len(m.group(1))
    body = m.group(2)
    nxt = re.search(r"^#{1,%d} " % level, body, re.M)
    return body[:nxt.start()] if nxt else body


def test_flags():
    h = subprocess.run([EVLOGD, "--help"], capture_output=True, text=True, timeout=10)
    if h.returncode != 0:
        fail("evlogd --help: %d %s" % (h.returncode, h.stderr))
    opts = set(re.findall(r"^  --([a-z-]+)", h.stdout, re.M))
    if len(opts) < 20:
        fail("evlogd --help lists %d options: %s" % (len(opts), h.stdout))
    table = section(read("docs", "operations.md"), "Flags and config")
    doc = set(re.findall(r"^\| `--([a-z-]+)", table, re.M))
    missing, extra = opts - doc, doc - opts - {"config", "help"}
    if missing or extra:
        fail("docs/operations.md flags: missing %s, not evlogd options %s" % (sorted(missing), sorted(extra)))


def exported_metrics():
    s = Server()
    try:
        # one append and one projection status make every family appear
        expect(s.append("m-1", {"type": "M"}), 201, "append")
        r = expect(s.get("/metrics"), 200, "metrics")
    finally:
        s.close()
    names = set(re.findall(r"^# TYPE (evlog_[a-z_]+) ", r.body.decode(), re.M))
    if len(names) < 20:
        fail("only %d metric families exported" % len(names))
    return names


def documented_metrics(path, title):
    table = section(read("docs", path), title)
    names = set()
    for row in re.findall(r"^\s*\| (.*?) \|", table, re.M):
        names |= set(re.findall(r"`(evlog_[a-z_]+)", row))
    return names


def test_metrics():
    live = exported_metrics()
    code = set(re.findall(r'"(evlog_[a-z_]+)"', read("server", "metrics.c")))
    if live != code:
        fail("exported %s vs named in metrics.c %s" % (sorted(live - code), sorted(code - live)))
    for path, title in (("operations.md", "Metrics"), ("http.md", "Health and metrics")):
        doc = documented_metrics(path, title)
        if doc != live:
            fail("docs/%s metrics: missing %s, not exported %s" % (path, sorted(live - doc), sorted(doc - live)))


def test_routes():
    router = read("server", "router.c")
    routes = re.findall(r"\{\{(.*?)\}, (\d+), (\w+), (\w+), ROLE", router)
    if len(routes) < 12:
        fail("parsed %d routes from router.c" % len(routes))
    http = read("docs", "http.md")
    norm = lambda p: re.sub(r"\{[a-z_]+\}", "{}", p)  # noqa: E731
    doc = set()
    for methods, path in re.findall(r"`((?:GET|POST|HEAD)(?:\|(?:GET|POST))*) (/[^` ?]*)", http):
        for m in methods.split("|"):
            doc.add((m, norm(path)))
    for segs, n, get, post in routes:
        segs = re.findall(r'"([^"]*)"', segs)
        path = "/" + "/".join("{}" if s == "*" else s for s in segs[:int(n)])
        for method, h in (("GET", get), ("POST", post)):
            if h != "NULL" and (method, path) not in doc:
                fail("docs/http.md does not document %s %s" % (method, path))


def test_links():
    files = ["README.md"] + ["docs/" + f for f in sorted(os.listdir(os.path.join(SRC, "docs"))) if f.endswith(".md")]
    bad = []
    for f in files:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(f)):
            if re.match(r"^[a-z]+:", target):
                continue
            if not os.path.exists(os.path.join(SRC, os.path.dirname(f), target)):
                bad.append("%s -> %s" % (f, target))
    if bad:
        fail("broken links: %s" % bad)


if __name__ == "__main__":
    run([test_flags, test_metrics, test_routes, test_links])
