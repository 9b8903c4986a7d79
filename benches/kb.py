#!/usr/bin/env python3
"""Measurement client for benches/kb.sh: knowledge-base ingestion and retrieval (stdlib only).

Subcommands:

  ingest URL STATE.json --key KEY --chunks N
      Creates a knowledge base, uploads generated Markdown documents through POST /v1/files,
      attaches each as a data source as soon as it is uploaded, and polls the data sources
      until all are completed. Ingestion chunks/s = chunks stored / (first upload -> last
      source completed): upload, parse, chunk, embed (the KB's model through the embeddings
      handler) and upsert, end to end. The first document is attached alone to learn how
      many chunks a document makes; then enough documents follow to reach N chunks.
  embed URL OUT.json --key KEY [--texts 256] [--batch 64]
      POST /v1/embeddings with texts like the documents' chunks, 64 per request (the
      ingestion batch): the model's pace through the same handler, without parsing,
      chunking or the vector store, to compare ingestion chunks/s with.
  wait-index LOG --since-bytes N [--timeout S]
      Waits until every background index build the server logged (after byte N of its log)
      has finished, i.e. the vector store has indexed what was ingested.
  retrieve URL STATE.json OUT.json --key KEY [--queries 200] [--top-k 10] [--label L]
      POST /v1/knowledge-bases/{id}/retrieve for vector, keyword and hybrid search, each
      with its own distinct query texts, one at a time after a warm-up; p50/p99 latency
      measured at the client (query embedding included for vector and hybrid).
  table OUT.json...
      Prints the results as a Markdown table.

Documents are deterministic (seeded): sentences over a vocabulary of common words plus
invented names, so keyword queries are selective and every chunk text is distinct.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid

from measure import connect, headers

TIMEOUT_S = 120
PARAGRAPHS_PER_DOC = 200

COMMON = (
    "river stone bridge market harvest lantern village mountain forest winter summer baker "
    "engine signal harbor tower garden letter archive council festival journey storm valley "
    "copper silver timber grain salt wool glass paper ink clock road canal mill orchard field "
    "keeper merchant sailor teacher farmer weaver miner painter doctor judge captain scholar "
    "built repaired sold carried painted measured recorded opened closed crossed planted "
    "found lost traded guarded studied mapped counted burned flooded restored moved "
    "old new quiet busy narrow wide northern southern eastern western early late bright dark "
    "the a of in on by with from near under over after before during and but while because"
).split()


def invented_names(rng, n):
    """n distinct pronounceable words that no tokenizer splits into common words."""
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "st", "th", "dr"]
    vowels = ["a", "e", "i", "o", "u", "ae", "ou"]
    names = set()
    while len(names) < n:
        names.add("".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 3))) + rng.choice(["n", "r", "x", "l", ""]))
    return sorted(names)


NAMES = invented_names(random.Random(5), 20000)


def sentence(rng):
    words = [rng.choice(COMMON) for _ in range(rng.randint(9, 14))]
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words)), rng.choice(NAMES).capitalize())
    return " ".join(words).capitalize() + "."


def paragraph(rng):
    """~650 characters (at most ~780): one chunk each under the default 800-character chunking."""
    return " ".join(sentence(rng) for _ in range(7))


def document(i):
    rng = random.Random(1000 + i)
    body = "\n\n".join(paragraph(rng) for _ in range(PARAGRAPHS_PER_DOC))
    return f"# Chronicle {i}\n\n{body}\n".encode()


def request(url, key, method, path, body=None, content_type="application/json"):
    conn = connect(url)
    h = headers(key)
    h["Content-Type"] = content_type
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status >= 300:
        raise SystemExit(f"{method} {path}: HTTP {resp.status}: {data[:500]!r}")
    return json.loads(data)


def api(url, key, method, path, obj=None):
    return request(url, key, method, "/v1" + path, None if obj is None else json.dumps(obj))


def upload(url, key, name, content):
    boundary = uuid.uuid4().hex
    parts = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        f"Content-Type: text/markdown\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return request(url, key, "POST", "/v1/files", parts, f"multipart/form-data; boundary={boundary}")["id"]


def add_document(url, key, kb, i):
    content = document(i)
    file_id = upload(url, key, f"chronicle-{i}.md", content)
    api(url, key, "POST", f"/knowledge-bases/{kb}/data-sources", {"file_id": file_id})
    return len(content)


def sources(url, key, kb):
    return api(url, key, "GET", f"/knowledge-bases/{kb}/data-sources")["data"]


def cmd_ingest(a):
    kb = api(a.url, a.key, "POST", "/knowledge-bases", {"name": "bench", "embedding_model": a.model})
    kb_id, chunking = kb["id"], kb.get("chunking_strategy")
    t0 = time.perf_counter()
    sent = add_document(a.url, a.key, kb_id, 0)
    while (per_doc := sources(a.url, a.key, kb_id)[0].get("chunks_total")) is None:
        time.sleep(0.1)
    docs = max(1, -(-a.chunks // per_doc))
    print(f"{per_doc} chunks per document -> {docs} documents for {a.chunks} chunks", flush=True)
    for i in range(1, docs):
        sent += add_document(a.url, a.key, kb_id, i)
    uploaded = time.perf_counter() - t0
    print(f"uploaded and attached {docs} documents ({sent / 1e6:.1f} MB) in {uploaded:.1f} s", flush=True)
    last_print, last_done = t0, 0
    while True:
        srcs = sources(a.url, a.key, kb_id)
        failed = [s for s in srcs if s["status"] == "failed"]
        if failed:
            raise SystemExit(f"ingestion failed: {failed[0]}")
        done = sum(s.get("chunks_done") or 0 for s in srcs)
        now = time.perf_counter()
        if all(s["status"] == "completed" for s in srcs):
            break
        if now - last_print >= a.progress_s:
            print(f"  {time.strftime('%H:%M:%S')} {done}/{docs * per_doc} chunks, "
                  f"{done / (now - t0):.1f}/s overall, {(done - last_done) / (now - last_print):.1f}/s last "
                  f"{now - last_print:.0f} s, load {os.getloadavg()[0]:.2f}", flush=True)
            last_print, last_done = now, done
        time.sleep(1)
    secs = time.perf_counter() - t0
    total = sum(s["chunks_total"] for s in srcs)
    stored = api(a.url, a.key, "GET", f"/knowledge-bases/{kb_id}").get("chunk_count")
    docs = len(srcs)  # data sources deleted meanwhile are not counted
    print(f"ingested {total} chunks from {docs} documents in {secs:.1f} s: {total / secs:.1f} chunks/s", flush=True)
    json.dump(
        {"kb_id": kb_id, "key": a.key, "chunks": total, "stored": stored, "documents": docs,
         "bytes": sent, "chunking": chunking, "seconds": secs, "chunks_per_s": total / secs},
        open(a.state, "w"), indent=1,
    )


def cmd_embed(a):
    """The model's own pace on these chunk texts, for comparison with ingestion."""
    rng = random.Random(7)
    texts = [paragraph(rng) for _ in range(a.texts)]
    def one_pass():
        for i in range(0, len(texts), a.batch):
            api(a.url, a.key, "POST", "/embeddings", {"model": a.model, "input": texts[i : i + a.batch]})
    one_pass()  # warm-up
    t = time.perf_counter()
    one_pass()
    rate = len(texts) / (time.perf_counter() - t)
    print(f"POST /v1/embeddings alone, same kind of chunk texts, {a.batch} per request: {rate:.1f} chunks/s", flush=True)
    json.dump({"embeddings_per_s": rate, "texts": a.texts, "batch": a.batch}, open(a.out, "w"), indent=1)


