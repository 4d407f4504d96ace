#!/usr/bin/env bash
# Runs every bench/*.ts with the project's Bun; each bench prints its own results, which are also
# kept in bench/out/<name>.txt. A bench that lacks what it needs prints why and exits 77 (skipped);
# any other non-zero exit counts as a failure, and so does a run where no bench ran at all (every one
# skipped: nothing was measured, so `make bench` must not look green). Builds ./p2prc first (make build)
# when it is missing.
# P2PRC_BENCHES (a space-separated list of scripts) and P2PRC_BENCH_OUT replace bench/*.ts and bench/out;
# with P2PRC_BENCHES set nothing is built (test/bench-run.test.ts checks the counting with tiny scripts).
set -uo pipefail
cd "$(dirname "$0")/.."
BUN=node_modules/.bin/bun
OUT=${P2PRC_BENCH_OUT:-bench/out}
if [ ! -x "$BUN" ]; then
  make deps >&2 || { echo "bench: $BUN is missing and make deps failed" >&2; exit 1; }
fi
if [ -z "${P2PRC_BENCHES:-}" ] && [ ! -x p2prc ]; then
  make build >&2 || echo "bench: make build failed; benches that need ./p2prc will skip" >&2
fi
mkdir -p "$OUT"
ran=0 skipped=0 failed=0
# shellcheck disable=SC2086 # the list is split on spaces on purpose
for bench in ${P2PRC_BENCHES:-bench/*.ts}; do
  [ -e "$bench" ] || continue
  name=$(basename "$bench" .ts)
  echo "== $name"
  "$BUN" "$bench" 2>&1 | tee "$OUT/$name.txt"
  status=${PIPESTATUS[0]}
  case "$status" in
    0) ran=$((ran + 1)) ;;
    77) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)); echo "bench: $name failed (exit $status)" >&2 ;;
  esac
  echo
done
echo "$ran ran, $skipped skipped, $failed failed"
if [ "$ran" = 0 ]; then
  echo "bench: no bench ran ($skipped skipped): nothing was measured" >&2
  exit 1
fi
[ "$failed" = 0 ]
