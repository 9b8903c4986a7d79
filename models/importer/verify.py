#!/usr/bin/env python3
"""Run an imported model with ONNX Runtime (Python) and check that it works.

chat model  : renders the chat template, greedy-decodes "What is the capital of France?"
              (asserts "Paris"), checks that a left-padded batch of 2 decodes the same tokens
              as the two single runs, and prints prefill/decode speed for 128 greedy tokens at
              1 and 2 intra-op threads.
embeddings  : mean-pool + L2 normalise; asserts cos(cat, kitten) > cos(cat, stock market) + 0.2.

Exit status is non-zero when a check fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

BENCH_PROMPT = "Write a long story about a dragon who learns to bake bread."


def session(model_dir: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_dir / "model.onnx"), so,
                                providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------
# chat
# --------------------------------------------------------------------------------------------

class Decoder:
    def __init__(self, model_dir: Path, threads: int = 2):
        self.dir = model_dir
        self.cfg = json.loads((model_dir / "config.json").read_text())
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.sess = session(model_dir, threads)
        self.out_names = [o.name for o in self.sess.get_outputs()]
        self.L = self.cfg["n_layers"]
        self.kvh = self.cfg["n_kv_heads"]
        self.hd = self.cfg["head_dim"]
        self.eos = set(self.cfg.get("stop_token_ids") or [self.cfg["eos_token_id"]])

    def render(self, messages) -> str:
        import jinja2
        tpl = (self.dir / self.cfg["chat_template"]).read_text()
        env = jinja2.Environment(loader=jinja2.BaseLoader(), keep_trailing_newline=True)
        return env.from_string(tpl).render(messages=messages, add_generation_prompt=True,
                                           bos_token="", eos_token=self.cfg.get("eos_token", ""))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def empty_past(self, batch: int):
        z = np.zeros((batch, self.kvh, 0, self.hd), dtype=np.float32)
        return [z] * (2 * self.L)

    def step(self, ids, mask, pos, past):
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        for i in range(self.L):
            feed[f"past_key_values.{i}.key"] = past[2 * i]
            feed[f"past_key_values.{i}.value"] = past[2 * i + 1]
        out = self.sess.run(None, feed)
        return out[0], out[1:]

    def generate(self, prompts: list[list[int]], max_new: int, stop_at_eos=True, timing=None):
        """Greedy decoding of a left-padded batch. Returns generated ids per prompt."""
        B = len(prompts)
        S = max(len(p) for p in prompts)
        pad = self.cfg.get("pad_token_id") or 0
        ids = np.array([[pad] * (S - len(p)) + p for p in prompts], dtype=np.int64)
        mask = np.array([[0] * (S - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
        pos = np.cumsum(mask, axis=1) - 1
        t0 = time.perf_counter()
        logits, past = self.step(ids, mask, pos, self.empty_past(B))
        t1 = time.perf_counter()
        out = [[] for _ in range(B)]
        done = [False] * B
        nxt = logits[:, -1, :].argmax(-1)
        for step in range(max_new):
            for b in range(B):
                if not done[b]:
                    out[b].append(int(nxt[b]))
                    if stop_at_eos and int(nxt[b]) in self.eos:
                        done[b] = True
            if all(done) or step == max_new - 1:
                break
            mask = np.concatenate([mask, np.ones((B, 1), np.int64)], axis=1)
            pos = (mask.sum(axis=1, keepdims=True) - 1).astype(np.int64)
            logits, past = self.step(nxt[:, None].astype(np.int64), mask, pos, past)
            nxt = logits[:, -1, :].argmax(-1)
        t2 = time.perf_counter()
        if timing is not None:
            timing.update(prefill_s=t1 - t0, prompt_tokens=S, decode_s=t2 - t1,
                          decode_steps=len(out[0]) - 1)
        return out

    def decode(self, ids):
        return self.tok.decode([i for i in ids if i not in self.eos], skip_special_tokens=True)


def verify_chat(model_dir: Path, bench=True, threads_list=(1, 2), bench_tokens=128):
    dec = Decoder(model_dir, threads=2)
    q = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = dec.render(q)
    ids = dec.encode(prompt)
    gen = dec.generate([ids], 30)[0]
    text = dec.decode(gen)
    print(f"chat: {text!r}")
    if "Paris" not in text:
        raise AssertionError(f"expected 'Paris' in the answer, got {text!r}")

    p2 = dec.encode(dec.render([{"role": "user", "content":
                                 "List three colours of the rainbow, please."}]))
    single = [dec.generate([ids], 20)[0], dec.generate([p2], 20)[0]]
    batch = dec.generate([ids, p2], 20)
    print(f"batch: prompt lengths {len(ids)} and {len(p2)} (left-padded), "
          f"same tokens as single runs: {batch == single}")
    if batch != single:
        raise AssertionError(f"batched decode differs:\n single={single}\n batch={batch}")

    results = {"answer": text, "batch_ok": True, "bench": {}}
    if bench:
        bids = dec.encode(dec.render([{"role": "user", "content": BENCH_PROMPT}]))
        for th in threads_list:
            d = Decoder(model_dir, threads=th)
            d.generate([bids], 8, stop_at_eos=False)  # warm-up
            best = None
            for _ in range(2):
                t = {}
                d.generate([bids], bench_tokens, stop_at_eos=False, timing=t)
                if best is None or t["decode_s"] < best["decode_s"]:
                    best = t
            pre = best["prompt_tokens"] / best["prefill_s"]
            dts = best["decode_steps"] / best["decode_s"]
            print(f"bench threads={th}: prompt {best['prompt_tokens']} tokens, prefill "
                  f"{pre:.0f} tok/s (TTFT {best['prefill_s'] * 1e3:.1f} ms), decode "
                  f"{dts:.1f} tok/s over {best['decode_steps']} steps")
            results["bench"][th] = {"prefill_tok_s": pre, "ttft_ms": best["prefill_s"] * 1e3,
                                    "decode_tok_s": dts}
    return results


# --------------------------------------------------------------------------------------------
# embeddings
# --------------------------------------------------------------------------------------------

def embed(model_dir: Path, texts: list[str], threads=2) -> np.ndarray:
    cfg = json.loads((model_dir / "config.json").read_text())
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_padding(pad_id=cfg.get("pad_token_id", 0), pad_token=cfg.get("pad_token", "[PAD]"))
    tok.enable_truncation(cfg["max_length"])
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    types = np.array([e.type_ids for e in enc], dtype=np.int64)
    sess = session(model_dir, threads)
    (h,) = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                            "token_type_ids": types})
    m = mask[..., None].astype(np.float32)
    v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    if cfg.get("normalize", True):
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return v


def verify_embeddings(model_dir: Path):
    texts = ["cat", "kitten", "stock market"]
    v = embed(model_dir, texts)
    ck, cs = float(v[0] @ v[1]), float(v[0] @ v[2])
    print(f"embeddings: dim {v.shape[1]}, cos(cat, kitten) = {ck:.3f}, "
          f"cos(cat, stock market) = {cs:.3f}")
    if not ck > cs + 0.2:
        raise AssertionError("embedding similarity check failed")
    return {"cos_cat_kitten": ck, "cos_cat_stock": cs}


def main(argv=None):
    ap = argparse.ArgumentParser(description="verify an imported ONNX model")
    ap.add_argument("--model", required=True, help="model directory (with config.json)")
    ap.add_argument("--no-bench", action="store_true", help="skip the speed measurement")
    ap.add_argument("--threads", default="1,2", help="thread counts to benchmark (default 1,2)")
    ap.add_argument("--bench-tokens", type=int, default=128)
    a = ap.parse_args(argv)
    d = Path(a.model)
    if not (d / "config.json").is_file():
        sys.exit(f"verify: {d}/config.json not found")
    kind = json.loads((d / "config.json").read_text()).get("kind")
    try:
        if kind == "chat":
            verify_chat(d, bench=not a.no_bench,
                        threads_list=[int(x) for x in a.threads.split(",") if x],
                        bench_tokens=a.bench_tokens)
        elif kind in ("embedding", "embeddings"):
            verify_embeddings(d)
        else:
            sys.exit(f"verify: unknown model kind {kind!r}")
    except AssertionError as e:
        sys.exit(f"verify: FAILED: {e}")
    print("verify: OK")


if __name__ == "__main__":
    main()
