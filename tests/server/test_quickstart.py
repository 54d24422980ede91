#!/usr/bin/python3
"""docs/quickstart.md and the README's curl block, run: every ```sh block that calls curl is run by bash,
in order, against a fresh evlogd (localhost:7070 replaced by its address),
and must succeed (curl --fail-with-body: a 4xx or 5xx fails it, unless the
doc shows a problem document as the output).  The ```json or ```text block
right after it is the output: JSON is compared value for value, except that
ids, times and "…" match any value of their kind; SSE output frame by frame
(comments aside); other text line for line.  A feed (/subscribe) is cut
after 2 s (curl's exit 28 is its success).  The README's "Trying it" block
runs whole and must end with the job it appended in the query's rows."""
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from evlsrv import Server, fail, run  # noqa: E402

DOC = os.path.join(os.environ.get("EVL_SOURCE_DIR", os.path.join(HERE, "..", "..")), "docs", "quickstart.md")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def blocks(text):
    """[(info, body)] of the fenced blocks, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```\s*$", text, re.S | re.M)


def examples(text):
    """[(command, expected kind or None, expected body)]: each curl block and
    the output block that follows it directly (nothing but blank lines
    between)."""
    out = []
    for m in re.finditer(r"^```sh\n(.*?)^```\s*$", text, re.S | re.M):
        if "curl" not in m.group(1):
            continue
        rest = text[m.end():]
        o = re.match(r"\s*\n```(json|text)\n(.*?)^```\s*$", rest, re.S | re.M)
        out.append((m.group(1), o.group(1) if o else None, o.group(2) if o else None))
    return out


def same(got, want, where="$"):
    """Fail unless got matches want (see the module's docstring)."""
    if want == "…":
        return
    if isinstance(want, str) and (UUID.match(want) or TIME.match(want)):
        pat = UUID if UUID.match(want) else TIME
        if not isinstance(got, str) or not pat.match(got):
            fail("%s: %r is not a %s" % (where, got, "UUID" if pat is UUID else "time"))
        return
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            fail("%s: keys %r, the doc shows %r" % (where, sorted(got) if isinstance(got, dict) else got,
                                                   sorted(want)))
        for k in want:
            same(got[k], want[k], "%s.%s" % (where, k))
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            fail("%s: %r, the doc shows %d items" % (where, got, len(want)))
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, "%s[%d]" % (where, i))
    elif isinstance(want, float) or isinstance(got, float):
        if not isinstance(got, (int, float)) or abs(got - want) > 1e-9:
            fail("%s: %r, the doc shows %r" % (where, got, want))
    elif got != want or type(got) is not type(want):
        fail("%s: %r, the doc shows %r" % (where, got, want))


def sse_frames(text):
    frames = []
    for f in text.strip().split("\n\n"):
        d = {}
        for line in f.split("\n"):
            k, _, v = line.partition(": ")
            if k in ("id", "event"):
                d[k] = v
            elif k == "data":
                d[k] = json.loads(v)
        if d:
            frames.append(d)
    return frames


def check_output(kind, want, got, cmd):
    if kind == "json":
        try:
            g = json.loads(got)
        except ValueError:
            fail("not JSON: %r\nfrom: %s" % (got[:300], cmd))
        same(g, json.loads(want))
    elif "\nid: " in "\n" + want:
        w, g = sse_frames(want), sse_frames(got)
        if len(g) != len(w):
            fail("%d frames, the doc shows %d:\n%s" % (len(g), len(w), got))
        for i, (gf, wf) in enumerate(zip(g, w)):
            same(gf, wf, "frame[%d]" % i)
    elif got.strip().splitlines() != want.strip().splitlines():
        fail("output %r, the doc shows %r" % (got, want))


# curl with the test's options; a feed is cut after 2 s and that is success
CURL = """curl() {
  case "$*" in
    */subscribe*) rc=0; command curl %(o)s --max-time 2 "$@" || rc=$?; [ $rc = 28 ] && return 0; return $rc;;
    *) command curl %(o)s "$@";;
  esac
}
set -e -o pipefail
"""


def prelude(opts):
    return CURL.replace("%(o)s", opts)


def test_readme_curl():
    with open(os.path.join(os.path.dirname(DOC), "..", "README.md")) as f:
        readme = f.read()
    block = [b for info, b in blocks(readme) if info == "sh" and "curl" in b]
    if len(block) != 1:
        fail("README: %d curl blocks" % len(block))
    s = Server()
    try:
        script = prelude("--fail-with-body") + block[0].replace("localhost:7070", "127.0.0.1:%d" % s.port)
        p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            fail("README curl block: exit %d\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
        if '"rows":[["j1","queued"]]' not in p.stdout or "\nid: 1\nevent: JobQueued\n" not in p.stdout:
            fail("README curl block printed %s" % p.stdout)
    finally:
        s.close()


def test_quickstart():
    with open(DOC) as f:
        text = f.read()
    ex = examples(text)
    if len(ex) < 10:
        fail("only %d curl examples found in %s" % (len(ex), DOC))
    s = Server()
    try:
        addr = "127.0.0.1:%d" % s.port
        for cmd, kind, want in ex:
            problem = kind == "json" and '"urn:evlog:problem:' in want
            script = prelude("" if problem else "--fail-with-body") + cmd.replace("localhost:7070", addr)
            p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
            ok = p.returncode == 0
            if problem:
                ok = p.returncode == 0 and json.loads(p.stdout).get("status", 0) >= 400
            if not ok:
                fail("exit %d: %s\nstdout: %s\nstderr: %s" % (p.returncode, cmd, p.stdout, p.stderr))
            if kind:
                try:
                    check_output(kind, want, p.stdout, cmd)
                except AssertionError as e:
                    fail("%s\n  in: %s" % (e, cmd.strip()))
        print("     %d curl examples ran" % len(ex))
    finally:
        s.close()


if __name__ == "__main__":
    run([test_quickstart, test_readme_curl])
