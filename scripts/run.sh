#!/bin/sh
# Install dependencies, build (Release) and start evlogd on ./evlog-data.
# Extra arguments go to evlogd (e.g. --demo, --sync none, --data DIR): with
# --demo it appends generated events of the seed services at 20 per second
# (--demo-rate N) and prints the console URL, http://127.0.0.1:7070/.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEVL_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" --target evlogd evlog_cli evlog-gen >/dev/null
exec ./build-release/evlogd "$@"
