#!/bin/sh
# Install evlog's build and test dependencies from Debian packages (only what is missing).
#   scripts/deps.sh [--bench] [--browser] [--fuzz]
set -eu
PKGS="build-essential cmake pkg-config liblmdb-dev libsqlite3-dev libmsgpack-dev libevent-dev
libjansson-dev libssl-dev lmdb-utils sqlite3 curl python3 python3-msgpack"
for opt in "$@"; do
  case "$opt" in
    # what the benchmarks drive the server with (not needed to build or test)
    --bench) PKGS="$PKGS wrk" ;;
    # the web console's browser test (tests/console): headless Chromium, its
    # driver, and a font for legible screenshots; scripts/test.sh asks for it
    --browser) PKGS="$PKGS chromium chromium-driver fonts-dejavu-core" ;;
    # libFuzzer and its sanitizer runtimes, for scripts/fuzz.sh only
    --fuzz) PKGS="$PKGS clang libclang-rt-14-dev" ;;
    *) echo "usage: scripts/deps.sh [--bench] [--browser] [--fuzz]" >&2; exit 2 ;;
  esac
done
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "evlog: installing Debian packages:$missing" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
