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
libjansson-dev python3 postgresql libpq-dev nats-server libnats-dev gnuplot-nox"
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
NATS_PID=""
AS=""  # PostgreSQL refuses to run as root
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    AS="runuser -u postgres --"
fi
cleanup() {
    [ -n "$PG_UP" ] && $AS "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    if [ -n "$NATS_PID" ]; then
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
    fi
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

NATSPORT=$(free_port)
mkdir -p "$T/nats"
NATS_FSYNC=""
write_nats_conf() {
    cat >"$T/nats.conf" <<EOF
listen: 127.0.0.1:$NATSPORT
jetstream {
  store_dir: "$T/nats"
  $1
}
EOF
}
# sync_interval: always makes JetStream fsync every message (nats-server
# 2.10 and later); older servers refuse the key, so fall back and say so.
write_nats_conf "sync_interval: always"
if nats-server -c "$T/nats.conf" -t >/dev/null 2>&1; then
    NATS_FSYNC="--nats-fsync"
else
    say "nats-server $(nats-server --version | sed 's/.* v//') has no sync_interval: JetStream will not fsync per message"
    write_nats_conf ""
fi
nats-server -c "$T/nats.conf" -js >"$T/nats.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 100); do
    grep -q "Server is ready" "$T/nats.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "Server is ready" "$T/nats.log" || { cat "$T/nats.log" >&2; exit 1; }

# -- run --------------------------------------------------------------------
mkdir -p "$OUT"
say "PostgreSQL $($PGBIN/postgres --version | sed 's/.*) //') on :$PGPORT, nats-server on :$NATSPORT, data under $T"
st=0
TMPDIR="$T" "$B/evlog-compare" --evlogd "$B/evlogd" --pg "$PG" --nats "nats://127.0.0.1:$NATSPORT" \
    $NATS_FSYNC --json "$OUT/compare-$MODE.json" --chart "$T/chart.dat" "$@" \
    >"$OUT/compare-$MODE.txt" || st=$?
cat "$OUT/compare-$MODE.txt"
gnuplot -e "data='$T/chart.dat'; out='$OUT/compare-$MODE.png'" "$ROOT/bench/compare/chart.gp" ||
    say "gnuplot failed: no chart"
say "wrote $OUT/compare-$MODE.json, .txt and .png"
exit $st
