#!/usr/bin/env bash
# Inference benchmark, one run on this machine: SmolLM2-135M-Instruct single stream through
#   (a) `tensoras serve` (HTTP + WASM chat handler + host ONNX Runtime over wasi:nn),
#   (a') the same on a `tensoras models import --int8-activations` conversion of the GGUF,
#   (b) a bare ONNX Runtime loop in the host, no WASM/HTTP (host/benches/decode.rs),
#   (c) llama.cpp's server (llama-cpp-python) on the GGUF the ONNX model was converted from,
# and all-MiniLM-L6-v2 embeddings/s through tensoras vs onnxruntime in Python.
# Same prompt, chat template, 128 tokens, temperature 0; medians of REPS runs after a warm-up.
#
#   bash benches/inference.sh            (from anywhere; runs with CWD = repo root)
#
# Environment (all optional):
#   REPS=5            measured streamed requests per engine and thread count
#   THREADS="2 1"     thread counts (the server's default is all cores)
#   SKIP_LLAMA=1      skip llama.cpp; SKIP_BARE=1 skip the bare loop; SKIP_EMBED=1 skip embeddings;
#   SKIP_INT8=1       skip the --int8-activations conversion
#   TENSORAS_BIN      [$HOME/.cache/tensoras/target/release/tensoras]
#   BENCH_VENV        venv with llama-cpp-python[server] [$HOME/.cache/tensoras/bench-venv]
#   IMPORTER_VENV     venv with onnxruntime, tokenizers, numpy [$HOME/.cache/tensoras/importer-venv]
#   RESULTS_DIR       keep the JSON results there [a temporary folder]
#
# llama.cpp is built from the PyPI sdist once (~15 minutes on 2 cores):
#   python3 -m venv ~/.cache/tensoras/bench-venv &&
#   CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
#     -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON" ~/.cache/tensoras/bench-venv/bin/pip install 'llama-cpp-python[server]'
# (on a CPU without AVX-512 drop the two AVX512 flags). A GGML_NATIVE=ON build segfaulted on
# its first request on a 2026-12-02 Intel Xeon VM (AMX/AVX512-FP16 code paths, presumably).
# Everything listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
REPS="${REPS:-5}"
THREADS="${THREADS:-2 1}"
PY=python3
[ -x "$BENCH_VENV/bin/python" ] && PY="$BENCH_VENV/bin/python"

WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK/data-"* "$WORK/models"
}
trap cleanup EXIT INT TERM

echo "== inference benchmark $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average at start: $(load)"
for f in "$TENSORAS_BIN" build/functions/chat.wasm build/functions/embeddings.wasm \
         "$MODELS_DIR/smollm2-135m-instruct/model.onnx" "$MODELS_DIR/all-minilm-l6-v2/model.onnx"; do
    [ -e "$f" ] || { echo "missing $f (run make build / make models first)" >&2; exit 1; }
done

# Build the bare loop first so that compiling does not overlap any measurement.
if [ -z "${SKIP_BARE:-}" ]; then
    echo "-- building host/benches/decode.rs (cargo waits for the target dir's lock if it is busy)"
    build_bare_loop
fi

KEY="$(new_key)"
# serve_chat NAME THREADS MODEL MODELS_DIR LABEL: starts `tensoras serve` on MODELS_DIR with
# THREADS threads, measures chat on MODEL into $RESULTS/NAME-THREADS.json and leaves the
# server running on $PORT as $PID (the caller stops it).
serve_chat() {
    local name=$1 t=$2 model=$3 models=$4 label=$5
    PORT="$(free_port)"
    mkdir -p "$WORK/data-$name-$t"
    echo "-- tensoras serve, $model, TENSORAS_THREADS=$t, port $PORT (load $(load))"
    start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data-$name-$t" "$WORK/$name-$t.log" "$KEY" \
        TENSORAS_THREADS="$t" TENSORAS_MODELS_DIR="$models" || exit 1
    PID=$SERVER_PID
    PIDS+=("$PID")
    python3 benches/measure.py chat "http://127.0.0.1:$PORT" "$model" "$RESULTS/$name-$t.json" \
        --key "$KEY" --reps "$REPS" --label "$label" --threads "$t"
}

