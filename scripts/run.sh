#!/bin/sh
# Install dependencies, build (Release) and start evlogd on ./evlog-data.
# Extra arguments go to evlogd (e.g. --sync none, --data DIR).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEVL_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" --target evlogd evlog_cli evlog-gen >/dev/null
exec ./build-release/evlogd "$@"
