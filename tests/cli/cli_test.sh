#!/usr/bin/env bash
# The evlog command-line tool, end to end: every fixed command line of
# DESIGN.md with its output and exit status.  Run by ctest from the build dir
# (EVL_BIN_DIR holds the evlog binary).
set -euo pipefail

BIN_DIR=${EVL_BIN_DIR:-$PWD}
EVLOG="$BIN_DIR/evlog"
PY=/usr/bin/python3
[ -x "$EVLOG" ] || { echo "FAIL: no evlog binary at $EVLOG" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/evlog-cli-test.XXXXXX")
BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    exec 3>&- 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

D="$T/data"
CHECKS=0

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { CHECKS=$((CHECKS + 1)); }

# run CMD...: stdout -> $OUT, stderr -> $ERR, status -> $RC, never aborts.
run() {
    set +e
    "$@" >"$T/out" 2>"$T/err"
    RC=$?
    set -e
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
}
ev() { run "$EVLOG" --data "$D" "$@"; }

expect_rc() { # expect_rc CODE WHAT
    [ "$RC" -eq "$1" ] || fail "$2: exit status $RC, expected $1
stdout: $OUT
stderr: $ERR"
    ok
}
expect_err() { # expect_err TEXT WHAT
    grep -qF -- "$1" <<<"$ERR" || fail "$2: stderr lacks '$1'; stderr: $ERR"
    ok
}
expect_out() {
    grep -qF -- "$1" <<<"$OUT" || fail "$2: stdout lacks '$1'; stdout: $OUT"
    ok
}

# jcheck EXPR WHAT: EXPR is Python over L (the NDJSON lines of $OUT, parsed)
# and d (L[0]).  Every line must be one compact JSON object.
cat >"$T/jcheck.py" <<'EOF'
import json, re, sys
expr, what, text = sys.argv[1], sys.argv[2], sys.stdin.read()
UUID = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
TIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$')
L = []
for n, line in enumerate(text.splitlines(), 1):
    try:
        v = json.loads(line)
    except ValueError as e:
        sys.exit("%s: line %d is not JSON (%s): %r" % (what, n, e, line))
    if not isinstance(v, dict):
        sys.exit("%s: line %d is not an object: %r" % (what, n, line))
    if json.dumps(v, separators=(',', ':'), ensure_ascii=False).count('\n') or '\n' in line:
        sys.exit("%s: not one line" % what)
    L.append(v)
d = L[0] if L else None
def cloud(e):
    """The CloudEvents shape of DESIGN.md."""
    return (e['specversion'] == '1.0' and e['source'] == 'evlog' and UUID.match(e['id'])
            and isinstance(e['type'], str) and isinstance(e['subject'], str)
            and TIME.match(e['time']) and isinstance(e['data'], dict)
            and isinstance(e['meta'], dict) and type(e['position']) is int
            and type(e['revision']) is int)
def pos(): return [e['position'] for e in L]
def revs(): return [e['revision'] for e in L]
try:
    good = eval(expr)
except Exception as e:
    good = False
    print("%s: %r raised %r" % (what, expr, e), file=sys.stderr)
if not good:
    sys.exit("%s: check failed: %s\non output:\n%s" % (what, expr, text[:3000]))
EOF
jcheck() {
    "$PY" "$T/jcheck.py" "$1" "$2" <<<"$OUT" || fail "$2"
    ok
}

# wait_for WHAT CMD...: poll a condition with a deadline (never a fixed sleep).
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + 10))
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out after 10 s waiting for: $what"
        sleep 0.05
    done
}
count_lines() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }

# ---------------------------------------------------------------- help, usage
run "$EVLOG" --version
expect_rc 0 "--version"
expect_out "evlog 0.1.0" "--version"
run "$EVLOG" --help
expect_rc 0 "--help"
for c in append read tail export import verify stats; do expect_out "$c" "--help lists $c"; done
run "$EVLOG" help
expect_rc 0 "help"
expect_out "usage: evlog" "help"
run "$EVLOG" append --help
expect_rc 0 "append --help"
expect_out "--expected REV" "append --help"
run "$EVLOG"
expect_rc 2 "no command"
expect_err "usage:" "no command"
run "$EVLOG" frobnicate
expect_rc 2 "unknown command"
expect_err "unknown command 'frobnicate'" "unknown command"
ev append job-1 JobQueued --bogus
expect_rc 2 "unknown flag"
expect_err "unknown option '--bogus'" "unknown flag"
expect_err "usage: evlog" "unknown flag"
run "$EVLOG" --bogus read x
expect_rc 2 "unknown global flag"
ev append job-1
expect_rc 2 "append without TYPE"
ev read
expect_rc 2 "read without STREAM"
ev read job-1 --limit many
expect_rc 2 "read --limit not a number"
ev read job-1 --from
expect_rc 2 "flag without value"
ev tail --from -3
expect_rc 2 "tail --from negative"
ev append job-1 JobQueued --expected sometimes
expect_rc 2 "bad --expected"
expect_err "--expected" "bad --expected"
ev append job-1 JobQueued --id not-a-uuid
expect_rc 2 "bad --id"
ev stats --json extra
expect_rc 2 "stats extra argument"
[ ! -e "$D" ] || fail "usage errors must not create the data dir"
ok

