#!/usr/bin/env bash
# tensoras against llama.cpp on the same weights, measured in turns: for each thread count,
# `tensoras serve` (the exact default conversion and the `--int8-activations` import of the
# same GGUF, one server), a second `tensoras serve --ort-matmul` (the exact conversion on
# ONNX Runtime's MatMulNBits kernel instead of tensoras' own) and llama-cpp-python's
# server run side by side, and every round
# streams the benchmark request (measure.py: 43-token prompt, 128 tokens, temperature 0)
# once to each, in a rotating order (measure.py versus). benches/inference.sh measures the
# engines one after another, minutes apart; on a VM whose speed drifts by ±20 % from minute
# to minute, per-round ratios are the steadier comparison.
#
#   bash benches/versus.sh        (or `make bench-versus`)
#
# Environment: REPS=9 rounds, THREADS="1 2", SKIP_INT8=1, SKIP_ORT_KERNEL=1, TENSORAS_BIN, BENCH_VENV,
# RESULTS_DIR. Needs llama-cpp-python[server] in BENCH_VENV (see benches/inference.sh).
# Loopback only; every server is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
REPS="${REPS:-9}"
THREADS="${THREADS:-1 2}"
WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
PIDS=()
trap 'for p in "${PIDS[@]:-}"; do [ -n "$p" ] && stop "$p"; done; rm -rf "$WORK/data-"* "$WORK/models"' EXIT INT TERM

"$BENCH_VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null ||
    { echo "no llama-cpp-python[server] in $BENCH_VENV (see benches/inference.sh)" >&2; exit 1; }
echo "== tensoras vs llama.cpp $(llama_version), in turns, $REPS rounds, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(load)"
MODELS="$MODELS_DIR"
if [ -z "${SKIP_INT8:-}" ]; then
    int8_models "$WORK/models"
    MODELS="$WORK/models"
fi
KEY="$(new_key)"
for t in $THREADS; do
    TPORT="$(free_port)"
    start_tensoras "$TENSORAS_BIN" "$TPORT" "$WORK/data-$t" "$WORK/tensoras-$t.log" "$KEY" \
        TENSORAS_THREADS="$t" TENSORAS_MODELS_DIR="$MODELS" || exit 1
    PIDS+=("$SERVER_PID")
    if [ -z "${SKIP_ORT_KERNEL:-}" ]; then
        OPORT="$(free_port)"
        start_tensoras "$TENSORAS_BIN" "$OPORT" "$WORK/data-ort-$t" "$WORK/tensoras-ort-$t.log" "$KEY" \
            TENSORAS_THREADS="$t" TENSORAS_MODELS_DIR="$MODELS_DIR" TENSORAS_ORT_MATMUL=true || exit 1
        PIDS+=("$SERVER_PID")
    fi
    LPORT="$(free_port)"
    start_llama "$LPORT" "$t" "$WORK/llama-$t.log" || exit 1
    PIDS+=("$SERVER_PID")
    engines=(--engine "tensoras, exact default" "http://127.0.0.1:$TPORT" smollm2-135m-instruct "$KEY")
    [ -z "${SKIP_INT8:-}" ] &&
        engines+=(--engine "tensoras, --int8-activations" "http://127.0.0.1:$TPORT" "$INT8_ID" "$KEY")
    [ -z "${SKIP_ORT_KERNEL:-}" ] &&
        engines+=(--engine "tensoras, --ort-matmul" "http://127.0.0.1:$OPORT" smollm2-135m-instruct "$KEY")
    engines+=(--engine "llama.cpp" "http://127.0.0.1:$LPORT" smollm2)
    echo "-- $t thread(s), load $(load)"
    python3 benches/measure.py versus "$RESULTS/versus-$t.json" --reps "$REPS" --threads "$t" "${engines[@]}" |
        grep -v '^\[round'
    for p in "${PIDS[@]}"; do stop "$p"; done
    PIDS=()
done
echo "load average at end: $(load)"
