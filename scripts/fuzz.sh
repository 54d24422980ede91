#!/bin/sh
# Fuzz evlog's parsers with libFuzzer under ASan + UBSan (issue 7).
#   scripts/fuzz.sh [--seconds N | --total N] [TARGET...]
# --seconds N: each target runs N seconds (default 60: the local run).
# --total N:   N seconds split evenly across the targets.
# Targets run side by side, one per core (scripts/test.sh, i.e. CI, runs
# each for 60 s: three minutes on two cores).
# Targets: record json msgpack spec http http1 (default: all).  The build is
# build-fuzz/ (clang, -DEVL_FUZZ=ON).  Each target starts from the seeds in
# fuzz/corpus/<t>/ and keeps what it finds in build-fuzz/corpus/<t>/ (not in
# the repository: copy an input worth keeping into fuzz/corpus by hand).
# A crash leaves its input in build-fuzz/crashes/ and fails the script: add
# that input to fuzz/regressions/<t>/ with the fix, and ctest replays it
# (fuzz_replay_<t>) in every build from then on.
set -eu
cd "$(dirname "$0")/.."
per=60
total=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) per="$2"; shift 2 ;;
    --total) total="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
targets="${*:-record json msgpack spec http http1}"
n=$(echo $targets | wc -w)
[ -n "$total" ] && per=$(( total / n > 0 ? total / n : 1 ))
sh scripts/deps.sh --fuzz
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DEVL_FUZZ=ON -DEVL_WERROR=OFF \
  -DEVL_BUILD_TESTS=OFF -DEVL_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
mkdir -p build-fuzz/crashes
# One target per core at a time: each libFuzzer run is single-threaded.
run_one() {
  t="$1"
  work="build-fuzz/corpus/$t"
  mkdir -p "$work"
  log="build-fuzz/fuzz_$t.log"
  echo "fuzz: $t for ${per}s" >&2
  # -timeout: an input that takes 10 s is a hang worth a report;
  # -rss_limit_mb: a parser that allocates by the input's word fails here.
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "build-fuzz/fuzz/fuzz_$t" "$work" "fuzz/corpus/$t" -max_total_time="$per" -timeout=10 \
       -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="build-fuzz/crashes/$t-" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $t ok: $execs executions, corpus $(ls "$work" | wc -l) inputs" >&2
  else
    echo "fuzz: $t FAILED (log: $log; input in build-fuzz/crashes/):" >&2
    grep -E "ERROR|SUMMARY|runtime error" "$log" | head -5 >&2
    return 1
  fi
}
jobs=$(nproc)
status=0
pids=""
for t in $targets; do
  run_one "$t" &
  pids="$pids $!"
  if [ "$(echo $pids | wc -w)" -ge "$jobs" ]; then
    for p in $pids; do wait "$p" || status=1; done
    pids=""
  fi
done
for p in $pids; do wait "$p" || status=1; done
exit $status
