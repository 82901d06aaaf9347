#!/usr/bin/env bash
# Browser tests of the dashboard against the real pipeline (headless Chromium through npm playwright-core).
#
# Installs what it needs, idempotently: Chromium (apt-get), node + npm (apt-get), the npm packages (npm ci).
# Builds the dashboard (dashboard/build.sh) and the services (cargo build, debug), both honouring
# CARGO_TARGET_DIR, then runs the tests; each test run makes its own database, key prefix and ports.
#
# Environment: TEST_DATABASE_URL (admin connection used to create/drop the database, default
# postgres://postgres@127.0.0.1:5432/postgres), TEST_REDIS_URL, CHROMIUM (default /usr/bin/chromium),
# E2E_SKIP_BUILD=1 to use what is already built, UPDATE_SCREENSHOT=1 to replace the README's screenshot.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Redis and PostgreSQL: reuse, or start local ones, exactly as the project's scripts do.
if [[ -f $ROOT/scripts/lib.sh ]]; then
  # shellcheck source=../../scripts/lib.sh
  source "$ROOT/scripts/lib.sh"
  ensure_redis
  ensure_postgres
fi
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export TEST_REDIS_URL=${TEST_REDIS_URL:-${REDIS_URL:-redis://127.0.0.1:6379}}

apt_install() { # packages...
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null ||
    die "please install: $* (Debian/Ubuntu: sudo apt-get install $*)"
  say "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "$@" >/dev/null; }
}

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[[ -x $CHROMIUM ]] || apt_install chromium
[[ -x $CHROMIUM ]] || die "no Chromium at $CHROMIUM"
export CHROMIUM
command -v psql >/dev/null || apt_install postgresql-client
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm

cd "$HERE"
# npm ci only when the installed playwright-core is not the one of the lock file.
installed_matches_lock() {
  node -e '
    const fs = require("fs");
    const want = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages["node_modules/playwright-core"].version;
    const have = JSON.parse(fs.readFileSync("node_modules/playwright-core/package.json", "utf8")).version;
    process.exit(want === have ? 0 : 1);
  ' 2>/dev/null
}
if ! installed_matches_lock; then
  say "installing the test's npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi

cd "$ROOT"
if [[ ${E2E_SKIP_BUILD:-0} != 1 ]]; then
  "$ROOT/dashboard/build.sh"
  say "building the services"
  cargo build --quiet -p ingestor -p batcher -p notifier
fi

cd "$HERE"
say "running the browser tests"
# Tests share one page and one pipeline, in order.
exec node --test --test-concurrency=1 --test-timeout=300000 tests/
