#!/usr/bin/env bash
# The WASM path against its ceiling, measured in pairs: PAIRS rounds of one streamed
# 128-token request through `tensoras serve` (HTTP + WASM chat handler, warm server)
# followed at once by one run of the bare ONNX Runtime loop in the host
# (host/benches/decode.rs, DECODE_REPS=1). On a VM whose speed drifts from minute to
# minute, the ratio within a pair (seconds apart) is steadier than the ratio of two
# medians taken minutes apart, which is what benches/inference.sh gives. Last, the
# server's own trace splits its single-stream steps into ONNX Runtime's run and the time
# between runs (the handler's work and the hand-offs to and from the scheduler thread),
# timed at the same steps and so free of the drift.
#
#   bash benches/wasm_ratio.sh      (or `make bench-wasm-ratio`)
#
# Environment: PAIRS=7, THREADS=2, TENSORAS_BIN, RESULTS_DIR. Loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
PAIRS="${PAIRS:-7}"
THREADS="${THREADS:-2}"
WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
PID=""
trap '[ -n "$PID" ] && stop "$PID"; rm -rf "$WORK/data"' EXIT INT TERM

echo "== WASM path / bare loop, $PAIRS pairs, $THREADS threads, $(date -u '+%Y-%m-%d %H:%M UTC'), load $(load)"
build_bare_loop
KEY="$(new_key)"
PORT="$(free_port)"
# The scheduler's trace times every run and the wait before it (measure.py steps).
start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data" "$WORK/tensoras.log" "$KEY" TENSORAS_THREADS="$THREADS" \
    TENSORAS_LOG="warn,tensoras::inference::decoder::scheduler=trace" || exit 1
PID=$SERVER_PID
for i in $(seq "$PAIRS"); do
    python3 benches/measure.py chat "http://127.0.0.1:$PORT" smollm2-135m-instruct "$RESULTS/wasm-$i.json" \
        --key "$KEY" --reps 1 --label "tensoras (HTTP + WASM)" --threads "$THREADS" | grep ' run 1:'
    bare_loop "$THREADS" 1 | grep '^RESULT' | tee "$RESULTS/bare-$i.log"
done
python3 benches/measure.py ratio "$RESULTS"
python3 benches/measure.py steps "$WORK/tensoras.log"
echo "load average at end: $(load)"
