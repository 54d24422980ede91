#!/usr/bin/env bash
# evlog query / evlog projections, embedded (the CLI runs the engine) and
# beside a running evlogd (the CLI reads the files evlogd maintains).
set -euo pipefail
BIN_DIR=${EVL_BIN_DIR:-$PWD}
EVLOG="$BIN_DIR/evlog"
EVLOGD="$BIN_DIR/evlogd"
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/evlog-proj-cli.XXXXXX")
DPID=""
cleanup() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
D="$T/data"
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { set +e; "$@" >"$T/out" 2>"$T/err"; RC=$?; set -e; OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); }
expect() { [ "$RC" -eq "$1" ] || fail "$2: exit $RC, want $1; stdout: $OUT; stderr: $ERR"; }
json() { $PY -c "import json,sys; d=json.load(open('$T/out')); print($1)"; }

mkdir -p "$T/specs"
cat >"$T/specs/mine.sql" <<'SQL'
-- @projection mine
CREATE TABLE jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, status TEXT NOT NULL, n INTEGER);
-- @on JobQueued
INSERT INTO jobs (id, model, status, n) VALUES (:id, :model, 'queued', :n);
-- @on JobStarted
UPDATE jobs SET status = 'running' WHERE id = :id;
SQL
printf -- '-- @projection broken\nCREATE TABLE t (a);\n-- @on X\nINSERT INTO nope VALUES (1);\n' >"$T/specs/broken.sql"

for i in 1 2 3; do
    run "$EVLOG" --data "$D" append "job-$i" JobQueued "{\"id\":\"$i\",\"model\":\"m$((i % 2))\",\"n\":$i}"; expect 0 append
done
run "$EVLOG" --data "$D" append job-2 JobStarted '{"id":"2"}'; expect 0 append

# embedded: the CLI brings the projection up to date, then answers
P=(--data "$D" --projections "$T/specs" --no-builtin)
run "$EVLOG" "${P[@]}" query mine "SELECT id, status FROM jobs ORDER BY id" --json; expect 0 "query --json"
[ "$(json "d['rows']")" = "[['1', 'queued'], ['2', 'running'], ['3', 'queued']]" ] || fail "rows: $OUT"
[ "$(json "(d['position'], d['columns'])")" = "(4, ['id', 'status'])" ] || fail "position/columns: $OUT"
echo "$ERR" | grep -q "broken.sql:4: no such table: nope" || fail "broken spec not reported with its line: $ERR"
run "$EVLOG" "${P[@]}" query mine "SELECT count(*) AS c FROM jobs WHERE model = :m AND n >= :k" --param m=m1 --param k=1 --json
expect 0 "query --param"
[ "$(json "d['rows']")" = "[[2]]" ] || fail "params: $OUT"
run "$EVLOG" "${P[@]}" query mine "SELECT id, model FROM jobs ORDER BY id"; expect 0 "query table"
echo "$OUT" | grep -q "^id  model" || fail "table header: $OUT"
echo "$OUT" | grep -q "(3 rows, as of position 4)" || fail "table footer: $OUT"
run "$EVLOG" "${P[@]}" query mine "DELETE FROM jobs"; expect 1 "writing SQL"
echo "$ERR" | grep -q "read-only" || fail "writing SQL message: $ERR"
run "$EVLOG" "${P[@]}" query mine "SELEC 1"; expect 1 "bad SQL"
echo "$ERR" | grep -q "syntax error" || fail "bad SQL message: $ERR"
run "$EVLOG" "${P[@]}" query nosuch "SELECT 1"; expect 1 "unknown projection"
run "$EVLOG" "${P[@]}" query mine; expect 2 "missing SQL"
run "$EVLOG" "${P[@]}" query mine "SELECT 1" --param nonsense; expect 2 "bad --param"
run "$EVLOG" "${P[@]}" projections --json; expect 0 "projections --json"
[ "$(json "[(p['name'], p['state'], p['checkpoint'], p['lag'], p['events_applied'], p['tables']) for p in d]")" = \
  "[('mine', 'live', 4, 0, 4, {'jobs': 3})]" ] || fail "projections: $OUT"