# read-only commands on a data dir that has no log yet
for c in "read job-1" "tail" "export" "verify" "stats"; do
    # shellcheck disable=SC2086
    ev $c
    expect_rc 1 "$c on a missing log"
    expect_err "no event log in" "$c on a missing log"
done

# ------------------------------------------------------------ append and read
DATA='{"model":"llama-3","n":3,"f":1.5,"neg":-7,"big":9007199254740993,"ok":true,"no":false,"nil":null,"list":[1,"two",{"three":3.25}],"nested":{"a":{"b":{"c":[]}}},"uni":"h\u00e9llo \u2713","empty":{}}'
META='{"actor":"alice","correlation_id":"c-1","n":1}'
ev append job-1 JobQueued "$DATA" --meta "$META"
expect_rc 0 "first append"
jcheck 'd["position"] == 1 and d["revision"] == 0 and d["stream"] == "job-1" and UUID.match(d["id"]) and "idempotent" not in d and len(L) == 1' "append ack"
ID1=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$OUT")

ev read job-1
expect_rc 0 "read job-1"
jcheck "len(L) == 1 and cloud(d) and d['id'] == '$ID1' and d['type'] == 'JobQueued' and d['subject'] == 'job-1' and d['position'] == 1 and d['revision'] == 0" "read round trip: envelope"
jcheck "json.dumps(d['data'], sort_keys=True) == json.dumps(json.loads(r'''$DATA'''), sort_keys=True) and d['meta'] == json.loads(r'''$META''')" "read round trip: data and meta"
jcheck 'type(d["data"]["n"]) is int and type(d["data"]["f"]) is float and d["data"]["big"] == 9007199254740993 and d["data"]["ok"] is True and d["data"]["nil"] is None and type(d["data"]["list"][2]["three"]) is float and d["data"]["uni"] == "h\u00e9llo \u2713"' "read round trip: value types"
jcheck 'list(d.keys())[:7] == ["specversion","id","source","type","subject","time","data"]' "CloudEvents field order"

# DATA_JSON defaults to {}, meta to {}; global options may follow the command
run "$EVLOG" append job-1 JobStarted --data "$D"
expect_rc 0 "append with --data after the command"
jcheck 'd["position"] == 2 and d["revision"] == 1' "second append"
ev read job-1 --from 1
jcheck 'len(L) == 1 and d["data"] == {} and d["meta"] == {} and d["type"] == "JobStarted"' "default data and meta"

# the default data dir is ./evlog-data
mkdir "$T/cwd"
(cd "$T/cwd" && run "$EVLOG" append cwd-1 Made '{"a":1}' && expect_rc 0 "append to the default dir" &&
    [ -d "$T/cwd/evlog-data/log" ]) || fail "default data dir ./evlog-data not used"
ok

# ------------------------------------------------------- expected revisions
ev append job-1 JobRunning '{"step":1}' --expected 1
expect_rc 0 "expected revision matches"
jcheck 'd["revision"] == 2 and d["position"] == 3' "expected revision matches"
ev append job-1 JobRunning '{"step":2}' --expected 1
expect_rc 3 "stale expected revision"
expect_err "evlog: conflict: stream job-1 is at revision 2, expected 1" "conflict message"
ev append job-1 JobQueued --expected no_stream
expect_rc 3 "no_stream on an existing stream"
expect_err "stream job-1 is at revision 2, expected no_stream" "no_stream conflict message"
ev append job-new JobQueued --expected exists
expect_rc 3 "exists on a missing stream"
expect_err "evlog: conflict: stream job-new is at revision no_stream, expected exists" "exists conflict message"
ev append job-2 JobQueued '{"model":"m2"}' --expected no_stream
expect_rc 0 "no_stream on a new stream"
jcheck 'd["revision"] == 0 and d["position"] == 4' "no_stream on a new stream"
ev append job-2 JobStarted --expected exists
expect_rc 0 "exists on an existing stream"
ev append job-2 JobFinished --expected any
expect_rc 0 "any"
jcheck 'd["revision"] == 2 and d["position"] == 6' "any"
ev read job-new
expect_rc 1 "conflicts write nothing"

