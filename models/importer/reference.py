"""Plain-numpy reference forward passes used to check the exported graphs.

llama_logits: HF-semantics llama forward (rotate_half RoPE, GQA, RMSNorm, SiLU MLP) on the
dequantized GGUF weights, written independently of the ONNX graph builder (it does not use the
builder's Q4_1 decomposition; it dequantizes with the `gguf` package).
bert_last_hidden_state: BERT encoder forward on the safetensors weights.
"""
from __future__ import annotations

import numpy as np


def _rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def llama_logits(gguf_path: str, ids: list[int]) -> np.ndarray:
    """Logits [seq, vocab] for one unpadded sequence."""
    import gguf

    r = gguf.GGUFReader(gguf_path)
    f = {k: v.contents() for k, v in r.fields.items()
         if k.startswith("llama.")}
    L = int(f["llama.block_count"])
    H = int(f["llama.embedding_length"])
    NH = int(f["llama.attention.head_count"])
    NKV = int(f["llama.attention.head_count_kv"])
    D = H // NH
    eps = float(f["llama.attention.layer_norm_rms_epsilon"])
    theta = float(f["llama.rope.freq_base"])
    T = {t.name: t for t in r.tensors}

    def W(name):
        t = T[name]
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)

    def unperm(w, n):
        return w.reshape(n, w.shape[0] // n // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)

    emb = W("token_embd.weight")
    head = W("output.weight") if "output.weight" in T else emb
    S = len(ids)
    x = emb[np.asarray(ids)]
    inv = 1.0 / theta ** (np.arange(0, D, 2) / D)
    ang = np.outer(np.arange(S), inv)
    cos = np.concatenate([np.cos(ang)] * 2, -1).astype(np.float32)
    sin = np.concatenate([np.sin(ang)] * 2, -1).astype(np.float32)

    def rope(t):  # [n, S, D]
        t1, t2 = t[..., : D // 2], t[..., D // 2:]
        return t * cos + np.concatenate([-t2, t1], -1) * sin

    causal = np.triu(np.full((S, S), -np.inf, dtype=np.float32), 1)
    for i in range(L):
        h = _rms(x, W(f"blk.{i}.attn_norm.weight"), eps)
        q = h @ unperm(W(f"blk.{i}.attn_q.weight"), NH).T
        k = h @ unperm(W(f"blk.{i}.attn_k.weight"), NKV).T
        v = h @ W(f"blk.{i}.attn_v.weight").T
        q = rope(q.reshape(S, NH, D).transpose(1, 0, 2))
        k = rope(k.reshape(S, NKV, D).transpose(1, 0, 2))
        v = v.reshape(S, NKV, D).transpose(1, 0, 2)
        k = np.repeat(k, NH // NKV, axis=0)
        v = np.repeat(v, NH // NKV, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(D) + causal
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(S, H)
        x = x + o @ W(f"blk.{i}.attn_output.weight").T
        h = _rms(x, W(f"blk.{i}.ffn_norm.weight"), eps)
        g = h @ W(f"blk.{i}.ffn_gate.weight").T
        u = h @ W(f"blk.{i}.ffn_up.weight").T
        x = x + (g / (1 + np.exp(-g)) * u) @ W(f"blk.{i}.ffn_down.weight").T
    x = _rms(x, W("output_norm.weight"), eps)
    return x @ head.T


def bert_last_hidden_state(weights: dict, cfg: dict, ids, mask, types) -> np.ndarray:
    from math import erf, sqrt

    ids, mask, types = (np.asarray(a) for a in (ids, mask, types))
    B, S = ids.shape
    H = cfg["hidden_size"]
    NH = cfg["num_attention_heads"]
    D = H // NH
    eps = cfg.get("layer_norm_eps", 1e-12)
    w = {k.removeprefix("bert."): v for k, v in weights.items()}

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    verf = np.vectorize(erf)
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][np.arange(S)][None]
         + w["embeddings.token_type_embeddings.weight"][types])
    x = ln(x, "embeddings.LayerNorm")
    bias = ((1.0 - mask[:, None, None, :]) * -1e9).astype(np.float32)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = lin(x, p + ".attention.self.query").reshape(B, S, NH, D).transpose(0, 2, 1, 3)
        k = lin(x, p + ".attention.self.key").reshape(B, S, NH, D).transpose(0, 2, 1, 3)
        v = lin(x, p + ".attention.self.value").reshape(B, S, NH, D).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
        x = ln(x + lin(o, p + ".attention.output.dense"), p + ".attention.output.LayerNorm")
        h = lin(x, p + ".intermediate.dense")
        h = 0.5 * h * (1.0 + verf(h / sqrt(2.0)))
        x = ln(x + lin(h, p + ".output.dense"), p + ".output.LayerNorm")
    return x.astype(np.float32)
