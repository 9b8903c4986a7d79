#!/usr/bin/env bash
# The same tool (`wordcount`) in Rust, Python and JavaScript (issue #20): each component's
# size, its deploy (a compile; then a redeploy with the compile cache warm), the first
# call after each deploy, and the p50/p90 of LANG_BENCH_REPS later calls, against a fresh
# `tensoras serve`.
#
#   bash benches/languages.sh            (make bench-languages)
#
# Environment: LANG_BENCH_REPS (200), TENSORAS_BIN, RESULTS_DIR (keep the JSON results).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && stop "$SERVER_PID"; rm -rf "$WORK/data"' EXIT INT TERM

echo "== functions by language $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "binary $TENSORAS_BIN, load average at start: $(load)"
KEY="$(new_key)"
PORT="$(free_port)"
start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data" "$WORK/server.log" "$KEY"
"$TENSORAS_VENV/bin/python" benches/languages.py "http://127.0.0.1:$PORT" "$KEY" "$RESULTS/languages.json" \
    --reps "${LANG_BENCH_REPS:-200}"
echo "load average at end: $(load)"