# ------------------------------------------------------- idempotent --id
UUID=0190a5f3-1c2b-7d4e-8f60-123456789abc
ev append job-3 JobQueued '{"x":1}' --id "$UUID"
expect_rc 0 "append with --id"
jcheck "d['id'] == '$UUID' and d['position'] == 7 and 'idempotent' not in d" "append with --id"
ev append job-3 JobQueued '{"x":1}' --id "$UUID"
expect_rc 0 "repeat of an --id"
jcheck "d['id'] == '$UUID' and d['position'] == 7 and d['revision'] == 0 and d['idempotent'] is True" "idempotent repeat"
ev read job-3
jcheck "len(L) == 1 and d['id'] == '$UUID'" "idempotent repeat writes nothing"
ev append job-4 JobQueued '{"x":1}' --id "$UUID"
expect_rc 1 "id reused on another stream"
expect_err "already belongs" "id reused on another stream"

# ------------------------------------------------------- invalid events
HEAD_BEFORE=7
ev append '' JobQueued
expect_rc 1 "empty stream name"
expect_err "invalid stream name" "empty stream name"
ev append $'bad\tname' JobQueued
expect_rc 1 "control character in stream name"
expect_err "invalid stream name" "control character in stream name"
ev append "$(printf 'x%.0s' {1..256})" JobQueued
expect_rc 1 "256-byte stream name"
expect_err "invalid stream name" "256-byte stream name"
ev append "job-$(printf 'x%.0s' {1..251})" JobQueued
expect_rc 0 "255-byte stream name"
HEAD_BEFORE=8
ev append job-5 ''
expect_rc 1 "empty type"
expect_err "invalid event type" "empty type"
ev append job-5 JobQueued '[1,2]'
expect_rc 1 "data is an array"
expect_err "DATA_JSON must be a JSON object, not an array" "data is an array"
ev append job-5 JobQueued '"text"'
expect_rc 1 "data is a string"
expect_err "must be a JSON object" "data is a string"
ev append job-5 JobQueued '{"a":'
expect_rc 1 "malformed JSON"
expect_err "malformed JSON" "malformed JSON"
ev append job-5 JobQueued '{}' --meta '[]'
expect_rc 1 "meta is not an object"
expect_err "--meta must be a JSON object" "meta is not an object"
ev append job-5 JobQueued '{}' --meta '{"a"'
expect_rc 1 "malformed meta"
expect_err "malformed JSON in --meta" "malformed meta"
deep() { local s='1' i; for ((i = 0; i < $1; i++)); do s="{\"k\":$s}"; done; echo "$s"; }
ev append job-5 JobQueued "$(deep 17)"
expect_rc 1 "data nested 17 deep"
expect_err "nested deeper than 16" "data nested 17 deep"
ev append job-5 JobQueued "$(deep 16)"
expect_rc 0 "data nested 16 deep"
HEAD_BEFORE=9
ev stats --json
jcheck "d['head'] == $HEAD_BEFORE" "invalid appends write nothing"

# ------------------------------------------------------------------ read
for i in 0 1 2 3 4; do
    ev append run-7 Progress "{\"i\":$i}"
    expect_rc 0 "append run-7 #$i"
done
ev read run-7
jcheck 'revs() == [0,1,2,3,4] and [e["data"]["i"] for e in L] == [0,1,2,3,4] and all(cloud(e) for e in L) and pos() == sorted(pos())' "read all"
ev read run-7 --from 2
jcheck 'revs() == [2,3,4]' "read --from"
ev read run-7 --limit 2
jcheck 'revs() == [0,1]' "read --limit"
ev read run-7 --from 1 --limit 2
jcheck 'revs() == [1,2]' "read --from --limit"
ev read run-7 --backward
jcheck 'revs() == [4,3,2,1,0]' "read --backward"
ev read run-7 --backward --limit 2
jcheck 'revs() == [4,3]' "read --backward --limit"
ev read run-7 --backward --from 2
jcheck 'revs() == [2,1,0]' "read --backward --from"
ev read run-7 --from=3 --limit=1
jcheck 'revs() == [3]' "read --flag=value"
ev read run-7 --from 10
expect_rc 0 "read past the end"
[ -z "$OUT" ] || fail "read past the end printed: $OUT"
ok
ev read nope-1
expect_rc 1 "read of a missing stream"
expect_err "stream not found: nope-1" "read of a missing stream"
ev read 'bad
name'
expect_rc 1 "read of an invalid stream name"

