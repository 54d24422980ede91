#!/bin/sh
# HTTP benchmark: appends with wrk (single events and 100-event batches, 64
# keep-alive connections, --sync full) and SSE commit-to-delivery latency for
# 1, 100 and 1000 subscribers.  See README.md.
#   bench/http/run.sh [BUILD_DIR] [SECONDS]
# Needs wrk (Debian package wrk).  The data directory goes under $BENCH_DIR
# (default /var/tmp): put it on the disk you want to measure.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
B=$(cd "${1:-build}" && pwd)
SECS=${2:-10}
SYNC=${SYNC:-full}
command -v wrk >/dev/null || { echo "bench/http: needs wrk (apt-get install wrk)" >&2; exit 1; }
D=$(mktemp -d "${BENCH_DIR:-/var/tmp}/evlog-http.XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT INT TERM

start() {
    "$B/evlogd" --data "$D/data-$1" --listen 127.0.0.1:0 --no-builtin --sync "$SYNC" 2>"$D/err-$1" &
    PID=$!
    for _ in $(seq 200); do
        PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$D/err-$1")
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    echo "evlogd did not start: $(cat "$D/err-$1")" >&2
    exit 1
}
stop() {
    kill "$PID"
    for _ in $(seq 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$PID" 2>/dev/null; then
        echo "evlogd did not stop within 10 s of SIGTERM: $(cat "$D"/err-*)" >&2
        kill -9 "$PID"
    fi
    wait "$PID" || true
    PID=""
}

echo "== appends, 64 connections, sync $SYNC, ${SECS}s each ($(nproc) CPUs)"
start single
wrk -t2 -c64 -d"${SECS}s" --latency -s "$HERE/append1.lua" "http://127.0.0.1:$PORT" | sed 's/^/  /'
stop
start batch
wrk -t2 -c64 -d"${SECS}s" --latency -s "$HERE/append100.lua" "http://127.0.0.1:$PORT" | sed 's/^/  /'
echo "  (events/s = Requests/sec x 100)"
stop

echo "== feed latency: commit time to delivery, 300 events at 100/s, sync $SYNC"
start feed
for n in 1 100 1000; do
    "$B/evlog-sse-latency" "127.0.0.1:$PORT" "$n" 300 100 | sed 's/^/  /'
done
stop