run "$EVLOG" "${P[@]}" projections; expect 0 projections
echo "$OUT" | grep -Eq "^mine +live +4 +0 +4  jobs=3$" || fail "projections table: $OUT"
# the built-ins come along without --no-builtin
run "$EVLOG" --data "$D" projections --json; expect 0 "builtin projections"
[ "$(json "sorted(p['name'] for p in d)")" = "['auth', 'jobs', 'karr', 'nodes', 'runs', 'saas', 'tasks']" ] || fail "builtins: $OUT"

# point-in-time replay into a file the stock sqlite3 tool reads, by position and by time
run "$EVLOG" "${P[@]}" replay --projection mine --until 3 --out "$T/at3.db"; expect 0 "replay --until 3"
[ "$(sqlite3 "$T/at3.db" "SELECT group_concat(id || ':' || status) FROM jobs")" = "1:queued,2:queued,3:queued" ] \
    || fail "replay at 3: $(sqlite3 "$T/at3.db" 'SELECT * FROM jobs')"
run "$EVLOG" "${P[@]}" replay --projection mine --until 4 --out "$T/at4.db"; expect 0 "replay --until 4"
[ "$(sqlite3 "$T/at4.db" "SELECT status FROM jobs WHERE id = '2'")" = "running" ] || fail "replay at 4"
run "$EVLOG" --data "$D" export --from 3 --until 3; expect 0 "export position 3"
T3=$(echo "$OUT" | $PY -c 'import json,sys; print(json.load(sys.stdin)["time"])')
run "$EVLOG" "${P[@]}" replay --projection mine --until "$T3" --out "$T/t3.db"; expect 0 "replay --until TIME"
[ "$(sqlite3 "$T/t3.db" "SELECT position FROM _evl_checkpoint")" = "3" ] || fail "replay by time: $OUT"
run "$EVLOG" "${P[@]}" replay --projection mine --until 2000-01-01T00:00:00Z --out "$T/t0.db"; expect 0 "replay before the log"
[ "$(sqlite3 "$T/t0.db" "SELECT count(*) FROM jobs")" = "0" ] || fail "replay before the first event"
run "$EVLOG" "${P[@]}" replay --projection mine --until yesterday --out "$T/x.db"; expect 2 "replay bad --until"
run "$EVLOG" "${P[@]}" replay --projection nosuch --until 1 --out "$T/x.db"; expect 1 "replay unknown projection"

# verify checks each projection's checkpoint and notices a changed spec
run "$EVLOG" "${P[@]}" verify; expect 0 verify
echo "$OUT" | grep -qx "projection mine: checkpoint 4 of 4" || fail "verify projection line: $OUT"
mkdir -p "$T/specs2"
sed 's/n INTEGER);/n INTEGER, extra TEXT);/' "$T/specs/mine.sql" >"$T/specs2/mine.sql"
run "$EVLOG" --data "$D" --projections "$T/specs2" --no-builtin verify; expect 0 "verify, changed spec"
echo "$OUT" | grep -q "projection mine: checkpoint 4 of 4 (spec changed since it was built" || fail "changed spec: $OUT"

# evlog rebuild: the changed spec's table replaces the old one (no evlogd here)
P2=(--data "$D" --projections "$T/specs2" --no-builtin)
run "$EVLOG" "${P2[@]}" rebuild mine; expect 0 "rebuild"
echo "$OUT" | grep -q "^rebuilt mine: checkpoint 4 of 4, 4 events applied" || fail "rebuild line: $OUT"
echo "$ERR" | grep -q "spec changed" || fail "rebuild report: $ERR"
run "$EVLOG" "${P2[@]}" query mine "SELECT id, status, extra FROM jobs ORDER BY id" --json; expect 0 "query after rebuild"
[ "$(json "(d['columns'], d['rows'])")" = \
  "(['id', 'status', 'extra'], [['1', 'queued', None], ['2', 'running', None], ['3', 'queued', None]])" ] \
    || fail "rebuilt rows: $OUT"
[ "$(readlink "$D/projections/mine.db")" = mine.db.g1 ] || fail "mine.db -> $(readlink "$D/projections/mine.db")"
run "$EVLOG" "${P2[@]}" rebuild mine; expect 0 "rebuild, same spec"
[ "$(readlink "$D/projections/mine.db")" = mine.db.g2 ] || fail "second generation"
[ -z "$(ls "$D/projections" | grep "^mine.db.g1")" ] || fail "old generation left: $(ls "$D/projections")"
run "$EVLOG" "${P2[@]}" verify; expect 0 "verify after rebuild"
echo "$OUT" | grep -qx "projection mine: checkpoint 4 of 4" || fail "verify after rebuild: $OUT"
run "$EVLOG" "${P2[@]}" rebuild nosuch; expect 1 "rebuild unknown"
run "$EVLOG" "${P2[@]}" rebuild; expect 2 "rebuild without a name"

