#!/usr/bin/env bash
# Continuous batching, one run on this machine: N concurrent streams of SmolLM2-135M-Instruct
# through `tensoras serve` with batching off (TENSORAS_MAX_BATCH=1: steps take turns) and on
# (the default, 16), and through llama.cpp's server on the same GGUF weights when
# llama-cpp-python is installed (see benches/inference.sh). 64 tokens per stream, greedy,
# EOS banned; medians of REPS rounds after a warm-up round. A third tensoras run serves a
# `models import --int8-activations` conversion of the same GGUF (SKIP_INT8=1 skips it).
#
#   bash benches/batching.sh      (or `make bench-batching`)
#
# Environment: STREAMS="1 2 4 8", REPS=3, TENSORAS_THREADS=2, SKIP_LLAMA=1, TENSORAS_BIN,
# BENCH_VENV, RESULTS_DIR (as in benches/inference.sh). Loopback only; stops what it starts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
STREAMS="${STREAMS:-1 2 4 8}"
REPS="${REPS:-3}"
THREADS="${TENSORAS_THREADS:-2}"
WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
PID=""
trap '[ -n "$PID" ] && stop "$PID"; rm -rf "$WORK/data-"* "$WORK/models"' EXIT INT TERM

echo "== batching benchmark $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, load $(load)"
KEY="$(new_key)"
RUNS="1 16"
if [ -z "${SKIP_INT8:-}" ]; then
    int8_models "$WORK/models"
    RUNS="$RUNS int8"
fi
for run in $RUNS; do
    PORT="$(free_port)"
    mkdir -p "$WORK/data-$run"
    batch=$run model=smollm2-135m-instruct models=$MODELS_DIR
    label="tensoras, batching off (max batch 1)"
    [ "$batch" = 1 ] || label="tensoras, continuous batching (max batch $batch)"
    if [ "$run" = int8 ]; then
        batch=16 model=$INT8_ID models=$WORK/models
        label="tensoras, continuous batching (max batch 16), --int8-activations import"
    fi
    echo "-- tensoras serve, $model, TENSORAS_MAX_BATCH=$batch, TENSORAS_THREADS=$THREADS (load $(load))"
    start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data-$run" "$WORK/tensoras-$run.log" "$KEY" \
        TENSORAS_MAX_BATCH="$batch" TENSORAS_THREADS="$THREADS" TENSORAS_MODELS_DIR="$models" || exit 1
    PID=$SERVER_PID
    python3 benches/measure.py concurrent "http://127.0.0.1:$PORT" "$model" "$RESULTS/tensoras-$run.json" \
        --key "$KEY" --streams $STREAMS --reps "$REPS" --label "$label" --threads "$THREADS"
    stop "$PID"; PID=""
done

if [ -z "${SKIP_LLAMA:-}" ] && extract_gguf && "$BENCH_VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
    PORT="$(free_port)"
    version="$("$BENCH_VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
    echo "-- llama.cpp server (llama-cpp-python $version), n_threads=$THREADS (load $(load))"
    "$BENCH_VENV/bin/python" -m llama_cpp.server --model "$GGUF" --host 127.0.0.1 --port "$PORT" \
        --n_threads "$THREADS" --n_threads_batch "$THREADS" --n_ctx 4096 --chat_format chatml \
        --model_alias smollm2 --verbose False --interrupt_requests False >"$WORK/llama.log" 2>&1 &
    PID=$!
    wait_http "http://127.0.0.1:$PORT/v1/models" "$PID" 120 || { tail -20 "$WORK/llama.log" >&2; exit 1; }
    python3 benches/measure.py concurrent "http://127.0.0.1:$PORT" smollm2 "$RESULTS/llama.json" \
        --streams $STREAMS --reps "$REPS" --label "llama.cpp server (llama-cpp-python $version)" --threads "$THREADS"
    stop "$PID"; PID=""
else
    echo "-- llama.cpp skipped (SKIP_LLAMA set, or no llama-cpp-python[server] in $BENCH_VENV / no GGUF; see benches/inference.sh)"
fi

echo
echo "== results: $STREAMS concurrent streams, 64 tokens each, median of $REPS rounds"
python3 benches/measure.py concurrent-table "$RESULTS"
echo "load average at end: $(load)"
