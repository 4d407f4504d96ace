#!/usr/bin/env bash
# Runs the whole suite against a real Docker engine and ends with "N passed, N failed".
# Finds or starts an engine (test/engine/ensure-engine.sh), builds the offline test images,
# runs `bun test`, and stops a private engine it started.
set -uo pipefail
cd "$(dirname "$0")/.."
started_engine=0
if ! { [ -n "${DOCKER_HOST:-}" ] && timeout 10 docker info >/dev/null 2>&1; }; then
  before=$(cat "${P2PRC_TEST_ENGINE_DIR:-/tmp/p2prc-engine}/pid" 2>/dev/null || true)
  if ! env_lines=$(test/engine/ensure-engine.sh); then
    echo "test: no Docker engine could be found or started; the suite needs one" >&2
    echo "0 passed, 1 failed"; exit 1
  fi
  eval "$env_lines"
  after=$(cat "${P2PRC_TEST_ENGINE_DIR:-/tmp/p2prc-engine}/pid" 2>/dev/null || true)
  [ "$before" != "$after" ] && started_engine=1
fi
export DOCKER_HOST
if ! test/engine/build-images.sh busybox sshd; then
  echo "test: could not build the offline test images" >&2
  echo "0 passed, 1 failed"; exit 1
fi

# The dashboard's browser test drives Debian's chromium (test/dashboard.test.ts); installed like the engine.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test: installing chromium for the dashboard's browser test ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 \
    || echo "test: could not install chromium; test/dashboard.test.ts will fail" >&2
fi

log=$(mktemp)
node_modules/.bin/bun test --timeout 60000 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
failed=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
rm -f "$log"
[ "$started_engine" = 1 ] && [ -z "${P2PRC_KEEP_ENGINE:-}" ] && test/engine/stop-engine.sh
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi   # a crash or load error counts as a failure
echo "$passed passed, $failed failed"
[ "$status" = 0 ] && [ "$failed" = 0 ]
