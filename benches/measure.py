#!/usr/bin/env python3
"""Measurement client for benches/inference.sh (stdlib only, except `embed-ort`).

Subcommands (each prints a human line per repetition and writes its result as JSON):

  chat URL MODEL OUT.json [--key KEY] [--reps N] [--max-tokens N]
      Streams POST URL/v1/chat/completions (stream=true, include_usage, temperature 0)
      and measures time to first token (request sent -> first content delta) and decode
      tokens/s ((completion tokens - 1) / time from first to last content delta).
  embed-http URL MODEL OUT.json [--key KEY] [--sentences N] [--batch N] [--reps N]
      POST URL/v1/embeddings in batches; embeddings/s over the whole set.
  embed-ort MODEL_DIR OUT.json [--threads N] [--sentences N] [--batch N] [--reps N]
      The same sentences through onnxruntime + tokenizers in Python, mean pooling and
      L2 normalisation (needs onnxruntime, tokenizers and numpy).
  grammar URL MODEL OUT.json [--key KEY] [--reps N] [--max-tokens N]
      Free text vs output constrained by a JSON schema (response_format json_schema) and by
      a forced tool call; time per token from non-streamed requests of 1 and of N tokens, and
      the grammar's cost per token = constrained - free (benches/grammar.sh).
  concurrent URL MODEL OUT.json [--key KEY] [--streams N ...] [--max-tokens N] [--reps N]
      N streams at once (each the chat request above, a different user prompt per stream so
      no answer is shared): aggregate completion tokens/s over the wall time of the whole
      round, plus each stream's TTFT and decode tokens/s (benches/batching.sh).
  table RESULTS_DIR
      Prints the combined table from the JSON files the other subcommands wrote.
  ratio RESULTS_DIR / steps SERVER_LOG
      benches/wasm_ratio.sh: paired WASM/bare decode ratios; a lone stream's step split
      into ONNX Runtime's run and the time between runs, from the server's trace.

Only 127.0.0.1 URLs are accepted; every request has a timeout.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse

PROMPT = "Write a long story about a dragon who learns to bake bread."
TIMEOUT_S = 120

WORDS = (
    "the quick brown fox jumps over a lazy dog while bakers knead fresh bread in warm "
    "stone ovens near quiet rivers under silver morning skies and distant mountain "
    "villages sing old songs about dragons wizards markets lanterns harvest festivals"
).split()


def sentences(n):
    """n deterministic sentences of 12 words each."""
    out = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3 + (i * j) % 5) % len(WORDS)] for j in range(12)]
        out.append(" ".join(words).capitalize() + ".")
    return out


def connect(url):
    u = urllib.parse.urlparse(url)
    if u.hostname not in ("127.0.0.1", "localhost") or u.scheme != "http":
        sys.exit(f"refusing {url}: only http://127.0.0.1 is measured")
    return http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT_S)


def headers(key):
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = f"Bearer {key}"
    return h


def chat_body(model, max_tokens, extra=None, stream=False):
    """The benchmark's chat request: PROMPT, greedy, fixed seed, plus `extra` fields."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 0,
        **(extra or {}),
    }
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body)


