#!/usr/bin/env bash
# evlog digest --projection: two data dirs fed the same events (in another
# order: other rowids, other positions per stream) give the same digest; a
# changed row changes it; a rebuild gives it back; Python's sqlite3 and
# hashlib recompute it from the encoding docs/audit.md documents.  And
# evlog digest [--at POS] against Python's hashlib over mdb_dump output.
set -euo pipefail
BIN_DIR=${EVL_BIN_DIR:-$PWD}
EVLOG="$BIN_DIR/evlog"
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/evlog-digest.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in "$EVLOG" mdb_dump sqlite3 "$PY"; do command -v "$tool" >/dev/null || fail "no $tool"; done
"$PY" -c 'import msgpack' || fail "python3-msgpack is not installed"

mkdir -p "$T/specs"
cat >"$T/specs/kv.sql" <<'SQL'
-- @projection kv
CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER, r REAL, b BLOB, t TEXT, n TEXT);
CREATE TABLE bag (x TEXT, y INTEGER);
CREATE TABLE pairs (a TEXT, b INTEGER, note TEXT, PRIMARY KEY (b, a)) WITHOUT ROWID;
-- @on Put
INSERT INTO kv (k, v, r, b, t) VALUES (:k, :v, :r, CAST(:t AS BLOB), :t)
  ON CONFLICT (k) DO UPDATE SET v = excluded.v, r = excluded.r;
