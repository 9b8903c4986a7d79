#!/usr/bin/env bash
# Cost of constrained decoding per token: SmolLM2-135M through `tensoras serve`, streamed,
# free text vs a JSON-schema answer vs a forced tool call with the same schema; medians of
# REPS interleaved runs after a warm-up. The difference in time per token between the
# constrained and the free runs is what the grammar engine (llguidance, inside the WASM
# chat handler) adds to each decode step; the target is <= 10 % of a step.
#
#   bash benches/grammar.sh      (REPS=5 THREADS=2 MAX_TOKENS=128 TENSORAS_BIN=... optional)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
REPS="${REPS:-5}"
THREADS="${THREADS:-2}"
WORK="$(mktemp -d)"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM

PORT="$(free_port)"
KEY="$(new_key)"
echo "== grammar benchmark $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, TENSORAS_THREADS=$THREADS, load $(load)"
start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data" "$WORK/server.log" "$KEY" TENSORAS_THREADS="$THREADS" || exit 1
PID=$SERVER_PID
python3 benches/measure.py grammar "http://127.0.0.1:$PORT" smollm2-135m-instruct "$WORK/grammar.json" \
    --key "$KEY" --reps "$REPS" --threads "$THREADS" --max-tokens "${MAX_TOKENS:-128}"
