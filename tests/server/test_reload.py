#!/usr/bin/python3
"""evlogd SIGHUP: the --projections files are read again.  A spec that
gains a column is rebuilt beside the table that serves (queries answer
throughout) and takes over with generation 1, its new column filled from
the events already in the log; a new file starts a new projection; an edit
whose handlers fail on an old event leaves the old table serving and says
why in rebuild_error; a file that does not parse is skipped."""
import os
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evlsrv import QueryLoop, Server, expect, fail, run, wait_for  # noqa: E402

S = None
SPECS = None
N = 3000  # notes appended before the first reload: the rebuild overlaps queries

NOTES_V1 = """-- @projection notes
CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL);
-- @on NoteAdded
INSERT INTO notes (id, body) VALUES (:id, :body);
"""
NOTES_V2 = """-- @projection notes
CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, author TEXT);
-- @on NoteAdded
INSERT INTO notes (id, body, author) VALUES (:id, :body, :author);
"""
# parses, but no NoteAdded event has pages: the first one fails NOT NULL
NOTES_FAILS = """-- @projection notes
CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, author TEXT, pages INTEGER NOT NULL);
-- @on NoteAdded
INSERT INTO notes (id, body, author, pages) VALUES (:id, :body, :author, :pages);
"""
NOTES_SYNTAX = """-- @projection notes
CREATE TABLE notes (id TEXT PRIMARY KEY,;
"""
AUTHORS = """-- @projection authors
CREATE TABLE authors (name TEXT PRIMARY KEY, notes INTEGER NOT NULL);
-- @on NoteAdded
INSERT INTO authors (name, notes) VALUES (:author, 1) ON CONFLICT (name) DO UPDATE SET notes = notes + 1;
"""


def write_spec(name, text):
    # whole or not at all: the reload must not read half a file
    path = os.path.join(SPECS, name)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def reloads():
    return S.log().count("SIGHUP: projection files reloaded")


def sighup():
    """Send SIGHUP; the reload's summary line once it is done."""
    n = reloads()
    S.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads() > n, 10, "the reload")
    return [l for l in S.log().splitlines() if "SIGHUP: projection files reloaded" in l][-1]


def status(name):
    return expect(S.get("/projections/" + name), 200, "status " + name).json()


def head():
    return S.get("/events?limit=1").json()["head"]


def query(name, sql, min_position=None):
    body = {"sql": sql}
    if min_position:
        body.update(min_position=min_position, timeout_ms=30000)
    return expect(S.post("/projections/%s/query" % name, body), 200, "query " + name).json()


def add_notes(first, n, author="ann"):
    events = [{"type": "NoteAdded", "data": {"id": "n%05d" % i, "body": "text %d" % i, "author": author}}
              for i in range(first, first + n)]
    for k in range(0, n, 500):
        expect(S.append("note-%d" % (first + k), events[k:k + 500]), 201, "append")


def test_reload_adds_a_column():
    add_notes(0, N)
    old = query("notes", "SELECT id, body FROM notes ORDER BY id", head())
    if len(old["rows"]) != N or old["columns"] != ["id", "body"]:
        fail("before the reload %r" % old["columns"])
    st = status("notes")
    if st["generation"] != 0 or st["state"] != "live":
        fail("status before the reload %r" % st)
    v1_hash = st["spec_hash"]
    if "0 projection(s) changed" not in sighup():
        fail("a reload with nothing changed changed something: %s" % S.log())
    if status("notes")["generation"] != 0:
        fail("a reload with nothing changed rebuilt")

    readers = QueryLoop(S, "notes", "SELECT count(*) FROM notes")
    readers.start()
    wait_for(lambda: readers.queries >= 3, 10, "queries before the reload")
    write_spec("notes.sql", NOTES_V2)
    line = sighup()
    if "1 projection(s) changed" not in line:
        fail("reload line %r" % line)
    st = wait_for(lambda: (lambda s: s["generation"] == 1 and s["state"] == "live" and s)(status("notes")), 60,
                  "generation 1")
    new = query("notes", "SELECT id, body, author FROM notes ORDER BY id")
    readers.stop()
    if readers.errors:
        fail("%d queries failed during the rebuild: %r" % (len(readers.errors), readers.errors[:3]))
    if not readers.values or min(readers.values) != N:
        fail("a query saw an empty or partial table: %r" % sorted(set(readers.values))[:5])
    if new["columns"] != ["id", "body", "author"]:
        fail("columns after the reload %r" % new["columns"])
    # the old rows are there, and the new column is filled from the events already in the log
    if [r[:2] for r in new["rows"]] != old["rows"] or {r[2] for r in new["rows"]} != {"ann"}:
        fail("rows after the reload: %r" % new["rows"][:3])
    if "rebuild" in st or "rebuild_error" in st or st["spec_hash"] == v1_hash:
        fail("status after the reload %r" % st)
    if "projection notes: spec changed in" not in S.log() or "projection notes: rebuilt to position" not in S.log():
        fail("log lines: %s" % S.log())
    # new events land in the new table
    add_notes(N, 1, author="bob")
    q = query("notes", "SELECT author FROM notes WHERE id = 'n%05d'" % N, head())
    if q["rows"] != [["bob"]]:
        fail("an event after the reload: %r" % q)
    wait_for(lambda: S.metric('evlog_projection_generation{projection="notes"}') == 1, 5, "generation metric")