def stream_once(url, model, key, max_tokens, extra=None):
    body = chat_body(model, max_tokens, extra, stream=True)
    conn = connect(url)
    t_send = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers(key))
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{url}: HTTP {resp.status}: {resp.read()[:500]!r}")
    t_first = t_last = None
    chunks = 0
    usage = None
    finish = None
    text = []
    deadline = t_send + TIMEOUT_S
    while True:
        if time.perf_counter() > deadline:
            raise SystemExit(f"{url}: stream did not finish in {TIMEOUT_S} s")
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        obj = json.loads(data)
        if obj.get("usage"):
            usage = obj["usage"]
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            # Text, or the argument fragments of a streamed tool call.
            content = delta.get("content") or "".join(
                (c.get("function") or {}).get("arguments") or "" for c in delta.get("tool_calls") or []
            )
            if content:
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                t_last = now
                chunks += 1
                text.append(content)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    conn.close()
    if t_first is None:
        raise SystemExit(f"{url}: no content in the stream")
    if usage and usage.get("completion_tokens"):
        tokens, source = usage["completion_tokens"], "usage"
    else:
        tokens, source = chunks, "chunks"
    decode = (tokens - 1) / (t_last - t_first) if tokens > 1 and t_last > t_first else float("nan")
    return {
        "ttft_ms": (t_first - t_send) * 1e3,
        "decode_tps": decode,
        "completion_tokens": tokens,
        "token_count_source": source,
        "content_chunks": chunks,
        "prompt_tokens": (usage or {}).get("prompt_tokens"),
        "finish_reason": finish,
        "total_s": time.perf_counter() - t_send,
        "text_head": "".join(text)[:80],
    }


def cmd_concurrent(a):
    import threading

    rows = []
    for n in a.streams:
        rounds = []
        for rep in range(a.reps + 1):  # the first round warms up
            results = [None] * n
            def one(i):
                # EOS banned, so every stream decodes exactly max_tokens in every engine.
                extra = {"messages": [{"role": "user", "content": f"{PROMPT} Call the dragon number {i}."}],
                         "logit_bias": {"0": -100, "2": -100}}
                results[i] = stream_once(a.url, a.model, a.key, a.max_tokens, extra)
            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(TIMEOUT_S)
            wall = time.perf_counter() - t0
            if any(r is None for r in results):
                raise SystemExit(f"{a.url}: a stream of {n} failed")
            tokens = sum(r["completion_tokens"] for r in results)
            r = {"wall_s": wall, "tokens": tokens, "aggregate_tps": tokens / wall,
                 "ttft_ms": statistics.median(r["ttft_ms"] for r in results),
                 "stream_decode_tps": statistics.median(r["decode_tps"] for r in results)}
            if rep:
                rounds.append(r)
                print(f"[{a.label}] {n} streams, round {rep}: {tokens} tokens in {wall:.2f} s = "
                      f"{r['aggregate_tps']:.1f} tok/s; per stream TTFT {r['ttft_ms']:.0f} ms, "
                      f"decode {r['stream_decode_tps']:.1f} tok/s", flush=True)
        rows.append({"streams": n, **{k: statistics.median(r[k] for r in rounds)
                                      for k in ("aggregate_tps", "ttft_ms", "stream_decode_tps", "tokens")},
                     "rounds": rounds})
    json.dump({"kind": "concurrent", "label": a.label, "threads": a.threads, "max_tokens": a.max_tokens, "rows": rows},
              open(a.out, "w"), indent=1)


def results_in(directory):
    """Every result JSON the subcommands wrote into `directory`, in file-name order."""
    return [json.load(open(os.path.join(directory, f))) for f in sorted(os.listdir(directory)) if f.endswith(".json")]


def cmd_concurrent_table(a):
    results = [r for r in results_in(a.dir) if r["kind"] == "concurrent"]
    print("| engine | streams | aggregate tokens/s | per-stream decode tokens/s | median TTFT |")
    print("|---|---|---|---|---|")
    for r in results:
        for row in r["rows"]:
            print(f"| {r['label']} | {row['streams']} | {row['aggregate_tps']:.1f} | {row['stream_decode_tps']:.1f} | "
                  f"{row['ttft_ms']:.0f} ms |")


def fresh_prompt(i):
    """The benchmark prompt behind a system message no earlier request had, so that
    nothing past its first few tokens is in any prefix cache (tensoras' or llama.cpp's):
    time to first token is then a whole prefill, not one token."""
    nonce = f"{time.time_ns() % 10**9:09d}-{i}"
    return {"messages": [{"role": "system", "content": f"Session {nonce}. Answer the user."},
                         {"role": "user", "content": PROMPT}]}


