"""Driver of benches/languages.sh: the same tool (`wordcount`) written in Rust, Python and
JavaScript, each deployed to a fresh server and called. For each language: the component's
size, the deploy (compile; then again with the compile cache warm), the first call after
the deploy, and the p50/p90 of later calls (each a fresh instance from the pooling
allocator)."""

import argparse
import json
import statistics
import time
from pathlib import Path

import requests

FUNCTIONS = Path(__file__).resolve().parents[1] / "build" / "functions"
LANGUAGES = {"rust": "wordcount", "python": "wordcount-py", "js": "wordcount-js"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("key")
    ap.add_argument("out")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {args.key}"

    def deploy(name, wasm):
        t = time.perf_counter()
        r = s.post(args.url + "/v1/functions", files={
            "file": (f"{wasm}.wasm", (FUNCTIONS / f"{wasm}.wasm").read_bytes()),
            "manifest": (None, json.dumps({"name": name, "kind": "tool"})),
        })
        r.raise_for_status()
        return (time.perf_counter() - t) * 1000

    def call(name):
        t = time.perf_counter()
        r = s.post(args.url + f"/v1/functions/{name}/call", json={"text": "one two three\nfour five"})
        r.raise_for_status()
        assert json.loads(r.json()["output"])["words"] == 5, r.text
        return (time.perf_counter() - t) * 1000

    results = {}
    for lang, wasm in LANGUAGES.items():
        deploy_ms = deploy(lang, wasm)
        first_ms = call(lang)
        s.delete(args.url + f"/v1/functions/{lang}").raise_for_status()
        cached_deploy_ms = deploy(lang, wasm)
        cached_first_ms = call(lang)
        for _ in range(10):
            call(lang)
        warm = sorted(call(lang) for _ in range(args.reps))
        results[lang] = {
            "component_bytes": (FUNCTIONS / f"{wasm}.wasm").stat().st_size,
            "deploy_ms": round(deploy_ms, 1),
            "first_call_ms": round(first_ms, 2),
            "deploy_cached_ms": round(cached_deploy_ms, 1),
            "first_call_after_cached_deploy_ms": round(cached_first_ms, 2),
            "call_ms_p50": round(statistics.median(warm), 3),
            "call_ms_p90": round(warm[int(len(warm) * 0.9)], 3),
            "reps": args.reps,
        }
    Path(args.out).write_text(json.dumps(results, indent=2))
    print("| language | component | deploy (compile) | first call | deploy, cache warm | first call | call p50 | call p90 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for lang, r in results.items():
        print(
            f"| {lang} | {r['component_bytes'] / 1e6:.1f} MB | {r['deploy_ms']:.0f} ms | {r['first_call_ms']:.1f} ms "
            f"| {r['deploy_cached_ms']:.0f} ms | {r['first_call_after_cached_deploy_ms']:.1f} ms "
            f"| {r['call_ms_p50']:.2f} ms | {r['call_ms_p90']:.2f} ms |"
        )


if __name__ == "__main__":
    main()
