#!/usr/bin/env bash
# docs/audit.md's field-level history recipes, run as written: the `(history)`
# block (the ten events every recipe of the page is shown on) and each block
# that starts with a `# [name]` comment are extracted and run in a shell with
# URL (a real evlogd on a free port), DATA (its data dir, which the CLI reads
# beside it) and AT; their output is checked against that history.  A change
# to the page that breaks a recipe breaks this test.  (The `# (name)` recipes
# are tests/cli/audit_recipes_test.sh's.)
set -euo pipefail
BIN_DIR=${EVL_BIN_DIR:-$PWD}
SRC_DIR=${EVL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
EVLOG="$BIN_DIR/evlog"
EVLOGD="$BIN_DIR/evlogd"
DOC="$SRC_DIR/docs/audit.md"
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/evlog-audit-history.XXXXXX")
DPID=""
cleanup() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$EVLOG" ] && [ -x "$EVLOGD" ] || fail "no evlog/evlogd in $BIN_DIR"

# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds, fail at the deadline.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
        sleep 0.05
    done
}

$PY - "$DOC" "$T" <<'EOF'
import re, sys
doc, out = open(sys.argv[1]).read(), sys.argv[2]
names = []
for block in re.findall(r"^```sh\n(.*?)^```$", doc, re.S | re.M):
    m = re.match(r"# (?:\((history)\)|\[([\w-]+)\])", block)
    if m:
        name = m.group(1) or m.group(2)
        names.append(name)
        open("%s/recipe-%s.sh" % (out, name), "w").write(block)
want = ["history", "approved", "approved-cli", "node-at", "node-history", "before-failure", "failure-diff"]
if names != want:
    sys.exit("docs/audit.md has history recipes %r, this test checks %r" % (names, want))
EOF

recipe() {
    local rc=0
    (cd "$T/work" && PATH="$BIN_DIR:$PATH" URL="$URL" DATA="$D" AT="${AT:-}" \
        bash -euo pipefail "$T/recipe-$1.sh") >"$T/out" 2>"$T/err" || rc=$?
    OUT=$(cat "$T/out")
    [ "$rc" -eq 0 ] || fail "recipe [$1] exited $rc: $(cat "$T/err")"
}
json() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
time_of() { curl -sf "$URL/events/$1" | json 'd["time"]'; }

D="$T/data"
mkdir -p "$T/work"
"$EVLOGD" --data "$D" --listen 127.0.0.1:0 --threads 2 2>"$T/evlogd.err" &
DPID=$!
listening() { grep -q "listening on http://" "$T/evlogd.err" || ! kill -0 "$DPID" 2>/dev/null; }
wait_for 15 "evlogd to start" listening
kill -0 "$DPID" 2>/dev/null || fail "evlogd exited: $(cat "$T/evlogd.err")"
URL=$(grep -o "http://127.0.0.1:[0-9]*" "$T/evlogd.err" | head -1)

recipe history
for p in tasks jobs; do
    curl -sf "$URL/projections/$p/query" -d '{"sql":"SELECT 1","min_position":10,"timeout_ms":15000}' >/dev/null \
        || fail "projection $p did not reach position 10"
done

# (d) who approved task 42, and when
recipe approved
[ "$OUT" = "$(printf '1 %s TaskSubmitted user-3 None -> pending\n4 %s TaskApproved alice pending -> approved' \
    "$(time_of 1)" "$(time_of 4)")" ] || fail "[approved]: $OUT"
recipe approved-cli
grep -Eq "^4 $(time_of 4) TaskApproved alice update$" <<<"$OUT" || fail "[approved-cli] entry: $OUT"
grep -Fxq '    approval_status: "pending" -> "approved"' <<<"$OUT" || fail "[approved-cli] diff: $OUT"
grep -Fxq '    approved_by_id: null -> 7' <<<"$OUT" || fail "[approved-cli] approved_by_id: $OUT"
[ "$(grep -c '^[0-9]' <<<"$OUT")" = 5 ] || fail "[approved-cli] entries: $OUT"   # 1 4 5 7 8