def cmd_chat(a):
    print(f"[{a.label}] warm-up request", flush=True)
    stream_once(a.url, a.model, a.key, a.max_tokens)
    fresh = []
    for i in range(a.reps):
        r = stream_once(a.url, a.model, a.key, 8, fresh_prompt(i))
        fresh.append(r)
        print(f"[{a.label}] fresh prompt {i + 1}: {r['prompt_tokens']} prompt tokens, TTFT {r['ttft_ms']:.1f} ms",
              flush=True)
    runs = []
    for i in range(a.reps):
        r = stream_once(a.url, a.model, a.key, a.max_tokens)
        runs.append(r)
        print(
            f"[{a.label}] run {i + 1}: {r['completion_tokens']} tokens ({r['token_count_source']}, "
            f"{r['content_chunks']} chunks, finish={r['finish_reason']}), TTFT {r['ttft_ms']:.1f} ms, "
            f"decode {r['decode_tps']:.1f} tok/s",
            flush=True,
        )
    out = {
        "kind": "chat",
        "label": a.label,
        "threads": a.threads,
        "decode_tps": statistics.median(r["decode_tps"] for r in runs),
        "ttft_ms": statistics.median(r["ttft_ms"] for r in runs),
        "fresh_ttft_ms": statistics.median(r["ttft_ms"] for r in fresh),
        "fresh_prompt_tokens": fresh[0]["prompt_tokens"],
        "completion_tokens": statistics.median(r["completion_tokens"] for r in runs),
        "prompt_tokens": runs[0]["prompt_tokens"],
        "token_count_source": runs[0]["token_count_source"],
        "finish_reason": runs[0]["finish_reason"],
        "runs": runs,
    }
    json.dump(out, open(a.out, "w"), indent=1)


# A long constrained answer: the grammar works on every token of the story string.
STORY_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "story": {"type": "string"}, "moral": {"type": "string"}},
    "required": ["title", "story", "moral"],
    "additionalProperties": False,
}
GRAMMAR_MODES = {
    "free text": None,
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "story", "schema": STORY_SCHEMA, "strict": True}}},
    "tool call (required)": {
        "tools": [{"type": "function", "function": {"name": "publish_story", "parameters": STORY_SCHEMA}}],
        "tool_choice": "required",
    },
}


def timed_request(url, model, key, max_tokens, extra):
    """One non-streamed request; (seconds, completion tokens, finish reason)."""
    body = chat_body(model, max_tokens, extra)
    conn = connect(url)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers(key))
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"{url}: HTTP {resp.status}: {data[:500]!r}")
    obj = json.loads(data)
    return elapsed, obj["usage"]["completion_tokens"], obj["choices"][0]["finish_reason"], obj["usage"]["prompt_tokens"]


def padded(extra, pad_words):
    """Free text with `pad_words` filler words in a system message: a prompt as long as a
    constrained mode's (tool descriptions and schemas lengthen it, and a longer context makes
    every decode step slower, which is not the grammar's doing)."""
    return {"messages": [{"role": "system", "content": " ".join(["word"] * pad_words)},
                         {"role": "user", "content": PROMPT}],
            # SmolLM2's <|endoftext|> and <|im_end|> banned, so that the baseline decodes
            # the full max_tokens whatever the filler does to the model.
            "logit_bias": {"0": -100, "2": -100}}