# (a) tensoras serve: HTTP + WASM
for t in $THREADS; do
    serve_chat tensoras "$t" smollm2-135m-instruct "$MODELS_DIR" "tensoras (HTTP + WASM)"
    if [ -z "${SKIP_EMBED:-}" ] && [ "$t" = "$(echo $THREADS | cut -d' ' -f1)" ]; then
        for fmt in float base64; do
            python3 benches/measure.py embed-http "http://127.0.0.1:$PORT" all-minilm-l6-v2 "$RESULTS/embed-tensoras-$fmt-$t.json" \
                --key "$KEY" --label "tensoras POST /v1/embeddings (HTTP + WASM), encoding_format=$fmt" --threads "$t" \
                --encoding-format "$fmt"
        done
    fi
    stop "$PID"
done

# (a') the same server on a `models import --int8-activations` conversion of the same GGUF:
# the arithmetic llama.cpp uses (int8 activations in the quantized products), so this row
# and (c) compare like for like; (a) is the exact default.
if [ -z "${SKIP_INT8:-}" ]; then
    int8_models "$WORK/models"
    for t in $THREADS; do
        serve_chat tensoras-int8 "$t" "$INT8_ID" "$WORK/models" "tensoras --int8-activations import (HTTP + WASM)"
        stop "$PID"
    done
fi

# (c) llama.cpp server on the same weights (GGUF Q4_1)
if [ -z "${SKIP_LLAMA:-}" ]; then
    if ! "$BENCH_VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
        echo "-- llama.cpp skipped: no llama-cpp-python[server] in $BENCH_VENV (see the header of this script)"
    else
        LLAMA_VERSION="$(llama_version)"
        for t in $THREADS; do
            PORT="$(free_port)"
            echo "-- llama.cpp server (llama-cpp-python $LLAMA_VERSION), n_threads=$t, port $PORT (load $(load))"
            start_llama "$PORT" "$t" "$WORK/llama-$t.log" || exit 1
            PID=$SERVER_PID
            PIDS+=("$PID")
            python3 benches/measure.py chat "http://127.0.0.1:$PORT" smollm2 "$RESULTS/llama-$t.json" \
                --reps "$REPS" --label "llama.cpp (llama-cpp-python $LLAMA_VERSION, Q4_1 GGUF)" --threads "$t"
            stop "$PID"
        done
    fi
fi

# (b) bare ONNX Runtime loop in the host
if [ -z "${SKIP_BARE:-}" ]; then
    echo "-- bare ONNX Runtime decode loop (load $(load))"
    bare_loop "$(echo $THREADS | tr ' ' ',')" "$REPS" | tee "$WORK/bare.log" | grep -v '^RESULT'
    python3 benches/measure.py ingest-bare "$WORK/bare.log" "$RESULTS"
fi

# (d) embeddings through onnxruntime in Python on the same ONNX file
if [ -z "${SKIP_EMBED:-}" ]; then
    t="$(echo $THREADS | cut -d' ' -f1)"
    echo "-- onnxruntime in Python, all-minilm-l6-v2, intra_op_num_threads=$t (load $(load))"
    "$IMPORTER_VENV/bin/python" benches/measure.py embed-ort "$MODELS_DIR/all-minilm-l6-v2" "$RESULTS/embed-ort-$t.json" \
        --threads "$t" --label "onnxruntime $("$IMPORTER_VENV/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') in Python (mean pooling)"
fi

echo
echo "== results (median of $REPS; prompt \"Write a long story about a dragon who learns to bake bread.\", 128 tokens, temperature 0)"
python3 benches/measure.py table "$RESULTS"
echo
echo "load average at end: $(load)"
