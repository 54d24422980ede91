#!/usr/bin/env bash
# The log is readable without evlog: events appended with the CLI are seen by
# the stock LMDB tools (mdb_stat, mdb_dump) and decoded by a stock msgpack
# decoder (Debian's python3-msgpack), as DESIGN.md promises.
set -euo pipefail

BIN_DIR=${EVL_BIN_DIR:-$PWD}
EVLOG="$BIN_DIR/evlog"
PY=/usr/bin/python3
for tool in "$EVLOG" mdb_stat mdb_dump "$PY"; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool not found" >&2; exit 1; }
done
"$PY" -c 'import msgpack' || { echo "FAIL: python3-msgpack is not installed" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/evlog-interop-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
D="$T/data"
fail() { echo "FAIL: $*" >&2; exit 1; }

DATA1='{"model":"llama-3-8b","n":42,"neg":-5,"f":0.5,"ok":true,"nil":null,"tags":["a","b"],"nested":{"k":{"deep":[1,{"x":"y"}]}},"uni":"\u00e9\u2713"}'
META1='{"actor":"alice","correlation_id":"c-9"}'
"$EVLOG" --data "$D" append job-1 JobQueued "$DATA1" --meta "$META1" >"$T/ack1.json"
"$EVLOG" --data "$D" append job-1 JobStarted '{"node":"n1"}' >"$T/ack2.json"
"$EVLOG" --data "$D" append node-1 NodeUp '{"cpu":8}' >"$T/ack3.json"
"$EVLOG" --data "$D" export >"$T/export.ndjson"

# -- mdb_stat: the named databases of the environment
mdb_stat -a "$D/log" >"$T/stat.txt" || fail "mdb_stat -a failed"
grep -q '^Status of events$' "$T/stat.txt" || fail "mdb_stat -a lists no 'events' database:
$(cat "$T/stat.txt")"
NAMED=$(grep -c '^Status of ' "$T/stat.txt")
# Main DB + events + the stream, head, id, type and time indexes at least
[ "$NAMED" -ge 6 ] || fail "mdb_stat -a lists only $NAMED databases"
mdb_stat -s events "$D/log" | grep -q 'Entries: 3$' || fail "events database does not hold 3 entries"

# -- mdb_dump: the records, in both output formats
mdb_dump -s events "$D/log" >"$T/events.dump" || fail "mdb_dump -s events failed"
mdb_dump -p -s events "$D/log" >"$T/events.pdump" || fail "mdb_dump -p -s events failed"
grep -q '^format=bytevalue$' "$T/events.dump" || fail "unexpected mdb_dump header"

# -- python3-msgpack decodes every record
"$PY" - "$T" "$DATA1" "$META1" <<'EOF'
import json, msgpack, sys, time, uuid

tdir, data1, meta1 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

def fail(msg):
    sys.exit("FAIL: " + msg)

def parse_dump(path):
    """mdb_dump's default (hex) format: a header, then key/value line pairs
    that start with a space, then DATA=END."""
    pairs, lines, body = [], open(path).read().splitlines(), False
    for line in lines:
        if line == 'HEADER=END':
            body = True
        elif line == 'DATA=END':
            break
        elif body:
            if not line.startswith(' '):
                fail("unexpected dump line %r" % line)
            pairs.append(bytes.fromhex(line[1:]))
    if len(pairs) % 2:
        fail("odd number of dump lines")
    return list(zip(pairs[0::2], pairs[1::2]))

# CRC-32C (Castagnoli), the checksum the records carry.
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    TABLE.append(c)
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
assert crc32c(b"123456789") == 0xE3069283

records = parse_dump(tdir + '/events.dump')
if len(records) != 3:
    fail("expected 3 records, got %d" % len(records))
acks = [json.load(open('%s/ack%d.json' % (tdir, i))) for i in (1, 2, 3)]
exported = [json.loads(l) for l in open(tdir + '/export.ndjson')]
want = [('job-1', 0, 'JobQueued', data1, meta1), ('job-1', 1, 'JobStarted', {'node': 'n1'}, {}),
        ('node-1', 0, 'NodeUp', {'cpu': 8}, {})]
now_ns, prev_time = time.time_ns(), 0
for (key, raw), ack, exp, (stream, rev, typ, data, meta) in zip(records, acks, exported, want):
    rec = msgpack.unpackb(raw, raw=False)
    if not isinstance(rec, dict):
        fail("record is not a map: %r" % rec)
    keys = ['chain', 'position', 'stream', 'revision', 'id', 'type', 'time', 'data', 'meta', 'crc']
    if sorted(rec) != sorted(keys):
        fail("record keys %r" % sorted(rec))
    pos = int.from_bytes(key, 'big')
    if len(key) != 8 or rec['position'] != pos or pos != ack['position']:
        fail("key %s does not match position %r (ack %r)" % (key.hex(), rec['position'], ack))
    if (rec['stream'], rec['revision'], rec['type']) != (stream, rev, typ):
        fail("record %r is not (%s, %d, %s)" % (rec, stream, rev, typ))
    if rec['revision'] != ack['revision'] or rec['stream'] != ack['stream']:
        fail("record %r does not match ack %r" % (rec, ack))
    if not isinstance(rec['id'], bytes) or len(rec['id']) != 16:
        fail("id is not 16 bytes: %r" % rec['id'])
    if str(uuid.UUID(bytes=rec['id'])) != ack['id']:
        fail("id %s is not the acknowledged %s" % (rec['id'].hex(), ack['id']))
    # compared as canonical JSON, so that 42 and 42.0 count as different
    canon = lambda v: json.dumps(v, sort_keys=True)
    if canon(rec['data']) != canon(data):
        fail("data %r != appended %r" % (rec['data'], data))
    if canon(rec['meta']) != canon(meta):
        fail("meta %r != appended %r" % (rec['meta'], meta))
    if not (isinstance(rec['time'], int) and prev_time <= rec['time'] <= now_ns
            and now_ns - rec['time'] < 600 * 10**9):
        fail("implausible time %r" % rec['time'])
    prev_time = rec['time']
    # "crc" is the last key: a3 'crc' ce xx xx xx xx, over all bytes before it
    if raw[-9:-4] != b'\xa3crc\xce' or rec['crc'] != crc32c(raw[:-9]):
        fail("crc %r does not check (computed %r)" % (rec['crc'], crc32c(raw[:-9])))
    # the JSON view of the CLI says the same as the raw record
    if (exp['id'], exp['subject'], exp['revision'], exp['data'], exp['meta']) != \
       (ack['id'], stream, rev, data, meta):
        fail("export %r disagrees with the record" % exp)
    if exp['time'][:19] != time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(rec['time'] // 10**9)):
        fail("export time %s is not record time %d" % (exp['time'], rec['time']))

# printable dump has the same number of records
pd = open(tdir + '/events.pdump').read()
if pd.count('\n ') != 6:
    fail("mdb_dump -p: expected 6 data lines")
print("interop_test: 3 records decoded and checked")
EOF
