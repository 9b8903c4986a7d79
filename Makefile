# The two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := run
ENV := . scripts/env.sh

.PHONY: setup setup-tests run test test-rust test-guests test-models test-e2e lint fmt bench bench-inference bench-grammar bench-batching bench-batches bench-wasm-ratio bench-versus bench-kv bench-metering bench-kb bench-load bench-ai-functions bench-languages guests fuzz schemathesis console-screenshots

setup:
	@bash scripts/setup.sh

setup-tests:
	@bash scripts/setup.sh --tests

guests:
	@bash scripts/build-guests.sh

## Build everything and start the server on http://127.0.0.1:8080 (data in ./data).
run: setup
	@$(ENV); exec "$$TENSORAS_BIN" serve

## Build everything and run every test: unit, component and end-to-end.
test: setup-tests lint test-rust test-guests test-models test-e2e

## rustfmt --check and clippy -D warnings over the host and the guests (scripts/lint.sh).
lint:
	@bash scripts/lint.sh

## Rewrite the Rust sources in the project's format (rustfmt.toml).
fmt:
	@$(ENV); use_host_cargo && cargo fmt -p tensoras && (use_guest_cargo && cd functions && cargo fmt --all)

test-rust:
	@$(ENV); use_host_cargo && cargo test --release --locked -p tensoras

test-guests:
	@bash scripts/test-guests.sh

test-models:
	@$(ENV); "$${TENSORAS_IMPORTER_VENV:-$$TENSORAS_CACHE/importer-venv}/bin/python" -m pytest -q tests/models

test-e2e:
	@$(ENV); TENSORAS_BIN="$$TENSORAS_BIN" "$$TENSORAS_VENV/bin/python" -m pytest -q tests/e2e

## Fuzz every target for FUZZ_SECONDS each (default 300; ~1 h in all on 2 cores) with a fresh
## FUZZ_SEED: the host's document parsers, chunkers, filters and sniffing, the guests' request
## parsing, schema compiler and streaming properties, the importer's GGUF reader. CI runs a
## short fixed slice of each inside test-rust, test-guests and test-models. See docs/testing.md.
fuzz:
	@$(ENV); export FUZZ_SECONDS=$${FUZZ_SECONDS:-300} FUZZ_SEED=$${FUZZ_SEED:-$$RANDOM$$RANDOM}; \
	echo "fuzz: $$FUZZ_SECONDS s per target, FUZZ_SEED=$$FUZZ_SEED, failing inputs in $${FUZZ_CRASH_DIR:-$${TMPDIR:-/tmp}/tensoras-fuzz}"; \
	use_host_cargo && cargo test --release --locked -p tensoras --test fuzz -- --test-threads=2 --nocapture && \
	(use_guest_cargo && cd functions && \
	 cargo test --release -p chat-core --test fuzz --test props -- --test-threads=2 --nocapture && \
	 cargo test --release -p embeddings fuzz_props -- --nocapture) && \
	"$${TENSORAS_IMPORTER_VENV:-$$TENSORAS_CACHE/importer-venv}/bin/python" -m pytest -q -s tests/models/test_gguf_fuzz.py

## schemathesis over /openapi.json, long: SCHEMATHESIS_EXAMPLES per operation (default 200)
## with a fresh SCHEMATHESIS_SEED. CI runs a fixed slice of 12 inside test-e2e (test_openapi.py).
schemathesis: setup
	@$(ENV); export SCHEMATHESIS_EXAMPLES=$${SCHEMATHESIS_EXAMPLES:-200} SCHEMATHESIS_SEED=$${SCHEMATHESIS_SEED:-$$RANDOM}; \
	echo "schemathesis: $$SCHEMATHESIS_EXAMPLES examples per operation, SCHEMATHESIS_SEED=$$SCHEMATHESIS_SEED"; \
	TENSORAS_BIN="$$TENSORAS_BIN" "$$TENSORAS_VENV/bin/python" -m pytest -q -s tests/e2e/test_openapi.py

## The web console's browser tests, saving a screenshot of each page into docs/console/.
console-screenshots: setup-tests
	@$(ENV); TENSORAS_CONSOLE_SCREENSHOTS="$(CURDIR)/docs/console" TENSORAS_BIN="$$TENSORAS_BIN" \
	"$$TENSORAS_VENV/bin/python" -m pytest -q tests/e2e/test_console.py

## Benchmarks (not tests): per-request instantiation, pooled vs on-demand.
bench: setup
	@$(ENV); use_host_cargo && cargo bench --locked -p tensoras --bench instantiation

## Single stream: tensoras (HTTP + WASM) vs the bare ORT loop vs llama.cpp's server, and embeddings/s.
## Builds llama-cpp-python from PyPI into ~/.cache/tensoras/bench-venv the first time (~15 min).
bench-inference: setup
	@bash benches/inference.sh

## Per-token cost of constrained decoding (JSON schema, forced tool call) vs free text.
bench-grammar: setup
	@bash benches/grammar.sh

## Concurrent streams: continuous batching on vs off (and llama.cpp's server when installed).
bench-batching: setup
	@bash benches/batching.sh

## Time to first token of interactive requests idle and during a large batch job, per
## --batch-concurrency, and the batch's lines/s meanwhile.
bench-batches: setup
	@bash benches/batches.sh

## WASM path / bare ORT loop decode ratio, in back-to-back pairs (steadier on a drifting VM).
bench-wasm-ratio: setup
	@bash benches/wasm_ratio.sh

## tensoras (exact and --int8-activations) vs llama.cpp on the same GGUF, in rotating turns.
bench-versus: setup
	@bash benches/versus.sh

## KV cache updated in place vs copied every step, at a short and a ~1,000-token context.
## What metering and rate limits add to a request: record, flush, tenant lookup, admission, budget check.
bench-metering: setup
	@$(ENV); use_host_cargo && cargo bench --locked -p tensoras --bench metering

bench-kv: setup
	@bash benches/kv_cache.sh

## Knowledge base at KB_BENCH_CHUNKS (default 100,000) chunks: ingestion chunks/s end to end,
## then retrieve p50/p99 for vector, keyword and hybrid search (~40 min on 2 cores).
bench-kb: setup
	@bash benches/kb.sh

## A model call made from a deployed function against the same request over HTTP (added ms).
bench-ai-functions: setup
	@bash benches/ai_functions.sh

## The same tool in Rust, Python and JavaScript: component size, deploy, first and later calls.
bench-languages: setup
	@bash benches/languages.sh

## Load and overload: 200 streaming chat clients + RAG, tool and embeddings clients for 180 s
## (no dropped stream, no hang, flat RSS), then past capacity (fast 503s with Retry-After).
## DURATION, CLIENTS, ... see benches/load.sh; LOAD_SMOKE=1 for the 20 s CI slice.
bench-load: setup
	@bash benches/load.sh
