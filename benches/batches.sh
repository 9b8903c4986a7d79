#!/usr/bin/env bash
# Interactive requests during a batch job (issue #22): for each --batch-concurrency in
# CONCURRENCY, a fresh `tensoras serve`, the median time to first token of REQUESTS streamed
# chat requests idle and while a LINES-line batch runs, and the batch's lines/s meanwhile
# (benches/batches.py). SmolLM2-135M-Instruct, TENSORAS_THREADS threads.
#
#   bash benches/batches.sh      (or `make bench-batches`)
#
# Environment: CONCURRENCY="8 4 16", REQUESTS=10, LINES=400, MAX_TOKENS=64,
# TENSORAS_THREADS=2, TENSORAS_BIN, RESULTS_DIR. Loopback only; stops what it starts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
CONCURRENCY="${CONCURRENCY:-8 4 16}"
THREADS="${TENSORAS_THREADS:-2}"
WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
PID=""
trap '[ -n "$PID" ] && stop "$PID"; rm -rf "$WORK/data-"*' EXIT INT TERM

echo "== batches benchmark $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, load $(load)"
KEY="$(new_key)"
for c in $CONCURRENCY; do
    PORT="$(free_port)"
    mkdir -p "$WORK/data-$c"
    echo "-- tensoras serve --batch-concurrency $c, TENSORAS_THREADS=$THREADS (load $(load))"
    start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data-$c" "$WORK/tensoras-$c.log" "$KEY" \
        TENSORAS_BATCH_CONCURRENCY="$c" TENSORAS_THREADS="$THREADS" || exit 1
    PID=$SERVER_PID
    python3 benches/batches.py "http://127.0.0.1:$PORT" smollm2-135m-instruct "$RESULTS/batches-$c.json" \
        --key "$KEY" --requests "${REQUESTS:-10}" --lines "${LINES:-400}" --max-tokens "${MAX_TOKENS:-64}" \
        --label "batch concurrency $c"
    stop "$PID"; PID=""
done
