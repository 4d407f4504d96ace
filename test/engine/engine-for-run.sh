#!/usr/bin/env bash
# `make run`: makes sure the node it starts has a container engine that answers, as `make test` does.
# Prints `export DOCKER_HOST=...` for the caller to eval when it brought an engine up (nothing when the
# node's own setting stands); says what it found or did on stderr.
#   - the engine the node would use answers: it is used;
#   - it does not, and the user chose it (DOCKER_HOST, or dockerHost in the node's config): it is kept,
#     with a warning (the node serves and runs containers once that engine answers);
#   - it does not and nobody chose it: test/engine/ensure-engine.sh finds a private engine started
#     earlier, or starts one (installing docker.io first as root on Debian).
# P2PRC_BIN runs p2prc (default ./p2prc).
set -uo pipefail
cd "$(dirname "$0")/../.."
p2prc=${P2PRC_BIN:-./p2prc}
say() { echo "run: $*" >&2; }

# --doctor --json: {ok, engine: {host, reachable, ...}} for the engine the node would use
# (config dockerHost, else DOCKER_HOST, else /var/run/docker.sock)
report=$($p2prc --doctor --json 2>/dev/null)
host=$(printf '%s\n' "$report" | sed -n 's/^ *"host": *"\(.*\)",\{0,1\}$/\1/p' | head -1)
if printf '%s\n' "$report" | grep -q '"reachable": true'; then
  say "using the container engine at ${host:-?}"
  exit 0
fi
configured=$($p2prc --vc 2>/dev/null | sed -n 's/^ *"dockerHost": *"\(.*\)",\{0,1\}$/\1/p' | head -1)
if [ -n "${DOCKER_HOST:-}" ] || [ -n "$configured" ]; then
  why=$([ -n "$configured" ] && echo "dockerHost in the node's config" || echo "your DOCKER_HOST")
  say "warning: no container engine answers at ${host:-?} ($why, kept); the node serves but runs nothing until it does"
  exit 0
fi
say "no container engine answers at ${host:-/var/run/docker.sock}; bringing one up as make test does"
if ! env_lines=$(test/engine/ensure-engine.sh); then
  say "no container engine could be found or started; start Docker (or Podman's socket) or set DOCKER_HOST"
  exit 1
fi
echo "$env_lines"
