"""Driver of benches/ai_functions.sh: deploys ai-probe and times model calls made over HTTP
against the same calls made from the function, interleaved in pairs so that drift in the
machine's load affects both sides alike."""

import argparse
import json
import statistics
import time
from pathlib import Path

import requests

FUNCTIONS = Path(__file__).resolve().parents[1] / "build" / "functions"
CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("key")
    ap.add_argument("out")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {args.key}"
    manifest = {"name": "probe", "kind": "tool", "grants": {"models": [CHAT, EMBED]}, "limits": {"timeout_ms": 60000}}
    r = s.post(args.url + "/v1/functions", files={
        "file": ("ai-probe.wasm", (FUNCTIONS / "ai-probe.wasm").read_bytes()),
        "manifest": (None, json.dumps(manifest)),
    })
    r.raise_for_status()
    chat = {"model": CHAT, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1, "temperature": 0}
    cases = {
        "chat (1 token)": (
            lambda: s.post(args.url + "/v1/chat/completions", json=chat),
            lambda: s.post(args.url + "/v1/functions/probe/call", json={"op": "chat", "request": chat}),
        ),
        "embeddings (1 text)": (
            lambda: s.post(args.url + "/v1/embeddings", json={"model": EMBED, "input": ["a cat sat on the mat"]}),
            lambda: s.post(args.url + "/v1/functions/probe/call",
                           json={"op": "embed", "model": EMBED, "input": ["a cat sat on the mat"]}),
        ),
    }
    results = {}
    for name, (http, function) in cases.items():
        for _ in range(10):  # warm-up: compiled code, caches, connections
            http().raise_for_status()
            function().raise_for_status()
        times = {"http": [], "function": []}
        for _ in range(args.reps):
            for side, send in (("http", http), ("function", function)):
                t = time.perf_counter()
                send().raise_for_status()
                times[side].append((time.perf_counter() - t) * 1000)
        med = {side: statistics.median(v) for side, v in times.items()}
        diffs = [f - h for h, f in zip(times["http"], times["function"])]
        results[name] = {
            "http_ms_p50": round(med["http"], 3),
            "function_ms_p50": round(med["function"], 3),
            "added_ms_p50_of_pairs": round(statistics.median(diffs), 3),
            "reps": args.reps,
        }
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"| call | over HTTP, p50 | from a function, p50 | added (p50 of pairs) |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['http_ms_p50']:.2f} ms | {r['function_ms_p50']:.2f} ms | {r['added_ms_p50_of_pairs']:.2f} ms |")


if __name__ == "__main__":
    main()
