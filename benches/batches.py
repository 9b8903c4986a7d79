#!/usr/bin/env python3
"""Interactive requests during a batch job (issue #22): time to first token of streamed chat
requests on an idle server, then the same requests while a large batch runs, and what the
batch did meanwhile (stdlib only; driven by benches/batches.sh).

  batches.py URL MODEL OUT.json --key KEY [--requests N] [--lines N] [--max-tokens N]
             [--label TEXT]

Each interactive request has a prompt no earlier request had (measure.fresh_prompt), so its
TTFT is a whole prefill in both phases. The batch's lines have distinct prompts too. The
batch must still be running when the last busy request ends (else the run says so and
fails): the busy phase is measured against a full batch only."""

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402


def call(url, key, method, path, body=None, content_type="application/json"):
    conn = measure.connect(url)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"{method} {path}: HTTP {resp.status}: {data[:300]!r}")
    return json.loads(data)


def upload_batch(url, key, model, lines, max_tokens):
    rows = []
    for i in range(lines):
        prompt = f"Story {i}: " + " ".join(measure.sentences(1 + i % 3))
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                "temperature": 0, "logit_bias": {"0": -100, "2": -100}}  # EOS banned: every line max_tokens
        rows.append(json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
    boundary = uuid.uuid4().hex
    payload = "\n".join(rows).encode()
    form = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.jsonl\"\r\n"
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return call(url, key, "POST", "/v1/files", form, f"multipart/form-data; boundary={boundary}")["id"]


def ttfts(url, model, key, n, max_tokens, tag):
    out = []
    for i in range(n):
        r = measure.stream_once(url, model, key, max_tokens, measure.fresh_prompt(i))
        out.append(r["ttft_ms"])
        print(f"  {tag} {i + 1}: TTFT {r['ttft_ms']:.0f} ms ({r['prompt_tokens']} prompt tokens)", flush=True)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url"), p.add_argument("model"), p.add_argument("out")
    p.add_argument("--key", required=True)
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--lines", type=int, default=400)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--label", default="tensoras")
    a = p.parse_args()

    measure.stream_once(a.url, a.model, a.key, 8, measure.fresh_prompt(-1))  # warm-up
    idle = ttfts(a.url, a.model, a.key, a.requests, 16, "idle")

    file_id = upload_batch(a.url, a.key, a.model, a.lines, a.max_tokens)
    batch = call(a.url, a.key, "POST", "/v1/batches", json.dumps(
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
    t0 = time.time()
    while True:  # the decoder full of batch lines before the busy phase starts
        b = call(a.url, a.key, "GET", f"/v1/batches/{batch['id']}")
        if b["status"] == "in_progress" and b["request_counts"]["completed"] >= 1:
            break
        if time.time() - t0 > 300 or b["status"] not in ("validating", "in_progress"):
            raise SystemExit(f"batch did not start: {b}")
        time.sleep(0.2)
    started, done_before = time.time(), b["request_counts"]["completed"]
    busy = ttfts(a.url, a.model, a.key, a.requests, 16, "during batch")
    b = call(a.url, a.key, "GET", f"/v1/batches/{batch['id']}")
    elapsed = time.time() - started
    if b["status"] != "in_progress":
        raise SystemExit(f"the batch ended before the busy phase did ({b['status']}): use more --lines")
    lines_done = b["request_counts"]["completed"] - done_before
    call(a.url, a.key, "POST", f"/v1/batches/{batch['id']}/cancel", b"{}")

    result = {
        "label": a.label,
        "idle_ttft_ms": statistics.median(idle),
        "busy_ttft_ms": statistics.median(busy),
        "ratio": statistics.median(busy) / statistics.median(idle),
        "batch_lines_per_s": lines_done / elapsed,
        "batch_tokens_per_s": lines_done * a.max_tokens / elapsed,
        "requests": a.requests,
    }
    print(f"RESULT [{a.label}] TTFT idle {result['idle_ttft_ms']:.0f} ms, during the batch "
          f"{result['busy_ttft_ms']:.0f} ms ({result['ratio']:.2f}x); the batch meanwhile "
          f"{result['batch_lines_per_s']:.2f} lines/s, {result['batch_tokens_per_s']:.0f} tokens/s", flush=True)
    Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
