#!/bin/sh
# Install dependencies, build, and run every test: once in a normal build,
# once under AddressSanitizer + UndefinedBehaviorSanitizer; then fuzz.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh --browser   # Chromium for the console test (tests/console, which runs npm ci)
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null  # the configuration run.sh builds
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")
# the sanitizer build is the test build: the allocation-failure hook is compiled in
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEVL_SANITIZE=ON -DEVL_ALLOC_FAULTS=ON \
  -DEVL_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")
# libFuzzer over the parsers under ASan+UBSan, 60 s per target, one target
# per core; a longer local run: scripts/fuzz.sh --seconds 600
sh scripts/fuzz.sh --seconds 60
echo "evlog: all tests passed (normal and ASan+UBSan builds, 60 s of fuzzing per target)"
