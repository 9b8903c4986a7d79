#!/usr/bin/env python3
"""Downloads a pre-exported ONNX model repository from the Hugging Face hub (optimum /
onnx-community layout) into a Tensoras model folder: model.onnx, tokenizer.json,
chat_template.jinja (chat models) and a config.json with the facts the host needs.

Needs network access to the hub; where there is none it fails with a clear message.
Standard library only, so it runs with any python3."""

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

HUB = "https://huggingface.co"


def fetch(repo: str, path: str, dest: Path | None = None) -> bytes | bool | None:
    """The file's bytes, or with `dest` True once written there; None/False on 404."""
    url = f"{HUB}/{repo}/resolve/main/{path}"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            total = int(resp.headers.get("content-length") or 0)
            chunks, done = [], 0
            out = dest.open("wb") if dest else None
            while chunk := resp.read(1 << 20):
                done += len(chunk)
                if out:
                    out.write(chunk)
                else:
                    chunks.append(chunk)
                if total and dest:
                    print(f"\r{path}: {done * 100 // total:3d}% of {total >> 20} MiB", end="", file=sys.stderr)
            if out:
                out.close()
                print(file=sys.stderr)
            return True if dest else b"".join(chunks)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False if dest else None
        raise SystemExit(f"pull: {url}: HTTP {e.code}")
    except urllib.error.URLError as e:
        raise SystemExit(f"pull: cannot reach {HUB} ({e.reason}); this machine may have no access to the hub. "
                         "Use `tensoras models import` with a local GGUF or safetensors file instead.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hf = json.loads(fetch(args.repo, "config.json") or b"{}")
    if not hf:
        raise SystemExit(f"pull: {args.repo} has no config.json")
    if not any(fetch(args.repo, c, args.out / "model.onnx") for c in ("onnx/model.onnx", "model.onnx")):
        raise SystemExit(f"pull: {args.repo} has no onnx/model.onnx")
    data = fetch(args.repo, "onnx/model.onnx_data")
    if data:
        (args.out / "model.onnx_data").write_bytes(data)
    tok = fetch(args.repo, "tokenizer.json")
    if not tok:
        raise SystemExit(f"pull: {args.repo} has no tokenizer.json")
    (args.out / "tokenizer.json").write_bytes(tok)
    tcfg = json.loads(fetch(args.repo, "tokenizer_config.json") or b"{}")
    heads = hf.get("num_attention_heads", 0)
    config = {
        "model_type": hf.get("model_type"),
        "n_layers": hf.get("num_hidden_layers", 0),
        "n_heads": heads,
        "n_kv_heads": hf.get("num_key_value_heads", heads),
        "head_dim": hf.get("head_dim") or (hf.get("hidden_size", 0) // heads if heads else 0),
        "hidden_size": hf.get("hidden_size", 0),
        "vocab_size": hf.get("vocab_size", 0),
        "context_length": hf.get("max_position_embeddings"),
        "stop_token_ids": [hf["eos_token_id"]] if isinstance(hf.get("eos_token_id"), int) else hf.get("eos_token_id", []),
    }
    if tcfg.get("chat_template"):
        (args.out / "chat_template.jinja").write_text(tcfg["chat_template"])
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"pulled {args.repo} into {args.out}")


if __name__ == "__main__":
    main()