def index_events(log, since):
    with open(log, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return text.count("optimizing vector segments"), text.count("vector segments optimized")


def cmd_wait_index(a):
    t0 = time.perf_counter()
    time.sleep(2)  # the build starts right after the last source completes
    while True:
        started, finished = index_events(a.log, a.since_bytes)
        if started and started == finished:
            print(f"index built ({finished} background run(s)); waited {time.perf_counter() - t0:.1f} s", flush=True)
            return
        if time.perf_counter() - t0 > a.timeout:
            raise SystemExit(f"no finished index build in the server log after {a.timeout} s")
        time.sleep(1)


def queries(kind, n, seed):
    """n distinct query texts: keyword queries name two invented words (selective, like
    searching for a name), vector and hybrid ones are sentences in the documents' style."""
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        if kind == "keyword":
            out.add(f"{rng.choice(NAMES)} {rng.choice(NAMES)}")
        else:
            out.add(sentence(rng))
    return sorted(out)


def percentile(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, -(-len(s) * p // 100) - 1))]


def cmd_retrieve(a):
    state = json.load(open(a.state))
    kb_id = state["kb_id"]
    results = []
    for seed, kind in enumerate(("vector", "keyword", "hybrid")):
        texts = queries(kind, a.queries + a.warmup, seed)
        rng = random.Random(seed)
        rng.shuffle(texts)
        lat, hits, chars = [], [], []
        for i, q in enumerate(texts):
            t = time.perf_counter()
            data = api(a.url, a.key, "POST", f"/knowledge-bases/{kb_id}/retrieve",
                       {"query": q, "top_k": a.top_k, "search_type": kind})["data"]
            ms = (time.perf_counter() - t) * 1e3
            if i >= a.warmup:
                lat.append(ms)
                hits.append(len(data))
                chars.extend(len(c["text"]) for c in data)
        r = {"label": a.label, "search_type": kind, "queries": len(lat), "top_k": a.top_k,
             "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "mean_ms": statistics.mean(lat),
             "mean_hits": statistics.mean(hits), "mean_chunk_chars": statistics.mean(chars) if chars else None,
             "chunks": state["chunks"]}
        print(f"[{a.label}] {kind}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, mean {r['mean_ms']:.1f} ms, "
              f"{r['mean_hits']:.1f} hits/query over {len(lat)} queries (hits average {r['mean_chunk_chars'] or 0:.0f} characters)",
              flush=True)
        results.append(r)
    json.dump({"ingest": {k: v for k, v in state.items() if k != "key"}, "retrieve": results}, open(a.out, "w"), indent=1)


def cmd_table(a):
    for path in a.files:
        res = json.load(open(path))
        ing = res["ingest"]
        print(f"{path}: {ing['chunks']} chunks ({ing['documents']} documents, chunking {ing['chunking']}), "
              f"ingestion {ing['chunks_per_s']:.1f} chunks/s over {ing['seconds']:.0f} s")
        print("| run | search | p50 | p99 | mean | queries |\n|---|---|---|---|---|---|")
        for r in res["retrieve"]:
            print(f"| {r['label']} | {r['search_type']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
                  f"{r['mean_ms']:.1f} ms | {r['queries']} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("ingest")
    i.add_argument("url"); i.add_argument("state")
    i.add_argument("--key", required=True); i.add_argument("--chunks", type=int, required=True)
    i.add_argument("--model", default="all-minilm-l6-v2"); i.add_argument("--progress-s", type=float, default=30)
    e = sub.add_parser("embed")
    e.add_argument("url"); e.add_argument("out"); e.add_argument("--key", required=True)
    e.add_argument("--model", default="all-minilm-l6-v2"); e.add_argument("--texts", type=int, default=256)
    e.add_argument("--batch", type=int, default=64)
    w = sub.add_parser("wait-index")
    w.add_argument("log"); w.add_argument("--since-bytes", type=int, default=0)
    w.add_argument("--timeout", type=float, default=3600)
    r = sub.add_parser("retrieve")
    r.add_argument("url"); r.add_argument("state"); r.add_argument("out")
    r.add_argument("--key", required=True); r.add_argument("--queries", type=int, default=200)
    r.add_argument("--warmup", type=int, default=10); r.add_argument("--top-k", type=int, default=10)
    r.add_argument("--label", default="tensoras")
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    a = p.parse_args()
    {"ingest": cmd_ingest, "embed": cmd_embed, "wait-index": cmd_wait_index, "retrieve": cmd_retrieve, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