def cmd_grammar(a):
    """Time per generated token = (T(n tokens) - T(1 token)) / (n - 1) for each output mode:
    the difference cancels prefill, prompt length and the grammar engine's start-up, leaving
    what each decode step costs."""
    modes = dict(GRAMMAR_MODES)
    free_prompt = timed_request(a.url, a.model, a.key, 1, None)[3]
    for mode, extra in GRAMMAR_MODES.items():
        if extra:
            # Each constrained mode gets a free-text baseline with a prompt of its length.
            target = timed_request(a.url, a.model, a.key, 1, extra)[3]
            words = max(target - free_prompt - 5, 0)
            while timed_request(a.url, a.model, a.key, 1, padded(None, words))[3] < target:
                words += 1
            modes[f"free text, {target}-token prompt"] = padded(None, words)
    runs = {mode: [] for mode in modes}
    for mode, extra in modes.items():
        timed_request(a.url, a.model, a.key, a.max_tokens, extra)  # warm-up
    # Interleaved so that drift in machine load hits every mode alike.
    for i in range(a.reps):
        for mode, extra in modes.items():
            t1, _, _, prompt = timed_request(a.url, a.model, a.key, 1, extra)
            tn, n, finish, _ = timed_request(a.url, a.model, a.key, a.max_tokens, extra)
            r = {"t1_ms": t1 * 1e3, "tn_ms": tn * 1e3, "tokens": n, "finish_reason": finish, "prompt_tokens": prompt,
                 "ms_per_token": (tn - t1) * 1e3 / max(n - 1, 1)}
            runs[mode].append(r)
            print(
                f"[grammar] run {i + 1} {mode}: {n} tokens (finish={finish}), 1 token {r['t1_ms']:.0f} ms, "
                f"{r['ms_per_token']:.2f} ms per further token",
                flush=True,
            )
    out = {"kind": "grammar", "threads": a.threads, "modes": {}}
    for mode, rs in runs.items():
        out["modes"][mode] = {"ms_per_token": statistics.median(r["ms_per_token"] for r in rs),
                              "first_token_ms": statistics.median(r["t1_ms"] for r in rs),
                              "prompt_tokens": rs[0]["prompt_tokens"],
                              "tokens": statistics.median(r["tokens"] for r in rs), "runs": rs}
    print("| output | prompt tokens | ms per token | decode tokens/s | grammar cost per token (vs free text, same prompt length) | first token (prefill + set-up) | tokens |")
    print("|---|---|---|---|---|---|---|")
    for mode, m in out["modes"].items():
        share = "-"
        if GRAMMAR_MODES.get(mode):
            base = out["modes"][f"free text, {m['prompt_tokens']}-token prompt"]["ms_per_token"]
            cost = m["ms_per_token"] - base
            m["grammar_ms_per_token"] = cost
            share = f"{cost:+.2f} ms ({100 * cost / base:+.1f} % of a step)"
        print(f"| {mode} | {m['prompt_tokens']} | {m['ms_per_token']:.2f} | {1e3 / m['ms_per_token']:.1f} | {share} | "
              f"{m['first_token_ms']:.0f} ms | {m['tokens']:g} |")
    json.dump(out, open(a.out, "w"), indent=1)


def embed_passes(a, one_pass, **extra):
    """One warm-up pass, then a.reps timed passes; writes the median rate to a.out."""
    one_pass()
    rates = []
    for i in range(a.reps):
        t0 = time.perf_counter()
        n = one_pass()
        rates.append(n / (time.perf_counter() - t0))
        print(f"[{a.label}] pass {i + 1}: {n} embeddings, {rates[-1]:.1f}/s", flush=True)
    json.dump(
        {"kind": "embed", "label": a.label, "threads": a.threads, "per_s": statistics.median(rates),
         "sentences": a.sentences, "batch": a.batch, "rates": rates, **extra},
        open(a.out, "w"),
        indent=1,
    )


def cmd_embed_http(a):
    texts = sentences(a.sentences)
    def one_pass():
        n = 0
        for i in range(0, len(texts), a.batch):
            conn = connect(a.url)
            conn.request(
                "POST",
                "/v1/embeddings",
                body=json.dumps({"model": a.model, "input": texts[i : i + a.batch],
                                 "encoding_format": a.encoding_format}),
                headers=headers(a.key),
            )
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status != 200:
                raise SystemExit(f"embeddings: HTTP {resp.status}: {body[:300]!r}")
            n += len(json.loads(body)["data"])
        return n
    embed_passes(a, one_pass, encoding_format=a.encoding_format)


