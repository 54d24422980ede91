#!/usr/bin/python3
"""Write the seed corpus of the fuzz targets into fuzz/corpus/<target>/.

Seeds are small valid inputs (and a few near-misses) for each parser, so the
fuzzer starts from the shapes evlog really sees.  Records come from a real
log written by the evlog CLI (read back with mdb_dump), so they carry the
exact stored format with its CRC.  Run from the repository root:
    fuzz/make_corpus.py BUILD_DIR
(BUILD_DIR holds an `evlog` binary; any build will do).  Idempotent; the
files are committed, so this is needed only when the formats change."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import msgpack

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def records(build):
    tmp = tempfile.mkdtemp()
    try:
        ev = os.path.join(build, "evlog")
        data = os.path.join(tmp, "d")
        for args in [["job-1", "JobQueued", '{"id":"j1","model":"m","n":3,"f":1.5,"ok":true,"tags":["a","b"],'
                      '"o":{"x":null}}', "--meta", '{"actor":"alice","correlation_id":"c-1"}'],
                     ["job-1", "JobStarted", "{}"],
                     ["node-\u00e9", "NodeUp", '{"s":"\u00fcn\u00ef","big":9223372036854775807,'
                      '"neg":-9223372036854775808,"e":1e300,"deep":{"a":{"b":{"c":[1,[2,[3]]]}}}}']]:
            subprocess.run([ev, "--data", data, "append"] + args, check=True, stdout=subprocess.DEVNULL)
        out = subprocess.run(["mdb_dump", "-s", "events", os.path.join(data, "log")], check=True,
                             capture_output=True, text=True).stdout
        lines = out.split("HEADER=END\n", 1)[1].splitlines()
        for key, val in zip(lines[0::2], lines[1::2]):
            if key.strip() == "DATA=END":
                break
            put("record", bytes.fromhex(val.strip()))
    finally:
        shutil.rmtree(tmp)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    records(build)
    ev = {"type": "JobQueued", "data": {"id": "j1", "n": 1, "f": 2.5, "a": [1, "x", None, True]},
          "meta": {"actor": "bob", "correlation_id": "c-9"}}
    ce = {"specversion": "1.0", "id": "0190c2d4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "source": "x", "type": "T",
          "subject": "s-1", "time": "2026-11-23T10:30:00Z", "data": {"k": "v"}}
    multi = {"streams": [{"stream": "a-1", "expected_revision": "no_stream", "events": [ev]},
                         {"stream": "b-2", "expected_revision": 3, "events": [{"type": "X"}, ce]}]}
    for j in [ev, [ev, {"type": "B", "data": {}}], ce, multi, {"type": "A", "data": {"s": "\u00e9\u4e2d\U0001f600"}},
              {"type": "A", "id": "not-a-uuid"}, {"type": 5}, [], {}]:
        put("json", json.dumps(j))
    put("json", '{"type":"A","data":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":{"p":1}}}}}}}}}}}}}}}}}')
    put("json", '{"type":"A","type":"B"}')
    put("json", '[{"type":"A","data":{"s":"a\\u0000b"}}]')
    for m in [ev, [ev, ev], multi, {"type": "Blob", "id": b"\x01" * 16, "data": {"b": b"\x00\xff", "x": 1.5}}]:
        put("msgpack", msgpack.packb(m))
    for raw in [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\x91" * 40 + b"\xc0", b"\xdb\xff\xff\xff\xffabc",
                b"\xc1", b"\x82\xa1a\x01\xa1a\x02", b"\xdc\x00\x10" * 20, b"\xd9\x03ab"]:
        put("msgpack", raw)
    specs = os.path.join(os.path.dirname(ROOT), "..", "projections", "specs")
    for f in sorted(os.listdir(specs)):
        if f.endswith(".sql"):
            with open(os.path.join(specs, f), "rb") as fh:
                put("spec", fh.read())
    put("spec", "-- @projection t\nCREATE TABLE t (a, b);\n-- @on A\n-- @on B\nINSERT INTO t VALUES (:a, $b);\n"
                "-- @on *\nUPDATE t SET b = @position WHERE a = json_extract(@data, '$.x');\n")
    for h in ["/streams/job-1?from=3&limit=10&backward\n\nno_stream\nreader-secret\n",
              "/events?from=1&limit=100&type=JobQueued&category=job&since=2026-11-23T10:30:00Z&until=5\n7\n12\n"
              "writer-secret\n0190c2d4-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
              "/subscribe?from=now&stream=a%2Fb&p.x=%E2%82%AC\n18446744073709551615\nany\n\n2026-11-23T10:30:00.123456789+01:00",
              "/projections/jobs/query?sql=SELECT%20*%20FROM%20jobs&min_position=5&p.id=j1\n\nexists\n",
              "/streams/bad%00name\n-1\n-3\n", "http://h:1/a/b/c/d/e?x=%zz&&=&a\n99999999999999999999\n1e3\n"]:
        put("http", h)


if __name__ == "__main__":
    main()