# backup: the log, and the specs in use that are not built in
run "$EVLOG" --data "$D" backup "$T/bk"; expect 0 backup
cmp -s "$T/bk/specs/mine.sql" "$T/specs2/mine.sql" || fail "backed-up spec: $(ls "$T/bk" "$T/bk/specs")"
[ ! -e "$T/bk/specs/jobs.sql" ] || fail "a built-in spec was copied"
echo "$OUT" | grep -q -- "--projections $T/bk/specs" || fail "restore hint: $OUT"
run "$EVLOG" --data "$T/bk" --projections "$T/bk/specs" --no-builtin query mine "SELECT id, extra FROM jobs ORDER BY id" --json
expect 0 "query the restored copy"
[ "$(json "d['rows']")" = "[['1', None], ['2', None], ['3', None]]" ] || fail "restored rows: $OUT"

# beside a running evlogd: the CLI reads evlogd's files, read-only
"$EVLOGD" --data "$D" --projections "$T/specs" --no-builtin 2>"$T/evlogd.err" &
DPID=$!
for _ in $(seq 100); do grep -q "started on" "$T/evlogd.err" && break; sleep 0.1; done
grep -q "started on" "$T/evlogd.err" || fail "evlogd did not start: $(cat "$T/evlogd.err")"
run "$EVLOG" --data "$D" append job-9 JobQueued '{}'; expect 1 "append while evlogd owns the dir"
echo "$ERR" | grep -q "data directory in use" || fail "busy message: $ERR"
run "$EVLOG" --data "$D" rebuild mine; expect 1 "rebuild while evlogd owns the dir"
echo "$ERR" | grep -q "curl -X POST http://HOST:PORT/projections/mine/rebuild" || fail "rebuild hint: $ERR"
run "$EVLOG" --data "$D" query mine "SELECT count(*) FROM jobs" --json; expect 0 "query beside evlogd"
[ "$(json "d['rows']")" = "[[3]]" ] || fail "query beside evlogd: $OUT"
run "$EVLOG" --data "$D" projections --json; expect 0 "projections beside evlogd"
[ "$(json "[(p['name'], p['state'], p['checkpoint'], p['tables']) for p in d if p['name'] == 'mine']")" = \
  "[('mine', 'live', 4, {'jobs': 3})]" ] || fail "projections beside evlogd: $OUT"
# a fault in evlogd's projector shows in the files: NOT NULL model missing
cat >"$T/specs/strict.sql" <<'SQL'
-- @projection strict
CREATE TABLE jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL);
-- @on JobQueued
INSERT INTO jobs VALUES (:id, :model);
SQL
kill -TERM "$DPID"; wait "$DPID" || fail "evlogd exit status $?"; DPID=""
run "$EVLOG" --data "$D" append job-7 JobQueued '{"id":"7"}'; expect 0 "append without model"
"$EVLOGD" --data "$D" --projections "$T/specs" --no-builtin 2>"$T/evlogd.err" &
DPID=$!
for _ in $(seq 100); do grep -q "strict faulted" "$T/evlogd.err" && break; sleep 0.1; done
grep -q "projection strict faulted at position 5 (JobQueued): .*NOT NULL constraint failed: jobs.model" "$T/evlogd.err" \
    || fail "fault line: $(cat "$T/evlogd.err")"
run "$EVLOG" --data "$D" projections --json; expect 0 "projections with a fault"
[ "$(json "[(p['state'], p['fault_position'], p['fault_type']) for p in d if p['name'] == 'strict']")" = \
  "[('faulted', 5, 'JobQueued')]" ] || fail "faulted status from the file: $OUT"
kill -TERM "$DPID"
wait "$DPID" || fail "evlogd exit status $?"
DPID=""
grep -q "stopped (SIGTERM)" "$T/evlogd.err" || fail "evlogd stop line: $(cat "$T/evlogd.err")"
echo "ok proj_cli_test"
