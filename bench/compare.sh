#!/bin/sh
# evlog side by side with SQLite, PostgreSQL 15 and NATS JetStream, in one run.
#   bench/compare.sh [--quick] [more evlog-compare options, e.g. --rounds 5]
# Installs what is missing from Debian, builds Release in build-bench/,
# starts PostgreSQL and nats-server on loopback in a temporary directory on
# free ports, runs bench/compare (evlog-compare), stops every server it
# started, and writes bench/results/compare-{quick,full}.json and .png.
# The temporary directory is under $BENCH_DIR (default /var/tmp): put it on
# the disk you want to measure (fsync on tmpfs is free).  See bench/README.md.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=full
for a in "$@"; do [ "$a" = "--quick" ] && MODE=quick; done
OUT="$ROOT/bench/results"
say() { echo "compare: $*" >&2; }

# -- packages (Debian bookworm names) -------------------------------------
PKGS="build-essential cmake pkg-config liblmdb-dev libsqlite3-dev libmsgpack-dev libevent-dev
libjansson-dev python3 postgresql libpq-dev nats-server libnats-dev gnuplot-nox e2fsprogs"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing Debian packages:$missing"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# -- build ------------------------------------------------------------------
B="$ROOT/build-bench"
cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Release -DEVL_BUILD_BENCH=ON -DEVL_SANITIZE=OFF >/dev/null
cmake --build "$B" -j"$(nproc)" --target evlog-compare evlogd >/dev/null

# -- servers ----------------------------------------------------------------
T=$(mktemp -d "${BENCH_DIR:-/var/tmp}/evlog-compare.XXXXXX")
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PGDATA="$T/pg"
PG_UP=""
AS=""  # PostgreSQL refuses to run as root
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    AS="runuser -u postgres --"
fi
cleanup() {
    [ -n "$PG_UP" ] && $AS "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    for p in $NATS_PIDS; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PGPORT=$(free_port)
mkdir -p "$PGDATA"
[ -n "$AS" ] && chown postgres "$T" "$PGDATA"
$AS "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >"$T/initdb.log" 2>&1 ||
    { cat "$T/initdb.log" >&2; exit 1; }
# Durability as shipped (fsync, synchronous_commit, full_page_writes on);
# room for the connections, the load and a checkpoint-free run.
cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDATA'
max_connections = 300
shared_buffers = 512MB
max_wal_size = 8GB
fsync = on
synchronous_commit = on
EOF
$AS "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w start >/dev/null
PG_UP=1
PG="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres options='-c client_min_messages=warning'"

# Two JetStream servers: one as shipped (acks before any fsync: the peer of
# evlogd --sync none) and one that puts every message on disk before its
# ack (the peer of --sync full).  nats-server 2.10+ does that with
# sync_interval: always; 2.9 refuses the key, and there its store directory
# gets ext4's synchronous-updates attribute instead (chattr +S, inherited by
# the block files JetStream makes in it): each message's write, which 2.9
# issues before the ack, then returns only once it is on disk.
NATS_PIDS=""
start_nats() { # name extra-config; sets NATS_URL (not in $(...): the pid must stay ours)
    port=$(free_port)
    printf 'listen: 127.0.0.1:%s\njetstream {\n  store_dir: "%s"\n  %s\n}\n' \
        "$port" "$T/$1" "$2" >"$T/$1.conf"
    nats-server -c "$T/$1.conf" -js >"$T/$1.log" 2>&1 &
    NATS_PIDS="$NATS_PIDS $!"
    for _ in $(seq 100); do
        grep -q "Server is ready" "$T/$1.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q "Server is ready" "$T/$1.log" || { cat "$T/$1.log" >&2; exit 1; }
    NATS_URL="nats://127.0.0.1:$port"
}
mkdir -p "$T/nats" "$T/nats-durable"
start_nats nats ""
NATS=$NATS_URL
printf 'listen: 127.0.0.1:1\njetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' \
    "$T/nats-durable" >"$T/probe.conf"
NATS_DURABLE=""
if nats-server -c "$T/probe.conf" -t >/dev/null 2>&1; then
    start_nats nats-durable "sync_interval: always"
    NATS_DURABLE="--nats-durable $NATS_URL --nats-durable-how always"
elif chattr +S "$T/nats-durable" 2>/dev/null && lsattr -d "$T/nats-durable" | cut -d' ' -f1 | grep -q S; then
    say "nats-server $(nats-server --version | sed 's/.* v//') has no sync_interval: its durable store directory gets chattr +S"
    start_nats nats-durable ""
    # the directory JetStream made at start must have inherited it
    lsattr -d "$T/nats-durable/jetstream" | cut -d' ' -f1 | grep -q S ||
        { say "JetStream's store did not inherit chattr +S"; exit 1; }
    NATS_DURABLE="--nats-durable $NATS_URL --nats-durable-how sync-attr"
else
    say "nats-server has no sync_interval and $T takes no chattr +S: no durable JetStream in this run"
fi

# -- run --------------------------------------------------------------------
mkdir -p "$OUT"
say "PostgreSQL $($PGBIN/postgres --version | sed 's/.*) //') on :$PGPORT, nats-server at $NATS${NATS_DURABLE:+ and a durable one}, data under $T"
st=0
TMPDIR="$T" "$B/evlog-compare" --evlogd "$B/evlogd" --pg "$PG" --nats "$NATS" \
    $NATS_DURABLE --json "$OUT/compare-$MODE.json" --chart "$T/chart.dat" "$@" \
    >"$OUT/compare-$MODE.txt" || st=$?
cat "$OUT/compare-$MODE.txt"
gnuplot -e "data='$T/chart.dat'; out='$OUT/compare-$MODE.png'" "$ROOT/bench/compare/chart.gp" ||
    say "gnuplot failed: no chart"
say "wrote $OUT/compare-$MODE.json, .txt and .png"
exit $st