def cmd_embed_ort(a):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=256)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(os.path.join(a.model_dir, "model.onnx"), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    texts = sentences(a.sentences)

    def one_pass():
        n = 0
        for i in range(0, len(texts), a.batch):
            enc = tok.encode_batch(texts[i : i + a.batch])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in names:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = sess.run(["last_hidden_state"], feed)[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
            n += len(pooled)
        return n

    embed_passes(a, one_pass, onnxruntime=ort.__version__)


def bare_result(line):
    """The fields of a `RESULT bare k=v ...` line of `cargo bench --bench decode`."""
    return dict(kv.split("=", 1) for kv in line.split()[2:])


def cmd_ingest_bare(a):
    """Turns the `RESULT bare ...` lines of `cargo bench --bench decode` into JSON files."""
    for line in open(a.log):
        if not line.startswith("RESULT bare "):
            continue
        f = bare_result(line)
        threads = int(f["threads"])
        json.dump(
            {"kind": "chat", "label": "bare-ort (host, no WASM/HTTP; TTFT = prefill, no cache)", "threads": threads,
             "decode_tps": float(f["decode_tps"]), "ttft_ms": float(f["ttft_ms"]), "fresh_ttft_ms": float(f["ttft_ms"]),
             "completion_tokens": int(f["generated"]), "prompt_tokens": int(f["prompt_tokens"]),
             "finish_reason": "length" if int(f["generated"]) >= 128 else "stop"},
            open(os.path.join(a.dir, f"bare-{threads}.json"), "w"),
        )


def cmd_ratio(a):
    """Pairs wasm-i.json (measure.py chat) with bare-i.log (a RESULT line of the bare loop)."""
    ratios = []
    print("| pair | tensoras decode tok/s | bare loop decode tok/s | ratio |")
    print("|---|---|---|---|")
    i = 1
    while os.path.exists(os.path.join(a.dir, f"wasm-{i}.json")):
        wasm = json.load(open(os.path.join(a.dir, f"wasm-{i}.json")))["decode_tps"]
        bare = float(bare_result(open(os.path.join(a.dir, f"bare-{i}.log")).read())["decode_tps"])
        ratios.append(wasm / bare)
        print(f"| {i} | {wasm:.1f} | {bare:.1f} | {wasm / bare:.3f} |")
        i += 1
    if not ratios:
        sys.exit(f"no wasm-1.json in {a.dir}")
    print(f"\nmedian ratio {statistics.median(ratios):.3f} over {len(ratios)} pairs "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


def cmd_steps(a):
    """Where a lone stream's decode step goes, from the server's own scheduler trace
    (TENSORAS_LOG=tensoras::inference::decoder::scheduler=trace): ONNX Runtime's run (`decode run
    ... ort_us`) and the rest of the step period (the time between two consecutive
    `decode run` lines, less the second run): the handler's work between steps, the two
    thread hand-offs and the scheduler's own bookkeeping. Both come from the same steps,
    so their ratio does not move with the machine's speed the way two throughputs
    measured apart do."""
    import datetime
    import re
    runs, rests = [], []
    last = None
    for line in open(a.log, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        m = re.match(r"(\S+?)Z? .*decode run batch=1 .*ort_us=(\d+)", line)
        if not m:
            continue
        at = datetime.datetime.fromisoformat(m.group(1)).timestamp() * 1e6
        run = int(m.group(2))
        # Over 50 ms besides the run is the pause between two requests, not a step.
        if last is not None and 0 <= at - last - run < 50_000:
            runs.append(run)
            rests.append(at - last - run)
        last = at
    if not rests:
        sys.exit(f"no single-stream decode steps traced in {a.log}")
    run, rest = statistics.median(runs), statistics.median(rests)
    print(f"single-stream steps: {len(rests)}, median ORT run {run / 1000:.2f} ms, median rest of "
          f"the step {rest:.0f} us (mean {statistics.mean(rests):.0f}); ORT share of a step "
          f"{run / (run + rest):.3f}")


def cmd_versus(a):
    """Engines measured in turns: each round streams the benchmark request once to every
    engine, in an order that rotates from round to round, so all of them see the same
    minutes of this machine's drifting speed. Reports each engine's median and, for
    every engine but the last (the peer), the median of its per-round ratios to the
    last one."""
    engines = [{"label": e[0], "url": e[1], "model": e[2], "key": e[3] if len(e) > 3 else None} for e in a.engine]
    # --pad-words: a long context (filler system text), where the KV cache dominates a step.
    extra = padded(None, a.pad_words) if a.pad_words else None
    if len(engines) < 2:
        sys.exit("versus: give at least two --engine")
    for e in engines:
        print(f"[{e['label']}] warm-up request", flush=True)
        stream_once(e["url"], e["model"], e["key"], a.max_tokens, extra)
        e["runs"] = []
    for i in range(a.reps):
        k = i % len(engines)
        for e in engines[k:] + engines[:k]:
            r = stream_once(e["url"], e["model"], e["key"], a.max_tokens, extra)
            e["runs"].append(r)
            print(f"[round {i + 1}] {e['label']}: {r['completion_tokens']} tokens, TTFT {r['ttft_ms']:.1f} ms, "
                  f"decode {r['decode_tps']:.1f} tok/s", flush=True)
    peer = engines[-1]
    print(f"\n| engine | threads | decode tok/s (median of {a.reps}) | range | vs {peer['label']}: median ratio (range) |")
    print("|---|---|---|---|---|")
    for e in engines:
        tps = [r["decode_tps"] for r in e["runs"]]
        ratios = [x["decode_tps"] / y["decode_tps"] for x, y in zip(e["runs"], peer["runs"])]
        e["decode_tps"] = statistics.median(tps)
        e["ratio"] = statistics.median(ratios)
        vs = "-" if e is peer else f"{e['ratio']:.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"| {e['label']} | {a.threads} | {e['decode_tps']:.1f} | {min(tps):.1f}-{max(tps):.1f} | {vs} |")
    json.dump({"kind": "versus", "threads": a.threads, "engines": engines}, open(a.out, "w"), indent=1)


def cmd_table(a):
    results = results_in(a.dir)
    chat = [r for r in results if r["kind"] == "chat"]
    embed = [r for r in results if r["kind"] == "embed"]
    order = {"tensoras": 0, "bare-ort": 1, "llama.cpp": 2}
    chat.sort(key=lambda r: (order.get(r["label"].split(" ")[0], 9), r["threads"]))
    print("| engine | threads | decode tokens/s | TTFT, repeated prompt | TTFT, fresh prompt | tokens generated |")
    print("|---|---|---|---|---|---|")
    for r in chat:
        toks = r["completion_tokens"]
        note = f"{toks:g}" + ("" if toks >= 128 else f" (stopped: {r.get('finish_reason')})")
        fresh = f"{r['fresh_ttft_ms']:.1f} ms" if "fresh_ttft_ms" in r else "-"
        print(f"| {r['label']} | {r['threads']} | {r['decode_tps']:.1f} | {r['ttft_ms']:.1f} ms | {fresh} | {note} |")
    ratios = []
    for w in (r for r in chat if r["label"].startswith("tensoras")):
        for r in chat:
            if r["threads"] == w["threads"] and not r["label"].startswith("tensoras"):
                ratios.append(
                    f"threads={w['threads']}: tensoras / {r['label'].split(' ')[0]}: decode "
                    f"{w['decode_tps'] / r['decode_tps']:.2f}, TTFT {w['ttft_ms'] / r['ttft_ms']:.2f}x"
                    + (f", fresh-prompt TTFT {w['fresh_ttft_ms'] / r['fresh_ttft_ms']:.2f}x"
                       if "fresh_ttft_ms" in w and "fresh_ttft_ms" in r else "")
                )
    if ratios:
        print()
        print("\n".join(ratios))
    if embed:
        print()
        print("| embeddings | threads | sentences / batch | embeddings/s |")
        print("|---|---|---|---|")
        for r in embed:
            print(f"| {r['label']} | {r['threads']} | {r['sentences']} / {r['batch']} | {r['per_s']:.1f} |")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("chat")
    c.add_argument("url"); c.add_argument("model"); c.add_argument("out")
    c.add_argument("--key"); c.add_argument("--reps", type=int, default=5)
    c.add_argument("--max-tokens", type=int, default=128)
    c.add_argument("--label", default="chat"); c.add_argument("--threads", type=int, default=2)
    e = sub.add_parser("embed-http")
    e.add_argument("url"); e.add_argument("model"); e.add_argument("out")
    e.add_argument("--key"); e.add_argument("--sentences", type=int, default=256)
    e.add_argument("--batch", type=int, default=64); e.add_argument("--reps", type=int, default=3)
    e.add_argument("--label", default="embeddings"); e.add_argument("--threads", type=int, default=2)
    # float: JSON numbers; base64: what the official OpenAI SDKs ask for by default.
    e.add_argument("--encoding-format", choices=["float", "base64"], default="float")
    g = sub.add_parser("grammar")
    g.add_argument("url"); g.add_argument("model"); g.add_argument("out")
    g.add_argument("--key"); g.add_argument("--reps", type=int, default=5)
    g.add_argument("--max-tokens", type=int, default=128); g.add_argument("--threads", type=int, default=2)
    o = sub.add_parser("embed-ort")
    o.add_argument("model_dir"); o.add_argument("out")
    o.add_argument("--threads", type=int, default=2); o.add_argument("--sentences", type=int, default=256)
    o.add_argument("--batch", type=int, default=64); o.add_argument("--reps", type=int, default=3)
    o.add_argument("--label", default="onnxruntime-python")
    b = sub.add_parser("ingest-bare")
    b.add_argument("log"); b.add_argument("dir")
    q = sub.add_parser("ratio")
    q.add_argument("dir")
    t = sub.add_parser("table")
    t.add_argument("dir")
    st = sub.add_parser("steps")
    st.add_argument("log")
    k = sub.add_parser("concurrent")
    k.add_argument("url"); k.add_argument("model"); k.add_argument("out")
    k.add_argument("--key"); k.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    k.add_argument("--max-tokens", type=int, default=64); k.add_argument("--reps", type=int, default=3)
    k.add_argument("--label", default="concurrent"); k.add_argument("--threads", type=int, default=2)
    v = sub.add_parser("versus")
    v.add_argument("out")
    v.add_argument("--engine", nargs="+", action="append", required=True,
                   metavar="LABEL URL MODEL [KEY]", help="repeat; the last one is the peer")
    v.add_argument("--reps", type=int, default=9); v.add_argument("--max-tokens", type=int, default=128)
    v.add_argument("--threads", type=int, default=2)
    v.add_argument("--pad-words", type=int, default=0, help="filler words before the prompt")
    kt = sub.add_parser("concurrent-table")
    kt.add_argument("dir")
    a = p.parse_args()
    {"chat": cmd_chat, "embed-http": cmd_embed_http, "embed-ort": cmd_embed_ort,
     "grammar": cmd_grammar, "ingest-bare": cmd_ingest_bare, "table": cmd_table,
     "concurrent": cmd_concurrent, "concurrent-table": cmd_concurrent_table, "ratio": cmd_ratio,
     "steps": cmd_steps, "versus": cmd_versus}[a.cmd](a)


if __name__ == "__main__":
    main()