# ------------------------------------------------------------------ tail
for i in $(seq 0 11); do
    if ((i % 2)); then t=TypeB; else t=TypeA; fi
    ev append "tail-$((i % 3))" "$t" "{\"i\":$i}"
    expect_rc 0 "append tail-$((i % 3))"
done
ev stats --json
HEAD=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["head"])' <<<"$OUT")
[ "$HEAD" -eq 26 ] || fail "head is $HEAD, expected 26"
ok
ev tail
expect_rc 0 "tail"
jcheck "len(L) == 10 and pos() == list(range($HEAD - 9, $HEAD + 1)) and all(cloud(e) for e in L)" "tail: the last 10, oldest first"
ev tail --type TypeB
jcheck "len(L) == 6 and all(e['type'] == 'TypeB' for e in L) and pos() == sorted(pos()) and [e['data']['i'] for e in L] == [1,3,5,7,9,11]" "tail --type"
ev tail --category tail
jcheck "len(L) == 10 and all(e['subject'].startswith('tail-') for e in L) and [e['data']['i'] for e in L] == list(range(2, 12))" "tail --category"
ev tail --category job --type JobQueued
jcheck "len(L) >= 3 and all(e['type'] == 'JobQueued' and e['subject'].startswith('job-') for e in L)" "tail --category --type"
ev tail --from 20
jcheck "pos() == list(range(20, $HEAD + 1))" "tail --from"
ev tail --from 1 --type Progress
jcheck "len(L) == 5 and all(e['subject'] == 'run-7' for e in L)" "tail --from --type"
ev tail --from 999
expect_rc 0 "tail --from beyond the head"
[ -z "$OUT" ] || fail "tail --from beyond the head printed: $OUT"
ok

# ---------------------------------------------------------------- tail -f
: >"$T/follow.out"
"$EVLOG" --data "$D" tail -f --category live >"$T/follow.out" 2>"$T/follow.err" &
FOLLOW=$!
BG_PIDS+=("$FOLLOW")
ev append live-1 Ping '{"n":1}'
expect_rc 0 "append live-1"
ev append other-1 Ping '{"n":0}'
wait_for "tail -f to print the first live event" count_lines "$T/follow.out" 1
for n in 2 3 4; do
    ev append "live-$n" Ping "{\"n\":$n}"
    expect_rc 0 "append live-$n"
done
wait_for "tail -f to print 4 live events" count_lines "$T/follow.out" 4
kill -TERM "$FOLLOW"
set +e
wait "$FOLLOW"
FRC=$?
set -e
[ "$FRC" -eq 0 ] || fail "tail -f exit status $FRC after SIGTERM, expected 0: $(cat "$T/follow.err")"
ok
OUT=$(cat "$T/follow.out")
jcheck "len(L) == 4 and [e['data']['n'] for e in L] == [1,2,3,4] and pos() == sorted(pos()) and all(cloud(e) for e in L)" "tail -f output"

# tail -f resumes from --from, and SIGINT also stops it cleanly
"$EVLOG" --data "$D" tail -f --from "$((HEAD + 5))" --type Ping >"$T/follow2.out" 2>&1 &
FOLLOW=$!
BG_PIDS+=("$FOLLOW")
ev append live-5 Ping '{"n":5}'
wait_for "tail -f --from to print position $((HEAD + 6))" count_lines "$T/follow2.out" 2
kill -INT "$FOLLOW"
set +e
wait "$FOLLOW"
FRC=$?
set -e
[ "$FRC" -eq 0 ] || fail "tail -f exit status $FRC after SIGINT, expected 0"
ok
OUT=$(cat "$T/follow2.out")
jcheck "pos() == [$HEAD + 5, $HEAD + 6] and [e['data']['n'] for e in L] == [4, 5]" "tail -f --from"

