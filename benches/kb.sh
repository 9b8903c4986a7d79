#!/usr/bin/env bash
# Knowledge-base benchmark: `tensoras serve` with a fresh data directory, one knowledge base
# (all-minilm-l6-v2, default chunking) filled with KB_BENCH_CHUNKS chunks of generated
# Markdown through the Files API; end-to-end ingestion chunks/s, then, once the vector store
# has indexed them, retrieve latency p50/p99 for vector, keyword and hybrid search.
#
#   bash benches/kb.sh            (make bench-kb; from anywhere, runs with CWD = repo root)
#
# Environment (all optional):
#   KB_BENCH_CHUNKS=100000   chunks to ingest (~35 min at 50 chunks/s on 2 cores)
#   KB_BENCH_QUERIES=200     timed queries per search type (distinct texts), top_k 10
#   KB_BENCH_DATA_DIR        keep the server's data there; if it already holds this
#                            benchmark's knowledge base (kb-bench.json), skip ingestion and
#                            measure retrieval on it again (e.g. with another TENSORAS_BIN)
#   KB_BENCH_WAIT_INDEX=1    0: measure retrieval without waiting for the index build
#   TENSORAS_BIN             [$HOME/.cache/tensoras/target/release/tensoras]
#   RESULTS_DIR              keep the JSON results there [a temporary folder]
# The server listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. benches/lib.sh
CHUNKS="${KB_BENCH_CHUNKS:-100000}"
QUERIES="${KB_BENCH_QUERIES:-200}"
WORK="$(mktemp -d)"
DATA="${KB_BENCH_DATA_DIR:-$WORK/data}"
RESULTS="${RESULTS_DIR:-$WORK/results}"
STATE="$DATA/kb-bench.json"
LOG="$WORK/server.log"
mkdir -p "$DATA" "$RESULTS"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && stop "$SERVER_PID"; rm -rf "$WORK/data"' EXIT INT TERM

echo "== knowledge-base benchmark $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "binary $TENSORAS_BIN, data $DATA, load average at start: $(load)"
if [ -f "$STATE" ]; then
    KEY="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$STATE")"
else
    KEY="$(new_key)"
fi
PORT="$(free_port)"
# The vector store logs its background index builds at info: wait-index reads them.
RUST_LOG="warn,tensoras::vector=info" start_tensoras "$TENSORAS_BIN" "$PORT" "$DATA" "$LOG" "$KEY"
URL="http://127.0.0.1:$PORT"

if [ -f "$STATE" ]; then
    echo "-- reusing the knowledge base in $STATE (no ingestion)"
    # Opening the collection (first search) starts indexing whatever is not indexed yet.
    python3 benches/kb.py retrieve "$URL" "$STATE" /dev/null --key "$KEY" --queries 1 --warmup 0 >/dev/null
else
    echo "-- embeddings alone, for comparison (load $(load))"
    python3 benches/kb.py embed "$URL" "$RESULTS/embed.json" --key "$KEY"
    echo "-- ingesting $CHUNKS chunks (load $(load))"
    python3 benches/kb.py ingest "$URL" "$STATE" --key "$KEY" --chunks "$CHUNKS"
fi
if [ "${KB_BENCH_WAIT_INDEX:-1}" != 0 ]; then
    echo "-- waiting for the vector index (load $(load))"
    python3 benches/kb.py wait-index "$LOG"
fi
echo "-- retrieval, $QUERIES queries per search type (load $(load))"
python3 benches/kb.py retrieve "$URL" "$STATE" "$RESULTS/kb.json" --key "$KEY" --queries "$QUERIES"
echo
python3 benches/kb.py table "$RESULTS/kb.json"
echo "load average at end: $(load)"
