#!/usr/bin/env bash
# docs/audit.md, run as written: every code block there that starts with a
# `# (name)` comment is extracted and run, in a shell with URL (a real evlogd
# on a free port) and DATA (its data dir, read by the CLI beside it), and its
# output is checked against the history the page appends.  A change to the
# page that breaks a recipe breaks this test.
set -euo pipefail
BIN_DIR=${EVL_BIN_DIR:-$PWD}
SRC_DIR=${EVL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
EVLOG="$BIN_DIR/evlog"
EVLOGD="$BIN_DIR/evlogd"
DOC="$SRC_DIR/docs/audit.md"
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/evlog-audit.XXXXXX")
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

# The recipes: blocks of ```sh ... ``` whose first line is "# (name) ...".
$PY - "$DOC" "$T" <<'EOF'
import re, sys
doc, out = open(sys.argv[1]).read(), sys.argv[2]
names = []
for block in re.findall(r"^```sh\n(.*?)^```$", doc, re.S | re.M):
    m = re.match(r"# \(([\w-]+)\)", block)
    if m:
        names.append(m.group(1))
        open("%s/recipe-%s.sh" % (out, m.group(1)), "w").write(block)
want = ["history", "a", "a-row", "a-cli", "b", "b-log", "c", "c-cli"]
# the tamper-evidence recipes (t-...) are audit_tamper_test.sh's
if [n for n in names if not n.startswith("t-")] != want:
    sys.exit("docs/audit.md has recipes %r, this test checks %r" % (names, want))
EOF

# recipe NAME: run it where a user would (a scratch dir, evlog on PATH); its
# stdout is in $OUT.
recipe() {
    local rc=0
    (cd "$T/work" && PATH="$BIN_DIR:$PATH" URL="$URL" DATA="$D" AT="${AT:-}" SINCE="${SINCE:-}" \
        UNTIL="${UNTIL:-}" bash -euo pipefail "$T/recipe-$1.sh") >"$T/out" 2>"$T/err" || rc=$?
    OUT=$(cat "$T/out")
    [ "$rc" -eq 0 ] || fail "recipe ($1) exited $rc: $(cat "$T/err")"
}
json() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# field N of each line of $OUT, space-joined
col() { awk -v n="$1" '{ printf "%s%s", (NR > 1 ? " " : ""), $n }' <<<"$OUT"; }
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
[ "$(curl -sf "$URL/events?limit=1" | json 'd["head"]')" = 10 ] || fail "the history is not 10 events"
# The recipes read projections as evlogd has them: wait until both have
# applied the whole history (min_position: the server waits, with a deadline).
for p in tasks jobs; do
    curl -sf "$URL/projections/$p/query" -d '{"sql":"SELECT 1","min_position":10,"timeout_ms":15000}' >/dev/null \
        || fail "projection $p did not reach position 10"
done

# (a) who changed task 42, and when
recipe a
[ "$(col 1)" = "1 4 5 7 8" ] || fail "(a) positions: $OUT"
[ "$(col 3)" = "TaskSubmitted TaskApproved TaskAssigned TaskStarted TaskKilled" ] || fail "(a) types: $OUT"
[ "$(col 4)" = "user-3 alice scheduler runner-kr-gpu-01 alice" ] || fail "(a) actors: $OUT"
[ "$(awk '{print $2}' <<<"$OUT" | head -1)" = "$(time_of 1)" ] || fail "(a) times: $OUT"
recipe a-row
[ "$(head -1 <<<"$OUT" | json 'd["rows"]')" = "[['killed', 7, 'kr-gpu-01']]" ] || fail "(a-row) row: $OUT"
[ "$(tail -n +2 <<<"$OUT")" = "$(printf '4 TaskApproved alice\n5 TaskAssigned scheduler')" ] \
    || fail "(a-row) correlation: $OUT"
recipe a-cli
[ "$(grep -c '"subject":"task-42"' <<<"$OUT")" = 5 ] || fail "(a-cli) read: $OUT"
grep -Eq "^killed +7 +kr-gpu-01" <<<"$OUT" || fail "(a-cli) query: $OUT"

# (b) what the jobs table said at a moment between events 6 and 7
AT=$(time_of 6)
recipe b
[ "$OUT" = "$(printf 'jobs-1030.db: jobs as of position 6\nj1|llama-3-8b|running\nj2|mistral-7b|queued')" ] \
    || fail "(b): $OUT"
[ "$(sqlite3 "$T/work/jobs-1030.db" "SELECT count(*) FROM jobs")" = 2 ] || fail "(b) file"
recipe b-log
[ "$(col 1)" = "6 3 2" ] && [ "$(col 5)" = "worker-1 bob alice" ] || fail "(b-log): $OUT"

# (c) alice between events 4 and 8 (she also acted at 2 and 10, outside)
SINCE=$(time_of 4) UNTIL=$(time_of 8)
recipe c
[ "$(col 1)" = "4 8" ] && [ "$(col 4)" = "TaskApproved TaskKilled" ] || fail "(c): $OUT"
recipe c-cli
[ "$($PY -c 'import json,sys; print([json.loads(l)["position"] for l in sys.stdin])' <<<"$OUT")" = "[4, 8]" ] \
    || fail "(c-cli): $OUT"

# The CLI's filters beyond the recipes: alone, combined, backward, bounded.
positions() { "$EVLOG" --data "$D" read "$@" | $PY -c 'import json,sys; print(*[json.loads(l)["position"] for l in sys.stdin])'; }
[ "$(positions --actor alice)" = "2 4 8 10" ] || fail "read --actor"
[ "$(positions --actor alice --backward --limit 3)" = "10 8 4" ] || fail "read --actor --backward"
[ "$(positions --actor alice --from 5 --until 9)" = "8" ] || fail "read --actor --from --until POS"
[ "$(positions --actor alice --category job)" = "2 10" ] || fail "read --actor --category"
[ "$(positions --correlation-id req-101 --type TaskAssigned)" = "5" ] || fail "read --correlation-id --type"
[ "$(positions task-42 --actor alice)" = "4 8" ] || fail "read STREAM --actor"
[ "$(positions --actor nobody)" = "" ] || fail "read --actor nobody"
tail_out=$("$EVLOG" --data "$D" tail --actor alice --limit 2 | $PY -c 'import json,sys; print(*[json.loads(l)["position"] for l in sys.stdin])')
[ "$tail_out" = "8 10" ] || fail "tail --actor: $tail_out"
for bad in "--until soon" "--since 10:30" "--until 0"; do
    # shellcheck disable=SC2086
    set +e; "$EVLOG" --data "$D" read --actor alice $bad >/dev/null 2>&1; rc=$?; set -e
    [ "$rc" = 2 ] || fail "read --actor alice $bad: exit $rc, want 2"
done
set +e; "$EVLOG" --data "$D" read >/dev/null 2>&1; rc=$?; set -e
[ "$rc" = 2 ] || fail "read without STREAM or filter: exit $rc, want 2"
"$EVLOG" --data "$D" verify >"$T/verify" 2>&1 || fail "verify: $(cat "$T/verify")"

kill -TERM "$DPID"
wait "$DPID" || fail "evlogd exit status $?"
DPID=""
echo "ok audit_recipes_test"