# a reader that goes away (EPIPE) ends tail -f with status 0
{
    set +e
    "$EVLOG" --data "$D" tail -f --category live
    echo $? >"$T/pipe.rc"
} | head -n 1 >"$T/pipe.out" &
BG_PIDS+=($!)
wait_for "head to take one line from tail -f" count_lines "$T/pipe.out" 1
ev append live-6 Ping '{"n":6}'
wait_for "tail -f to notice the closed pipe" count_lines "$T/pipe.rc" 1
[ "$(cat "$T/pipe.rc")" -eq 0 ] || fail "tail -f | head: tail exit status $(cat "$T/pipe.rc"), expected 0"
ok

# --------------------------------------------------------- export / import
ev stats --json
HEAD=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["head"])' <<<"$OUT")
ev export
expect_rc 0 "export"
printf '%s\n' "$OUT" >"$T/all.ndjson"
jcheck "pos() == list(range(1, $HEAD + 1)) and all(cloud(e) for e in L)" "export: every event in position order"
ev export --from 3 --until 5
jcheck "pos() == [3, 4, 5]" "export --from --until"
ev export --until 2
jcheck "pos() == [1, 2]" "export --until"

cat >"$T/same.py" <<'EOF'
import json, sys
def load(p):
    with open(p) as f:
        return [json.loads(l) for l in f if l.strip()]
a, b = load(sys.argv[1]), load(sys.argv[2])
# canonical JSON: 1 and 1.0 must not compare equal
key = lambda e: json.dumps([e['id'], e['subject'], e['type'], e['revision'], e['data'],
                            e['meta']], sort_keys=True)
if [key(e) for e in a] != [key(e) for e in b]:
    for x, y in zip(a, b):
        if key(x) != key(y):
            sys.exit("first difference:\n%r\n%r" % (x, y))
    sys.exit("different lengths: %d vs %d" % (len(a), len(b)))
EOF
D2="$T/data2"
run "$EVLOG" --data "$D2" import "$T/all.ndjson"
expect_rc 0 "import"
expect_err "imported $HEAD, already present 0" "import count"
run "$EVLOG" --data "$D2" export
printf '%s\n' "$OUT" >"$T/all2.ndjson"
"$PY" "$T/same.py" "$T/all.ndjson" "$T/all2.ndjson" || fail "export of the import differs from the original"
ok
run "$EVLOG" --data "$D2" import "$T/all.ndjson"
expect_rc 0 "import again"
expect_err "imported 0, already present $HEAD" "second import is idempotent"
run "$EVLOG" --data "$D2" import - <"$T/all.ndjson"
expect_rc 0 "import from stdin"
expect_err "imported 0, already present $HEAD" "import - is idempotent"
run "$EVLOG" --data "$D2" stats --json
jcheck "d['head'] == $HEAD" "count stays after re-imports"