# (e) the node at a moment between events 6 and 7: assigned (5), not yet started (7)
AT=$(time_of 6)
recipe node-at
[ "$(json 'd["rows"], d["position"], d["as_of"]["position"]' <<<"$OUT")" = "[['assigning', 'kr-gpu-01']] 6 6" ] \
    || fail "[node-at]: $OUT"
# the same answer as evlog replay --until at that time
"$EVLOG" --data "$D" replay --projection tasks --until "$AT" --out "$T/tasks-at.db" >/dev/null
[ "$(sqlite3 "$T/tasks-at.db" "SELECT status, assigned_node FROM tasks WHERE task_id = 42")" = "assigning|kr-gpu-01" ] \
    || fail "[node-at] differs from replay --until"
recipe node-at
[ "$(json 'd["as_of"]["cached"]' <<<"$OUT")" = True ] || fail "[node-at] again is not from the cache: $OUT"
recipe node-history
[ "$OUT" = "$(printf '5 %s TaskAssigned scheduler update\n    assigned_node: null -> "kr-gpu-01"' "$(time_of 5)")" ] \
    || fail "[node-history]: $OUT"

# (f) job j2 failed at 9: its row at 8
recipe before-failure
[ "$(json 'd["rows"], d["position"]' <<<"$OUT")" = "[['j2', 'mistral-7b', 'queued', None, None]] 8" ] \
    || fail "[before-failure]: $OUT"
recipe failure-diff
grep -Eq "^9 $(time_of 9) JobFailed worker-2 update$" <<<"$OUT" || fail "[failure-diff] entry: $OUT"
grep -Fxq '    status: "queued" -> "failed"' <<<"$OUT" && grep -Fxq '    error: null -> "disk full"' <<<"$OUT" \
    || fail "[failure-diff] diff: $OUT"
[ "$(tail -n 1 <<<"$OUT" | sed 's/^ *//')" = 'error: null -> "disk full"' ] || fail "[failure-diff] order: $OUT"

# --json is the HTTP answer, less the projection name
[ "$("$EVLOG" --data "$D" history tasks tasks 42 --json | json 'len(d["entries"]), d["position"]')" = "5 10" ] \
    || fail "history --json"
cmp <("$EVLOG" --data "$D" history tasks tasks 42 --column status --json | json 'd["entries"]') \
    <(curl -sf "$URL/projections/tasks/history/tasks/42?column=status" | json 'd["entries"]') || fail "CLI and HTTP differ"
# refusals: a table without history, a bad column, a missing argument
rc=0; "$EVLOG" --data "$D" history nodes nodes kr-gpu-01 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "has no history" "$T/err" || fail "history of a table without @history: $rc $(cat "$T/err")"
rc=0; "$EVLOG" --data "$D" history tasks tasks 42 --column nope 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "no column nope" "$T/err" || fail "history --column nope: $rc"
rc=0; "$EVLOG" --data "$D" history tasks tasks 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "history without KEY: $rc"
# jobs keeps no history of progress (-- @history jobs EXCEPT progress, ...): refused, not an empty list
rc=0; "$EVLOG" --data "$D" history jobs jobs j1 --column progress 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "column progress of table jobs is not recorded" "$T/err" || fail "history --column progress: $rc"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/projections/jobs/history/jobs/j1?column=downloaded_bytes")" = 400 ] \
    || fail "GET history ?column=downloaded_bytes is not 400"

kill "$DPID"
wait "$DPID" || fail "evlogd exited non-zero"
DPID=""
[ ! -d "$D/asof" ] || [ -z "$(ls -A "$D/asof")" ] || fail "as_of builds left after shutdown: $(ls "$D/asof")"
# embedded, without evlogd: the CLI runs the projections itself
[ "$("$EVLOG" --data "$D" history jobs jobs j2 --column error --json | json 'd["entries"][0]["changes"][0]["new"]')" = "disk full" ] \
    || fail "embedded history"
echo "ok audit history recipes"
