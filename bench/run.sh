#!/usr/bin/env bash
# Runs every bench/*.ts with the project's Bun; each bench prints its own results, which are also
# kept in bench/out/<name>.txt. A bench that lacks what it needs prints why and exits 77 (skipped);
# any other non-zero exit counts as a failure. Builds ./p2prc first (make build) when it is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
BUN=node_modules/.bin/bun
if [ ! -x "$BUN" ]; then
  make deps >&2 || { echo "bench: $BUN is missing and make deps failed" >&2; exit 1; }
fi
if [ ! -x p2prc ]; then
  make build >&2 || echo "bench: make build failed; benches that need ./p2prc will skip" >&2
fi
mkdir -p bench/out
ran=0 skipped=0 failed=0
for bench in bench/*.ts; do
  [ -e "$bench" ] || continue
  name=$(basename "$bench" .ts)
  echo "== $name"
  "$BUN" "$bench" 2>&1 | tee "bench/out/$name.txt"
  status=${PIPESTATUS[0]}
  case "$status" in
    0) ran=$((ran + 1)) ;;
    77) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)); echo "bench: $name failed (exit $status)" >&2 ;;
  esac
  echo
done
echo "$ran ran, $skipped skipped, $failed failed"
[ "$failed" = 0 ]
