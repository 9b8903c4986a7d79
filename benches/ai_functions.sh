#!/usr/bin/env bash
# What a model call made from a deployed function costs on top of the same request sent over
# HTTP (issue #20's target: at most 2 ms added): `tensoras serve` with a fresh data directory,
# the ai-probe fixture deployed with the models granted, then AI_BENCH_REPS interleaved pairs
# of (the request over HTTP, the function making the request), for a one-token chat
# completion and a one-text embedding. The function's figure includes its own call
# (instantiation of the tool, JSON in and out), which is what a user pays.
#
#   bash benches/ai_functions.sh            (make bench-ai-functions)
#
# Environment: AI_BENCH_REPS (200), TENSORAS_BIN, RESULTS_DIR (keep the JSON results).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && stop "$SERVER_PID"; rm -rf "$WORK/data"' EXIT INT TERM

echo "== model calls from functions $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "binary $TENSORAS_BIN, load average at start: $(load)"
KEY="$(new_key)"
PORT="$(free_port)"
start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data" "$WORK/server.log" "$KEY"
"$TENSORAS_VENV/bin/python" benches/ai_functions.py "http://127.0.0.1:$PORT" "$KEY" "$RESULTS/ai_functions.json" \
    --reps "${AI_BENCH_REPS:-200}"
echo "load average at end: $(load)"
