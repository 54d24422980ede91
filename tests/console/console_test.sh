#!/bin/sh
# ctest console_test: the web console end to end in headless Chromium.
# Installs playwright-core from package-lock.json (npm ci) when node_modules
# is missing or was installed from another lock, then runs console_test.mjs.
# Without /usr/bin/chromium (Debian package chromium, from scripts/deps.sh --browser)
# or node/npm, it is skipped loudly (exit 77: ctest reports it "Skipped");
# under CI (CI set) it fails instead, since CI installs them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

missing() {
  if [ -n "${CI:-}" ]; then
    echo "console_test: FAILED: $1; CI must run this test (scripts/test.sh installs it: scripts/deps.sh --browser)" >&2
    exit 1
  fi
  echo "console_test: SKIPPED: $1; run sh scripts/deps.sh --browser to run the console test" >&2
  exit 77
}
[ -x /usr/bin/chromium ] || missing "no /usr/bin/chromium (Debian package chromium)"
command -v node >/dev/null 2>&1 || missing "no node"
command -v npm >/dev/null 2>&1 || missing "no npm"

stamp="$here/node_modules/.evlog-package-lock.json"
if ! cmp -s "$here/package-lock.json" "$stamp"; then
  echo "console_test: npm ci (playwright-core, pinned in tests/console/package-lock.json)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
  cp "$here/package-lock.json" "$stamp"
fi
exec node "$here/console_test.mjs"
