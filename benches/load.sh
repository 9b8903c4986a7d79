#!/usr/bin/env bash
# Load and overload: `tensoras serve` on a free loopback port with a temporary data directory,
# a knowledge base of two small files and the deployed tool `calc`; then, for DURATION seconds,
# CLIENTS concurrent streaming chat clients (smollm2-135m-instruct, short prompts, max_tokens 32,
# temperature 0.7 with seeds) plus a few RAG, server-side tool and embeddings clients. Checks:
# no dropped or corrupted stream, no request past its timeout (a hang), RSS flat after the
# warm-up, slots free again afterwards, a graceful shutdown. Then the server is restarted with
# --max-instances OVERLOAD_SLOTS --max-queue OVERLOAD_QUEUE and driven past capacity: the excess
# must get fast 503 `server_overloaded` (or 429) with Retry-After, not unbounded waits.
# Prints a summary block for BENCHMARKS.md; exits non-zero if a check fails.
#
#   bash benches/load.sh              (make bench-load; from anywhere, runs with CWD = repo root)
#   LOAD_SMOKE=1 bash benches/load.sh (CI slice: 20 clients for 20 s, a small overload; < 60 s)
#
# Environment (all optional; LOAD_SMOKE=1 changes the defaults in brackets):
#   DURATION=180 [20]      seconds of load        CLIENTS=200 [20]      streaming chat clients
#   RAG_CLIENTS=4 [1]  TOOL_CLIENTS=4 [1]  EMBED_CLIENTS=4 [1]
#   MAX_TOKENS=32 [16]  per chat and RAG request (tool requests: 3x, per generation round)
#   REQUEST_TIMEOUT=300 [120]  per request, seconds (longer = a hang, the check fails)
#   RSS_TOLERANCE=0.15 [1.0]  RSS growth allowed from after the warm-up (DURATION/3) to the end
#   OVERLOAD_SLOTS=4 [2]  OVERLOAD_QUEUE=8 [4]  OVERLOAD_QUEUE_TIMEOUT=5 [3]
#   OVERLOAD_CLIENTS=64 [16]  OVERLOAD_DURATION=30 [8]  SKIP_OVERLOAD=1 skips that phase
#   TENSORAS_BIN [$HOME/.cache/tensoras/target/release/tensoras]  RESULTS_DIR [a temporary folder]
#   PYTHON [python3]  TENSORAS_THREADS (the server's, default all cores)
# Loopback only. Every step has a bound (each Python phase ends itself by SIGALRM and is run
# under `timeout`; servers are killed if SIGTERM does not stop them in 30 s), so the script
# stops by itself; it prints its overall bound at the start.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh

if [ -n "${LOAD_SMOKE:-}" ]; then
    D=(20 20 1 120 1.0 2 4 3 16 8 16)
else
    D=(180 200 4 300 0.15 4 8 5 64 30 32)
fi
DURATION="${DURATION:-${D[0]}}"
CLIENTS="${CLIENTS:-${D[1]}}"
RAG_CLIENTS="${RAG_CLIENTS:-${D[2]}}"
TOOL_CLIENTS="${TOOL_CLIENTS:-${D[2]}}"
EMBED_CLIENTS="${EMBED_CLIENTS:-${D[2]}}"
REQUEST_TIMEOUT="${REQUEST_TIMEOUT:-${D[3]}}"
RSS_TOLERANCE="${RSS_TOLERANCE:-${D[4]}}"
OVERLOAD_SLOTS="${OVERLOAD_SLOTS:-${D[5]}}"
OVERLOAD_QUEUE="${OVERLOAD_QUEUE:-${D[6]}}"
OVERLOAD_QUEUE_TIMEOUT="${OVERLOAD_QUEUE_TIMEOUT:-${D[7]}}"
OVERLOAD_CLIENTS="${OVERLOAD_CLIENTS:-${D[8]}}"
OVERLOAD_DURATION="${OVERLOAD_DURATION:-${D[9]}}"
MAX_TOKENS="${MAX_TOKENS:-${D[10]}}"
PY="${PYTHON:-python3}"

WORK="$(mktemp -d)"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && stop_within "$SERVER_PID" 10 >/dev/null; rm -rf "$WORK/data"' EXIT INT TERM
FAILED=0
no_panic() {
    grep -q 'panicked' "$1" || return 0
    echo "load: the server logged a panic ($1):" >&2
    grep -m5 -A3 'panicked' "$1" >&2
    return 1
}

# Bounds of each step, seconds (the Python phases' own deadlines are a little shorter).
SETUP_BOUND=660
RUN_BOUND=$(( ${DURATION%.*} + ${REQUEST_TIMEOUT%.*} + 60 + 180 ))
OVER_BOUND=$(( ${OVERLOAD_DURATION%.*} + 120 + 240 ))
TOTAL=$(( 2 * (120 + 30) + SETUP_BOUND + RUN_BOUND + OVER_BOUND ))

