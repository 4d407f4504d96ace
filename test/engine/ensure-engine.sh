#!/usr/bin/env bash
# Finds a Docker engine for the tests, or starts a private one.
# Prints `export DOCKER_HOST=...` lines for the caller to eval; logs go to stderr.
# A private engine (data root and socket under $P2PRC_TEST_ENGINE_DIR, default /tmp/p2prc-engine)
# is left running so repeated `make test` runs reuse it; `test/engine/stop-engine.sh` stops it.
set -euo pipefail
log() { echo "engine: $*" >&2; }

engine_ok() { DOCKER_HOST="$1" timeout 10 docker info >/dev/null 2>&1; }

dir="${P2PRC_TEST_ENGINE_DIR:-/tmp/p2prc-engine}"
candidates=()
[ -n "${DOCKER_HOST:-}" ] && candidates+=("$DOCKER_HOST")
candidates+=("unix://$dir/docker.sock" "unix:///var/run/docker.sock")

if command -v docker >/dev/null 2>&1; then
  for host in "${candidates[@]}"; do
    if engine_ok "$host"; then log "using running engine at $host"; echo "export DOCKER_HOST=$host"; exit 0; fi
  done
fi

# No engine: install and start a private dockerd (needs root on Debian).
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "no Docker engine reachable and cannot install one (needs root on Debian); set DOCKER_HOST"; exit 1
  fi
  log "installing docker.io ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq docker.io >&2
fi

mkdir -p "$dir"
if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
  log "private engine process exists but does not answer; restarting it"
  kill "$(cat "$dir/pid")" 2>/dev/null || true; sleep 2
fi
log "starting private dockerd in $dir ..."
setsid dockerd --data-root "$dir/data" --exec-root "$dir/exec" -H "unix://$dir/docker.sock" \
  --pidfile "$dir/pid" >"$dir/log" 2>&1 < /dev/null &
host="unix://$dir/docker.sock"
for _ in $(seq 1 150); do
  if engine_ok "$host"; then log "private engine ready at $host"; echo "export DOCKER_HOST=$host"; exit 0; fi
  sleep 0.2
done
log "dockerd did not start; last log lines:"; tail -20 "$dir/log" >&2; exit 1