def test_reload_starts_a_new_file():
    write_spec("authors.sql", AUTHORS)
    line = sighup()
    if "1 projection(s) changed" not in line or "projection authors: new in" not in S.log():
        fail("reload line %r: %s" % (line, S.log()))
    q = query("authors", "SELECT name, notes FROM authors ORDER BY name", head())
    if q["rows"] != [["ann", N], ["bob", 1]]:
        fail("new projection %r" % q)
    if status("authors")["generation"] != 0:
        fail("a new projection is generation 0")


def test_broken_edit_keeps_the_old_table():
    served = status("notes")
    write_spec("notes.sql", NOTES_FAILS)
    if "1 projection(s) changed" not in sighup():
        fail("the failing edit was not taken up")
    st = wait_for(lambda: (lambda s: s.get("rebuild_error") and s["state"] != "rebuilding" and s)(status("notes")),
                  30, "rebuild_error")
    if "NOT NULL" not in st["rebuild_error"] or "position" not in st["rebuild_error"]:
        fail("rebuild_error %r" % st["rebuild_error"])
    if st["generation"] != 1 or st["spec_hash"] != served["spec_hash"] or st["state"] != "live" or "rebuild" in st:
        fail("status after the failed rebuild %r" % st)
    if "projection notes: rebuild failed at" not in S.log():
        fail("no log line for the failed rebuild: %s" % S.log())
    # the old table still answers, and is still fed
    add_notes(N + 1, 1, author="cy")
    q = query("notes", "SELECT count(*), max(author) FROM notes", head())
    if q["columns"] != ["count(*)", "max(author)"] or q["rows"] != [[N + 2, "cy"]]:
        fail("the old table after the failed rebuild %r" % q)
    if S.metric('evlog_projection_faulted{projection="notes"}') != 0:
        fail("a failed rebuild faulted the projection")

    # a file that does not parse is skipped: nothing changes
    write_spec("notes.sql", NOTES_SYNTAX)
    if "0 projection(s) changed" not in sighup() or "skipping projection file" not in S.log():
        fail("syntax error: %s" % S.log())
    st = status("notes")
    if st["state"] != "live" or st["generation"] != 1 or not st.get("rebuild_error"):
        fail("status after a file that does not parse %r" % st)
    # back to what serves: nothing to rebuild
    write_spec("notes.sql", NOTES_V2)
    if "0 projection(s) changed" not in sighup():
        fail("restoring the served spec rebuilt it")
    expect(S.get("/readyz"), 200, "ready after all that")


def main():
    global S, SPECS
    tmp = tempfile.mkdtemp(prefix="evlog-reload-")
    SPECS = os.path.join(tmp, "specs")
    os.mkdir(SPECS)
    write_spec("notes.sql", NOTES_V1)
    # a relative --projections: the reload must find the same directory
    os.chdir(tmp)
    S = Server("--no-builtin", "--projections", "specs", tmp=tmp)
    try:
        run([test_reload_adds_a_column, test_reload_starts_a_new_file, test_broken_edit_keeps_the_old_table])
    finally:
        code = S.stop()
        if code != 0 or "not available" in S.log():
            print(S.log())
            sys.exit(1)
        S.own_tmp = True
        S.close()


if __name__ == "__main__":
    main()