MACHINE="$(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB"
COMMAND="bash benches/load.sh"
[ -n "${LOAD_SMOKE:-}" ] && COMMAND="LOAD_SMOKE=1 $COMMAND"
for v in DURATION CLIENTS RAG_CLIENTS TOOL_CLIENTS EMBED_CLIENTS REQUEST_TIMEOUT OVERLOAD_SLOTS OVERLOAD_QUEUE \
         OVERLOAD_QUEUE_TIMEOUT OVERLOAD_CLIENTS OVERLOAD_DURATION MAX_TOKENS TENSORAS_THREADS; do
    printenv "$v" >/dev/null && COMMAND="$v=${!v} $COMMAND"
done
echo "== load benchmark $(date -u '+%Y-%m-%d %H:%M UTC') on $MACHINE, load $(load)"
echo "binary $TENSORAS_BIN; stops by itself within $TOTAL s"

# -- load ---------------------------------------------------------------------------------
KEY="$(new_key)"
PORT="$(free_port)"
start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data" "$WORK/server-load.log" "$KEY"
URL="http://127.0.0.1:$PORT"
echo "-- setup: knowledge base, tool calc, one warm-up request of each kind (load $(load))"
timeout -k 10 "$SETUP_BOUND" "$PY" benches/load.py setup "$URL" "$WORK/state.json" --key "$KEY"
echo "-- load: $CLIENTS chat + $RAG_CLIENTS RAG + $TOOL_CLIENTS tool + $EMBED_CLIENTS embeddings clients, $DURATION s (load $(load))"
timeout -k 10 "$RUN_BOUND" "$PY" benches/load.py run "$URL" "$WORK/state.json" "$RESULTS/run.json" \
    --key "$KEY" --pid "$SERVER_PID" --duration "$DURATION" --clients "$CLIENTS" --rag-clients "$RAG_CLIENTS" \
    --tool-clients "$TOOL_CLIENTS" --embed-clients "$EMBED_CLIENTS" --timeout "$REQUEST_TIMEOUT" --max-tokens "$MAX_TOKENS" \
    --rss-tolerance "$RSS_TOLERANCE" || { echo "load: the load phase did not complete" >&2; FAILED=1; }
echo "-- graceful shutdown"
stop_within "$SERVER_PID" 30 || FAILED=1
SERVER_PID=""
no_panic "$WORK/server-load.log" || FAILED=1

# -- overload -----------------------------------------------------------------------------
OVER_JSON=""
if [ -z "${SKIP_OVERLOAD:-}" ]; then
    PORT="$(free_port)"
    # A restart on the same data directory: wasmtime's compile cache is there already.
    start_tensoras "$TENSORAS_BIN" "$PORT" "$WORK/data" "$WORK/server-overload.log" "$KEY" \
        TENSORAS_MAX_INSTANCES="$OVERLOAD_SLOTS" TENSORAS_MAX_QUEUE="$OVERLOAD_QUEUE" \
        TENSORAS_QUEUE_TIMEOUT_SECS="$OVERLOAD_QUEUE_TIMEOUT"
    echo "-- overload: $OVERLOAD_CLIENTS clients, --max-instances $OVERLOAD_SLOTS --max-queue $OVERLOAD_QUEUE" \
         "--queue-timeout-secs $OVERLOAD_QUEUE_TIMEOUT, $OVERLOAD_DURATION s (load $(load))"
    timeout -k 10 "$OVER_BOUND" "$PY" benches/load.py overload "http://127.0.0.1:$PORT" "$RESULTS/overload.json" \
        --key "$KEY" --pid "$SERVER_PID" --slots "$OVERLOAD_SLOTS" --max-queue "$OVERLOAD_QUEUE" \
        --queue-timeout "$OVERLOAD_QUEUE_TIMEOUT" --clients "$OVERLOAD_CLIENTS" --duration "$OVERLOAD_DURATION" \
        --max-tokens "$MAX_TOKENS" \
        || { echo "load: the overload phase did not complete" >&2; FAILED=1; }
    stop_within "$SERVER_PID" 30 || FAILED=1
    SERVER_PID=""
    no_panic "$WORK/server-overload.log" || FAILED=1
    OVER_JSON="$RESULTS/overload.json"
    [ -f "$OVER_JSON" ] || OVER_JSON=""
fi

echo
[ -f "$RESULTS/run.json" ] || { echo "load: no results" >&2; exit 1; }
"$PY" benches/load.py report "$RESULTS/run.json" $OVER_JSON \
    --command "$COMMAND" --machine "$(date -u '+%Y-%m-%d %H:%M UTC'), $MACHINE" || FAILED=1
echo "load average at end: $(load)"
if [ "$FAILED" != 0 ]; then
    echo "load: FAILED (server logs: $WORK/server-*.log)" >&2
    exit 1
fi
