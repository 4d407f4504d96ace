#!/usr/bin/env bash
# Stops the private test engine started by ensure-engine.sh, by its own pid.
dir="${P2PRC_TEST_ENGINE_DIR:-/tmp/p2prc-engine}"
if [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null && echo "engine: stopped private dockerd" >&2; fi
exit 0