# a cut-short import: the rest arrives later, in the same order
CUT=$("$PY" -c '
import json, sys
for n, l in enumerate(open(sys.argv[1]), 1):
    e = json.loads(l)
    if e["subject"] == "run-7" and e["revision"] == 2:
        print(n - 1)' "$T/all.ndjson")
head -n "$CUT" "$T/all.ndjson" >"$T/part.ndjson"
D3="$T/data3"
run "$EVLOG" --data "$D3" import "$T/part.ndjson"
expect_rc 0 "import of a prefix"
expect_err "imported $CUT, already present 0" "import of a prefix"
run "$EVLOG" --data "$D3" import "$T/all.ndjson"
expect_rc 0 "import over a prefix (mixed batch)"
expect_err "imported $((HEAD - CUT)), already present $CUT" "import over a prefix"
run "$EVLOG" --data "$D3" export
printf '%s\n' "$OUT" >"$T/all3.ndjson"
"$PY" "$T/same.py" "$T/all.ndjson" "$T/all3.ndjson" || fail "import over a prefix reordered events"
ok

# files that repeat events: back to back (one batch lists an id twice) and
# the whole file twice (a batch straddles the seam)
awk '{ print; print }' "$T/all.ndjson" >"$T/doubled.ndjson"
run "$EVLOG" --data "$T/data4" import "$T/doubled.ndjson"
expect_rc 0 "import of a file with adjacent repeats"
expect_err "imported $HEAD, already present $HEAD" "import of a file with adjacent repeats"
cat "$T/all.ndjson" "$T/all.ndjson" >"$T/twice.ndjson"
run "$EVLOG" --data "$T/data4b" import "$T/twice.ndjson"
expect_rc 0 "import of a file that is there twice"
expect_err "imported $HEAD, already present $HEAD" "import of a file that is there twice"
run "$EVLOG" --data "$T/data4b" export
printf '%s\n' "$OUT" >"$T/all4.ndjson"
"$PY" "$T/same.py" "$T/all.ndjson" "$T/all4.ndjson" || fail "import of a file that is there twice"
ok

# bad input names the line
printf '%s\n' '{"subject":"imp-1","type":"A","data":{}}' '{"subject":"imp-1","type":' >"$T/bad.ndjson"
run "$EVLOG" --data "$T/data5" import "$T/bad.ndjson"
expect_rc 1 "import of malformed JSON"
expect_err "bad.ndjson:2: malformed JSON" "import of malformed JSON"
expect_err "imported 1, already present 0" "lines before a bad one are imported"
printf '%s\n' '' '{"type":"A","data":{}}' >"$T/nosubj.ndjson"
run "$EVLOG" --data "$T/data5" import "$T/nosubj.ndjson"
expect_rc 1 "import without subject"
expect_err "nosubj.ndjson:2: the event has no \"subject\"" "import without subject"
printf '%s\n' '{"subject":"imp-2","type":"A","data":[1]}' >"$T/baddata.ndjson"
run "$EVLOG" --data "$T/data5" import "$T/baddata.ndjson"
expect_rc 1 "import of data that is not an object"
expect_err "baddata.ndjson:1:" "import of data that is not an object"
run "$EVLOG" --data "$T/data5" import "$T/missing.ndjson"
expect_rc 1 "import of a missing file"
ev import
expect_rc 2 "import without FILE"

# --------------------------------------------------------- verify and stats
ev verify
expect_rc 0 "verify"
[ "$OUT" = "ok: $HEAD events verified" ] || fail "verify printed: $OUT"
ok
[ -z "$ERR" ] || fail "verify wrote progress to a non-terminal stderr: $ERR"
ok
run "$EVLOG" --data "$D2" verify
expect_rc 0 "verify of the imported log"
expect_out "ok: $HEAD events verified" "verify of the imported log"
ev stats --json
expect_rc 0 "stats --json"
jcheck "d['head'] == $HEAD and d['streams'] == 16 and d['types'] == 8 and d['categories'] == 5 and d['used_bytes'] > 0 and d['file_bytes'] > 0 and d['map_size'] >= d['used_bytes'] and TIME.match(d['first_time']) and TIME.match(d['last_time']) and d['first_time'] <= d['last_time']" "stats --json"
ev stats
expect_rc 0 "stats"
for w in head streams types categories "used bytes" "file bytes" "map size" "first event" "last event"; do
    expect_out "$w" "stats table"
done
grep -qE "^head +$HEAD\$" <<<"$OUT" || fail "stats table head: $OUT"
ok

# ------------------------------------------------- one writer per data dir
# A long-running `import -` fed by a fifo holds the data dir for writing.
DH="$T/held"
mkfifo "$T/fifo"
"$EVLOG" --data "$DH" import - <"$T/fifo" >"$T/hold.out" 2>"$T/hold.err" &
HOLDER=$!
BG_PIDS+=("$HOLDER")
exec 3>"$T/fifo"
echo '{"subject":"hold-1","type":"Held","data":{"n":1}}' >&3
# import commits what it has when its input goes quiet: once the event is
# readable, the importer certainly owns the data dir.
held_event_visible() { "$EVLOG" --data "$DH" read hold-1 >/dev/null 2>&1; }
wait_for "the holder's first event" held_event_visible
run "$EVLOG" --data "$DH" append hold-2 Held
expect_rc 1 "append while another process writes"
expect_err "data directory in use" "append while another process writes"
run "$EVLOG" --data "$DH" import "$T/all.ndjson"
expect_rc 1 "import while another process writes"
expect_err "data directory in use" "import while another process writes"
run "$EVLOG" --data "$DH" read hold-1
expect_rc 0 "read-only commands work alongside the writer"
jcheck "len(L) == 1 and d['data'] == {'n': 1}" "read alongside the writer"
run "$EVLOG" --data "$DH" verify
expect_rc 0 "verify alongside the writer"
echo '{"subject":"hold-1","type":"Held","data":{"n":2}}' >&3
exec 3>&-
set +e
wait "$HOLDER"
HRC=$?
set -e
[ "$HRC" -eq 0 ] || fail "holder import exit status $HRC: $(cat "$T/hold.err")"
grep -qF "imported 2, already present 0" "$T/hold.err" || fail "holder: $(cat "$T/hold.err")"
ok
run "$EVLOG" --data "$DH" append hold-2 Held
expect_rc 0 "append once the writer is gone"

echo "cli_test: all $CHECKS checks passed"
