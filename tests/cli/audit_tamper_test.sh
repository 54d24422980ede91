#!/usr/bin/env bash
# docs/audit.md (g) and (h), run as written: the `# (t-...)` recipes against
# a real evlogd holding the page's history, then the log tampered with (the
# server stopped, evl-tamper editing data.mdb through LMDB) to show that the
# same recipes catch it:
#   - one byte of record 4 changed, CRC redone: verify names position 4;
#   - the same without the CRC redone: the CRC names position 4;
#   - record 4 changed and every later chain value recomputed: verify
#     passes, the digest kept by the auditor does not match, and hashlib
#     over mdb_dump gives the rewritten digest.
set -Eeuo pipefail
BIN_DIR=${EVL_BIN_DIR:-$PWD}
SRC_DIR=${EVL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
EVLOG="$BIN_DIR/evlog"
EVLOGD="$BIN_DIR/evlogd"
TAMPER="$BIN_DIR/evl-tamper"
DOC="$SRC_DIR/docs/audit.md"
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/evlog-tamper.XXXXXX")
DPID=""
cleanup() {
    local rc=$?
    [ "$rc" -eq 0 ] || echo "audit_tamper_test: exit status $rc" >&2
    if [ -n "$DPID" ]; then kill "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT
for sig in TERM INT HUP PIPE; do trap "echo 'audit_tamper_test: got SIG$sig' >&2; exit 1" $sig; done
fail() { echo "FAIL: $*" >&2; exit 1; }
# set -e stops at a failing command without a word: say which one
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR
for tool in "$EVLOG" "$EVLOGD" "$TAMPER" mdb_dump "$PY"; do command -v "$tool" >/dev/null || fail "no $tool"; done
"$PY" -c 'import msgpack' || fail "python3-msgpack is not installed"

wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
        sleep 0.05
    done
}

"$PY" - "$DOC" "$T" <<'PYEOF'
import re, sys
doc, out = open(sys.argv[1]).read(), sys.argv[2]
names = []
for block in re.findall(r"^```sh\n(.*?)^```$", doc, re.S | re.M):
    m = re.match(r"# \(([\w-]+)\)", block)
    if m:
        names.append(m.group(1))
        open("%s/recipe-%s.sh" % (out, m.group(1)), "w").write(block)
want = ["t-record", "t-check", "t-hashlib", "t-proj"]
if [n for n in names if n.startswith("t-")] != want or "history" not in names:
    sys.exit("docs/audit.md has recipes %r, this test checks history and %r" % (names, want))
PYEOF

# The recipes' python3 is the system one, which has python3-msgpack.
mkdir -p "$T/work" "$T/pybin"
ln -s "$PY" "$T/pybin/python3"
recipe_rc() {
    local rc=0
    (cd "$T/work" && PATH="$BIN_DIR:$T/pybin:$PATH" URL="$URL" DATA="$D" bash -euo pipefail "$T/recipe-$1.sh") \
        >"$T/out" 2>"$T/err" || rc=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
    return $rc
}
recipe() { recipe_rc "$1" || fail "recipe ($1) exited $?: $ERR"; }
recipe_fails() { if recipe_rc "$1"; then fail "recipe ($1) passed, should fail: $OUT"; fi; }
json() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

D="$T/data"
RUNS=0
start() {
    # a new stderr file per run: the shell truncates a reused one only once
    # the background child runs, and the old "listening" line would be seen
    RUNS=$((RUNS + 1))
    local err="$T/evlogd-$RUNS.err"
    "$EVLOGD" --data "$D" --listen 127.0.0.1:0 --threads 2 >/dev/null 2>"$err" &
    DPID=$!
    listening() { grep -q "listening on http://" "$err" 2>/dev/null || ! kill -0 "$DPID" 2>/dev/null; }
    wait_for 15 "evlogd to start" listening
    kill -0 "$DPID" 2>/dev/null || fail "evlogd exited: $(cat "$err")"
    URL=$(grep -o "http://127.0.0.1:[0-9]*" "$err" | head -1)
}
stop() {
    kill -TERM "$DPID"
    wait "$DPID" || fail "evlogd exit status $?"
    DPID=""
}
start
recipe history
curl -sf "$URL/projections/jobs/query" -d '{"sql":"SELECT 1","min_position":10,"timeout_ms":15000}' >/dev/null \
    || fail "projection jobs did not reach position 10"

# (t-record): the head at 10, as evlog digest says
recipe t-record
KEPT="$T/work/digest-kept.json"
[ "$(json 'd["position"], len(d["hash"])' <"$KEPT")" = "10 64" ] || fail "(t-record): $OUT"
[ "$("$EVLOG" --data "$D" digest)" = "$(cat "$KEPT")" ] || fail "(t-record): evlog digest differs"
# (t-check): intact
recipe t-check
grep -q "^ok: 10 events verified" <<<"$OUT" || fail "(t-check) verify: $OUT"
[ "$(tail -1 <<<"$OUT")" = "positions 1..10 unchanged" ] || fail "(t-check): $OUT"
# (t-hashlib): python's chain is the kept digest
recipe t-hashlib
[ "$(json 'd' <<<"$OUT")" = "$(json 'd' <"$KEPT")" ] || fail "(t-hashlib) $OUT vs $(cat "$KEPT")"
# (t-proj): the jobs table's digest; a backup replayed without evlogd derives the same
recipe t-proj
[ "$(json 'd["projection"], d["position"], d["tables"], d["rows"]' <<<"$OUT")" = "jobs 10 1 3" ] \
    || fail "(t-proj): $OUT"
PROJ=$OUT
"$EVLOG" --data "$D" backup "$T/copy" >/dev/null
[ "$("$EVLOG" --data "$T/copy" digest --projection jobs)" = "$PROJ" ] || fail "(t-proj) on a replayed backup"

# the log grows: the digest at 10 stays, the head moves on
curl -sS -X POST "$URL/streams/job-j4" -H 'Content-Type: application/json' \
    -d '{"type":"JobQueued","data":{"id":"j4","model":"m"}}' -o "$T/j4" -w '%{http_code}' >"$T/j4.code" \
    || fail "append j4: curl failed"
[ "$(cat "$T/j4.code")" = 201 ] || fail "append j4: $(cat "$T/j4.code") $(cat "$T/j4")"
recipe t-check
[ "$(tail -1 <<<"$OUT")" = "positions 1..10 unchanged" ] || fail "(t-check) after growing: $OUT"
[ "$(curl -sf "$URL/digest" | json 'd["position"]')" = 11 ] || fail "head digest did not move"

# One byte of record 4 (the last byte of its data: approved_by_id 7 -> 6), CRC redone.
stop
"$TAMPER" "$D" 4 -1
start
recipe_fails t-check
grep -q "^verify failed: position 4: hash chain broken" <<<"$OUT" || fail "(t-check) tampered: $OUT"
recipe_fails t-hashlib
grep -q "chain breaks at position 4" <<<"$ERR" || fail "(t-hashlib) tampered: $ERR"
stop
"$TAMPER" "$D" 4 -1   # the same flip again restores it
# The same byte, the CRC left alone: the CRC reports it
"$TAMPER" "$D" 4 -1 --keep-crc
set +e; "$EVLOG" --data "$D" verify >"$T/v" 2>&1; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "^verify failed: position 4: record does not decode or fails its CRC" "$T/v" \
    || fail "CRC: exit $rc $(cat "$T/v")"
"$TAMPER" "$D" 4 -1 --keep-crc
"$EVLOG" --data "$D" verify >"$T/v" 2>&1 || fail "restored: $(cat "$T/v")"
# A full rewrite: record 4 changed and the chain recomputed after it.  verify
# passes; only the kept digest tells.
"$TAMPER" "$D" 4 -1 --rechain
start
recipe_fails t-check
grep -q "^ok: 11 events verified" <<<"$OUT" || fail "(t-check) rewritten: verify should pass: $OUT"
grep -q "REWRITTEN: digest at 10" <<<"$ERR" || fail "(t-check) rewritten: $ERR"
recipe t-hashlib
[ "$(json 'd["position"]' <<<"$OUT")" = 11 ] || fail "(t-hashlib) rewritten: $OUT"
[ "$(json 'd["hash"]' <<<"$OUT")" = "$(curl -sf "$URL/digest" | json 'd["hash"]')" ] \
    || fail "(t-hashlib) rewritten: python and evlogd disagree"
stop
echo "ok audit_tamper_test"