INSERT INTO bag (x, y) VALUES (:k, :v);
INSERT OR REPLACE INTO pairs (a, b, note) VALUES (:k, :v % 3, :t);
SQL
E() { "$EVLOG" --data "$1" --projections "$T/specs" --no-builtin "${@:2}"; }
# feed DIR STREAM|DATA...: one Put event each
feed() {
    local d=$1; shift
    for ev in "$@"; do
        E "$d" append "${ev%%|*}" Put "${ev#*|}" >/dev/null
    done
}
A1='kv-a|{"k":"a","v":1,"r":0.5,"t":"héllo"}'
B1='kv-b|{"k":"b","v":-7,"r":-0.0,"t":"x\u0000y"}'
A2='kv-a|{"k":"a","v":2,"r":1e300,"t":"héllo"}'
C1='kv-c|{"k":"c","v":9007199254740993,"t":null}'
# the same facts in two orders (a's two events keep theirs)
feed "$T/d1" "$A1" "$B1" "$A2" "$C1"
feed "$T/d2" "$C1" "$B1" "$A1" "$A2"
dig() { E "$1" digest --projection kv; }
field() { "$PY" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
D1=$(dig "$T/d1")
D2=$(dig "$T/d2")
[ "$(field hash <<<"$D1")" = "$(field hash <<<"$D2")" ] || fail "same rows, other order: $D1 vs $D2"
[ "$(field position <<<"$D1")" = 4 ] && [ "$(field tables <<<"$D1")" = 3 ] && [ "$(field rows <<<"$D1")" = 11 ] \
    || fail "digest fields: $D1"
rowids() { sqlite3 "$1/projections/kv.db" "SELECT group_concat(rowid) FROM (SELECT rowid FROM bag ORDER BY x, y)"; }
[ "$(rowids "$T/d1")" != "$(rowids "$T/d2")" ] || fail "the two files should differ in rowids (else the test proves less)"

# Python recomputes it from the documented encoding
"$PY" - "$T/d1/projections/kv.db" "$(field hash <<<"$D1")" <<'PYEOF'
import hashlib, sqlite3, struct, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
db.text_factory = bytes
h = hashlib.sha256()
s = lambda b: struct.pack(">I", len(b)) + b
tables = [r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name COLLATE BINARY")
          if not r[0].startswith((b"sqlite_", b"_evl_"))]
q = lambda c: '"' + c.decode().replace('"', '""') + '"'
for t in tables:
    info = db.execute("SELECT cid, name, pk FROM pragma_table_info(?)", (t.decode(),)).fetchall()
    cols = [r[1] for r in sorted(info)]
    order = [r[1] for r in sorted(info, key=lambda r: (r[2] == 0, r[2], r[0]))]
    h.update(b"T" + s(t) + struct.pack(">I", len(cols)) + b"".join(s(c) for c in cols))
    sql = "SELECT %s, %s FROM %s ORDER BY %s" % (
        ", ".join(q(c) for c in cols), ", ".join("typeof(%s)" % q(c) for c in cols), q(t),
        ", ".join(q(c) + " COLLATE BINARY" for c in order))
    n = 0
    for row in db.execute(sql):
        out = b"R"
        for v, ty in zip(row[:len(cols)], row[len(cols):]):
            if ty == b"null": out += b"\x00"
            elif ty == b"integer": out += b"\x01" + struct.pack(">q", v)
            elif ty == b"real": out += b"\x02" + struct.pack(">d", v)
            elif ty == b"text": out += b"\x03" + s(v)
            else: out += b"\x04" + s(v)
        h.update(out)
        n += 1
    h.update(b"E" + struct.pack(">Q", n))
if h.hexdigest() != sys.argv[2]:
    sys.exit("FAIL: python computes %s, evlog %s" % (h.hexdigest(), sys.argv[2]))
PYEOF

# one changed row changes it; a rebuild derives the tables again
sqlite3 "$T/d1/projections/kv.db" "UPDATE kv SET v = 3 WHERE k = 'a'"
[ "$(dig "$T/d1" | field hash)" != "$(field hash <<<"$D1")" ] || fail "a changed row left the digest"
sqlite3 "$T/d1/projections/kv.db" "UPDATE kv SET v = 2 WHERE k = 'a'; UPDATE bag SET y = NULL WHERE y = 1"
[ "$(dig "$T/d1" | field hash)" != "$(field hash <<<"$D1")" ] || fail "a NULL instead of 1 left the digest"
E "$T/d1" rebuild kv >/dev/null 2>&1 || fail "rebuild kv"
[ "$(dig "$T/d1")" = "$D1" ] || fail "after a rebuild: $(dig "$T/d1") vs $D1"

# the built-ins: a backup replayed elsewhere derives the same jobs table
"$EVLOG" --data "$T/j1" append job-1 JobQueued '{"id":"j1","model":"m"}' >/dev/null
"$EVLOG" --data "$T/j1" append job-1 JobStarted '{"id":"j1"}' >/dev/null
J1=$("$EVLOG" --data "$T/j1" digest --projection jobs)
"$EVLOG" --data "$T/j1" backup "$T/j2" >/dev/null
[ "$("$EVLOG" --data "$T/j2" digest --projection jobs)" = "$J1" ] || fail "backup replayed: jobs differ"
[ "$("$EVLOG" --data "$T/j2" digest)" = "$("$EVLOG" --data "$T/j1" digest)" ] || fail "backup: chain differs"
set +e
E "$T/d1" digest --projection nope >/dev/null 2>&1; rc=$?
E "$T/d1" digest --projection kv --at 2 >/dev/null 2>&1; rc2=$?
set -e
[ "$rc" = 1 ] && [ "$rc2" = 2 ] || fail "unknown projection exit $rc, --projection with --at exit $rc2"

# the log's chain: hashlib over mdb_dump output agrees with evlog digest at every position
"$PY" - "$T/d2/log" "$EVLOG" "$T/d2" <<'PYEOF'
import hashlib, json, msgpack, subprocess, sys
dump = subprocess.run(["mdb_dump", "-s", "events", sys.argv[1]], stdout=subprocess.PIPE, check=True).stdout.decode()
lines = dump.splitlines()
body = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]
h = bytes(32)
for key, val in zip(body[0::2], body[1::2]):
    raw = bytes.fromhex(val.strip())
    rec = msgpack.unpackb(raw, raw=False)
    if raw[:9] != b"\x8a\xa5chain\xc4\x20" or list(rec)[0] != "chain":
        sys.exit("FAIL: record does not start with its chain value")
    h = hashlib.sha256(h + raw[41:-9]).digest()
    if rec["chain"] != h:
        sys.exit("FAIL: stored chain at %d is not the recomputed one" % rec["position"])
    out = subprocess.run([sys.argv[2], "--data", sys.argv[3], "digest", "--at", str(rec["position"])],
                         stdout=subprocess.PIPE, check=True).stdout
    if json.loads(out) != {"position": rec["position"], "hash": h.hex()}:
        sys.exit("FAIL: evlog digest %r, hashlib %s" % (out, h.hex()))
if rec["position"] != 4:
    sys.exit("FAIL: 4 records expected")
PYEOF
set +e
"$EVLOG" --data "$T/d2" digest --at 5 >/dev/null 2>&1; rc=$?
"$EVLOG" --data "$T/empty" digest >/dev/null 2>&1; rc2=$?
"$EVLOG" --data "$T/d2" digest --at 0 >/dev/null 2>&1; rc3=$?
set -e
[ "$rc" = 1 ] && [ "$rc3" = 2 ] && [ "$rc2" != 0 ] || fail "digest past the head $rc, empty $rc2, --at 0 $rc3"
# import appends the events again: the importing log's chain is its own, and valid
"$EVLOG" --data "$T/d2" export >"$T/d2.ndjson"
"$EVLOG" --data "$T/d3" import "$T/d2.ndjson" >/dev/null
"$EVLOG" --data "$T/d3" verify >"$T/v" || fail "verify after import: $(cat "$T/v")"
[ "$("$EVLOG" --data "$T/d3" digest | field position)" = 4 ] || fail "digest after import"
"$EVLOG" --data "$T/j2" verify >"$T/v" || fail "verify of a backup: $(cat "$T/v")"
echo "ok digest_test"
