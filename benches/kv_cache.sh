#!/usr/bin/env bash
# The KV cache updated in place against the cache copied every step, at a short and a long
# context: two `tensoras serve` side by side (the second with TENSORAS_KV_COPY=true), the
# benchmark request streamed to each in rotating turns (measure.py versus), once with
# the bare prompt plus PAD_SHORT filler words and once with PAD_LONG (~1 token a word).
#
#   bash benches/kv_cache.sh        (or `make bench-kv`)
#
# Environment: REPS=5, THREADS="1 2", PAD_SHORT=60, PAD_LONG=1000, TENSORAS_BIN, RESULTS_DIR.
# Loopback only; both servers are stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
REPS="${REPS:-5}"
THREADS="${THREADS:-1 2}"
WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
PIDS=()
trap 'for p in "${PIDS[@]:-}"; do [ -n "$p" ] && stop "$p"; done; rm -rf "$WORK/data-"*' EXIT INT TERM

echo "== KV cache in place vs copied, $REPS rounds, $(date -u '+%Y-%m-%d %H:%M UTC'), load $(load)"
KEY="$(new_key)"
for t in $THREADS; do
    P1="$(free_port)"
    start_tensoras "$TENSORAS_BIN" "$P1" "$WORK/data-a-$t" "$WORK/in-place-$t.log" "$KEY" TENSORAS_THREADS="$t" || exit 1
    PIDS+=("$SERVER_PID")
    P2="$(free_port)"
    start_tensoras "$TENSORAS_BIN" "$P2" "$WORK/data-b-$t" "$WORK/copied-$t.log" "$KEY" TENSORAS_THREADS="$t" \
        TENSORAS_KV_COPY=true || exit 1
    PIDS+=("$SERVER_PID")
    for pad in "${PAD_SHORT:-60}" "${PAD_LONG:-1000}"; do
        python3 benches/measure.py versus "$RESULTS/kv-$t-$pad.json" --reps "$REPS" --threads "$t" --pad-words "$pad" \
            --engine "in place, $pad filler words" "http://127.0.0.1:$P1" smollm2-135m-instruct "$KEY" \
            --engine "copied, $pad filler words" "http://127.0.0.1:$P2" smollm2-135m-instruct "$KEY" |
            grep -v '^\[round'
    done
    for p in "${PIDS[@]}"; do stop "$p"; done
    PIDS=()
done
echo "load average at end: $(load)"
