#!/usr/bin/env python3
"""Convert a llama-architecture GGUF (e.g. SmolLM2-135M-Instruct Q4_1) into an ONNX decoder.

Output directory layout:
    model.onnx            opset 17 + com.microsoft contrib ops (ONNX Runtime)
    tokenizer.json        rebuilt from the GGUF vocab/merges with `tokenizers`
    chat_template.jinja   GGUF `tokenizer.chat_template`
    config.json           architecture facts + ONNX input/output names

Graph interface (standard decoder layout):
    inputs : input_ids int64 [batch, seq], attention_mask int64 [batch, past+seq],
             position_ids int64 [batch, seq] (= cumsum(mask)-1; negative values are clamped to 0),
             past_key_values.{i}.key/.value float32 [batch, n_kv_heads, past, head_dim]
    outputs: logits float32 [batch, 1, vocab] (last position only),
             present.{i}.key/.value float32 [batch, n_kv_heads, past+seq, head_dim]

Precision:
    q4   (default) Q4_1 blocks kept as com.microsoft MatMulNBits (bits=4, block_size=32).
         Q4_1 stores w = d*q + m, which is d*(q - 8) plus a per-block offset m + 8d:
         MatMulNBits subtracts its default zero point 8, and the offset term is applied
         exactly as (m + 8d) . blocksum(x) by a small fp32 MatMul, so the result equals the
         dequantized GGUF weights (no re-quantization). The tied Q8_0 embedding stays 8-bit
         blocks (GatherBlockQuantized, exact) and the LM head reads them as two exact 4-bit
         products, q = 16*hi + lo (--head split4, the default): the f32 table's logits from a
         quarter of its bytes. --head f32 keeps one dequantized fp32 table for both;
         --head q8 runs the 8-bit blocks with accuracy_level=4 (int8 activations), which
         changes the logits, so it is opt-in.
    fp32 everything dequantized to float32.

Activations (--activations): f32 (default) multiplies in float32, so the logits match the
dequantized GGUF weights to ~1e-4. int8 sets accuracy_level=4 on every MatMulNBits: each
row of activations is quantized to int8 per block of 32, the scheme llama.cpp uses for its
quantized dot products. Measured on SmolLM2-135M (ORT 1.32, 2 threads, AVX-512 VNNI):
decode step 26 -> 19.5 ms, 2 / 4 / 8-row steps 48 / 46 / 57 -> 19 / 26 / 38 ms, prompt
prefill unchanged; but the logits move by up to ~0.6 of their standard deviation, enough
to change a 135M model's greedy answers (it no longer says "Paris"), so it is opt-in.

Attention: com.microsoft GroupQueryAttention (default) or standard ops (--attention std);
RoPE: com.microsoft RotaryEmbedding with precomputed cos/sin tables gathered by position_ids;
RMSNorm: (Skip)SimplifiedLayerNormalization; SiLU: QuickGelu(alpha=1).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

try:
    import gguf
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx_graph import G
except ImportError as e:  # pragma: no cover
    sys.exit(f"gguf_to_onnx: missing Python package ({e}); "
             f"pip install -r {Path(__file__).with_name('requirements.txt')}")

OPSET = 17
MS = "com.microsoft"
QK = 32  # GGUF block size for Q4_0/Q4_1/Q8_0


# --------------------------------------------------------------------------------------------
# GGUF reading
# --------------------------------------------------------------------------------------------

def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


# Bytes of each scalar GGUF value type (gguf.GGUFValueType); 8 is a string, 9 an array.
_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def check_gguf_layout(path) -> None:
    """Walks the header, metadata and tensor infos of a GGUF file, checking every count and
    length against the bytes left, and every tensor's data against the file's end. The gguf
    package trusts them: an array count of 2^60 over a few bytes loops (nearly) forever,
    and a bad length surfaces as an IndexError deep inside it. Raises ValueError."""
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as d:
        size = len(d)
        at = 0

        def take(fmt):
            nonlocal at
            n = struct.calcsize(fmt)
            if at + n > size:
                raise ValueError(f"it ends inside its header (at byte {at})")
            v = struct.unpack_from(fmt, d, at)
            at += n
            return v if len(v) > 1 else v[0]

        def count(n, min_bytes, what):
            # Each of n items needs at least min_bytes: more than the file holds is a lie.
            if n * min_bytes > size - at:
                raise ValueError(f"{what} {n} at byte {at} does not fit in the file")
            return n

        def string():
            nonlocal at
            n = count(take("<Q"), 1, "string length")
            s = bytes(d[at:at + n])
            at += n
            return s

        def value(t, depth=0):
            nonlocal at
            if t in _GGUF_SCALAR:
                at += count(1, _GGUF_SCALAR[t], "value") * _GGUF_SCALAR[t]
            elif t == 8:
                string()
            elif t == 9 and depth == 0:
                item = take("<I")
                n = take("<Q")
                if item in _GGUF_SCALAR:
                    at += count(n, _GGUF_SCALAR[item], "array length") * _GGUF_SCALAR[item]
                elif item == 8:
                    for _ in range(count(n, 8, "array length")):
                        string()
                else:
                    raise ValueError(f"array of unsupported type {item} at byte {at}")
            else:
                raise ValueError(f"unknown value type {t} at byte {at}")

        if take("<I") != gguf.GGUF_MAGIC:
            raise ValueError("it does not start with the GGUF magic")
        version = take("<I")
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = take("<QQ")
        alignment = gguf.GGUF_DEFAULT_ALIGNMENT
        for _ in range(count(n_kv, 8 + 4 + 1, "metadata count")):
            key = string()
            t = take("<I")
            start = at
            value(t)
            if key == b"general.alignment" and t == 4:
                alignment = struct.unpack_from("<I", d, start)[0]
        if alignment == 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment {alignment} is not a power of two")
        tensors = []
        for _ in range(count(n_tensors, 8 + 4 + 4 + 8, "tensor count")):
            name = string()
            n_dims = take("<I")
            if n_dims > 4:
                raise ValueError(f"tensor {name!r} has {n_dims} dimensions (GGML has at most 4)")
            dims = [take("<Q") for _ in range(n_dims)]
            kind, offset = take("<IQ")
            tensors.append((name, dims, kind, offset))
        data_start = -(-at // alignment) * alignment
        for name, dims, kind, offset in tensors:
            try:
                block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
            except (ValueError, KeyError):
                raise ValueError(f"tensor {name!r} has unknown type {kind}") from None
            n = int(np.prod(dims, dtype=object)) if dims else 1
            if n % block or data_start + offset + n // block * type_size > size:
                raise ValueError(f"tensor {name!r} ({dims}, type {kind}) does not fit in the file")


class GGUFModel:
    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        # A damaged or hostile file fails here with one clear message rather than hanging
        # or raising from inside the gguf package or the metadata conversions below.
        try:
            check_gguf_layout(self.path)
            self._read(gguf.GGUFReader(self.path))
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, ZeroDivisionError) as e:
            raise SystemExit(f"gguf_to_onnx: {self.path} is not a usable GGUF file: {e}") from e

    def _read(self, r):
        self.reader = r
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise SystemExit(f"gguf_to_onnx: unsupported architecture {arch!r} (only 'llama')")
        a = "llama"
        self.n_layers = int(_field(r, f"{a}.block_count"))
        self.hidden = int(_field(r, f"{a}.embedding_length"))
        self.ffn = int(_field(r, f"{a}.feed_forward_length"))
        self.n_heads = int(_field(r, f"{a}.attention.head_count"))
        self.n_kv_heads = int(_field(r, f"{a}.attention.head_count_kv", self.n_heads))
        self.head_dim = self.hidden // self.n_heads
        rope_dim = _field(r, f"{a}.rope.dimension_count")
        if rope_dim is not None and int(rope_dim) != self.head_dim:
            raise SystemExit("gguf_to_onnx: partial rotary embeddings are not supported")
        self.rope_theta = float(_field(r, f"{a}.rope.freq_base", 10000.0))
        self.rms_eps = float(_field(r, f"{a}.attention.layer_norm_rms_epsilon", 1e-5))
        self.context_length = int(_field(r, f"{a}.context_length", 2048))
        if _field(r, f"{a}.rope.scaling.type") not in (None, "none"):
            raise SystemExit("gguf_to_onnx: rope scaling is not supported")
        self.tokens = list(_field(r, "tokenizer.ggml.tokens"))
        self.vocab = len(self.tokens)
        vs = _field(r, f"{a}.vocab_size")
        if vs is not None and int(vs) != self.vocab:
            raise SystemExit("gguf_to_onnx: vocab_size does not match the token list")
        self.token_types = list(_field(r, "tokenizer.ggml.token_type", [1] * self.vocab))
        self.merges = list(_field(r, "tokenizer.ggml.merges", []))
        self.tok_model = _field(r, "tokenizer.ggml.model")
        self.tok_pre = _field(r, "tokenizer.ggml.pre")
        self.bos_id = _field(r, "tokenizer.ggml.bos_token_id")
        self.eos_id = _field(r, "tokenizer.ggml.eos_token_id")
        self.pad_id = _field(r, "tokenizer.ggml.padding_token_id")
        self.unk_id = _field(r, "tokenizer.ggml.unknown_token_id")
        self.add_bos = bool(_field(r, "tokenizer.ggml.add_bos_token", False))
        self.chat_template = _field(r, "tokenizer.chat_template")
        self.name = _field(r, "general.name")
        self.tensors = {t.name: t for t in r.tensors}

    # -- raw access -------------------------------------------------------------------------
    def qtype(self, name):
        return self.tensors[name].tensor_type

    def dequant(self, name) -> np.ndarray:
        """float32 array in [out_features, in_features] (PyTorch) orientation."""
        t = self.tensors[name]
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def has_output_head(self):
        return "output.weight" in self.tensors

    # llama.cpp's convert script permutes the rows of Q and K so that rotary pairs are
    # interleaved; we use the HF (rotate_half) layout, so undo it.
    @staticmethod
    def unpermute_rows(a: np.ndarray, n_head: int) -> np.ndarray:
        rows = a.shape[0]
        rest = a.shape[1:]
        return (a.reshape(n_head, rows // n_head // 2, 2, *rest)
                 .swapaxes(1, 2).reshape(a.shape))

    def weight_rows(self, name, n_head_unpermute=None):
        """Return (kind, payload) for a 2D weight, rows = output features.

        kind 'q4_1': payload (q uint8 [N, nb, 32] values 0..15, d f32 [N, nb], m f32 [N, nb])
        kind 'q8_0': payload (q int8 [N, nb, 32], d f32 [N, nb])
        kind 'f32' : payload float32 [N, K]
        """
        t = self.tensors[name]
        tt = t.tensor_type
        Q = gguf.GGMLQuantizationType
        if tt == Q.Q4_1:
            raw = np.asarray(t.data, dtype=np.uint8)
            n = raw.shape[0]
            blocks = raw.reshape(n, -1, 20)
            d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
            m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
            qs = blocks[..., 4:20]
            q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # element j | element j+16
            if n_head_unpermute:
                q = self.unpermute_rows(q, n_head_unpermute)
                d = self.unpermute_rows(d, n_head_unpermute)
                m = self.unpermute_rows(m, n_head_unpermute)
            return "q4_1", (q, d, m)
        if tt == Q.Q8_0:
            raw = np.asarray(t.data, dtype=np.uint8)
            n = raw.shape[0]
            blocks = raw.reshape(n, -1, 34)
            d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
            q = blocks[..., 2:34].copy().view(np.int8)
            if n_head_unpermute:
                q = self.unpermute_rows(q, n_head_unpermute)
                d = self.unpermute_rows(d, n_head_unpermute)
            return "q8_0", (q, d)
        w = self.dequant(name)
        if n_head_unpermute:
            w = self.unpermute_rows(w, n_head_unpermute)
        return "f32", w


def dequant_payload(kind, payload) -> np.ndarray:
    if kind == "f32":
        return payload
    if kind == "q4_1":
        q, d, m = payload
        w = q.astype(np.float32) * d[..., None] + m[..., None]
    else:
        q, d = payload
        w = q.astype(np.float32) * d[..., None]
    return w.reshape(w.shape[0], -1)


def concat_payloads(parts):
    kinds = {k for k, _ in parts}
    if len(kinds) != 1:
        parts = [("f32", dequant_payload(k, p)) for k, p in parts]
        return "f32", np.concatenate([p for _, p in parts], axis=0)
    kind = kinds.pop()
    if kind == "f32":
        return kind, np.concatenate([p for _, p in parts], axis=0)
    n = len(parts[0][1])
    return kind, tuple(np.concatenate([p[i] for _, p in parts], axis=0) for i in range(n))


# --------------------------------------------------------------------------------------------
# Graph building helpers
# --------------------------------------------------------------------------------------------

def add_matmul(g: G, x: str, kind, payload, prefix: str, precision: str, xsum_cache: dict,
               k_in: int, **extra):
    """y = x @ W^T for W with rows = output features; returns output name."""
    if precision == "q4" and kind in ("q4_1", "q8_0"):
        if kind == "q4_1":
            q, d, m = payload
            n, nb, _ = q.shape
            packed = pack4(q)
            # w = d*q + m = d*(q - 8) + (m + 8d): with no zero-point input MatMulNBits
            # subtracts its default 8, and its kernel is ~10 % faster that way. m + 8d of
            # two f16 values is nearly always exact in f32; where it is not, keep explicit
            # zero points 0 so the weights stay the GGUF's to the bit.
            shifted = m + 8 * d
            if np.array_equal(shifted.astype(np.float64) - 8 * d.astype(np.float64), m.astype(np.float64)):
                zp, m = None, shifted
            else:
                zp = np.zeros((n, (nb + 1) // 2), dtype=np.uint8)
            bits = 4
        else:
            q, d = payload
            n, nb, _ = q.shape
            packed = (q.astype(np.int16) + 128).astype(np.uint8)  # [N, nb, 32]
            zp = np.full((n, nb), 128, dtype=np.uint8)
            m = None
            bits = 8
        if nb * QK != k_in:
            raise SystemExit(f"gguf_to_onnx: {prefix}: K={k_in} is not {nb} blocks of {QK}")
        b = g.init(f"{prefix}.qweight", packed)
        s = g.init(f"{prefix}.scales", d.reshape(-1).astype(np.float32))
        ins = [x, b, s] if zp is None else [x, b, s, g.init(f"{prefix}.zero_points", zp.reshape(-1))]
        y = g.op("MatMulNBits", ins, domain=MS, name=f"{prefix}.MatMulNBits",
                 K=k_in, N=n, bits=bits, block_size=QK, **extra)
        if m is not None and np.any(m != 0):
            # exact Q4_1 offset term: sum_b m[n,b] * sum_{k in block b} x[k]
            xs = xsum_cache.get(x)
            if xs is None:
                # block sums as one small MatMul with a 0/1 [K, nb] matrix
                xs = g.op("MatMul", [x, g.const(np.repeat(np.eye(nb, dtype=np.float32), QK, 0),
                                                np.float32)])
                xsum_cache[x] = xs
            mt = g.init(f"{prefix}.block_min_t", np.ascontiguousarray(m.T.astype(np.float32)))
            corr = g.op("MatMul", [xs, mt])
            y = g.op("Add", [y, corr])
        return y
    w = dequant_payload(kind, payload)
    wt = g.init(f"{prefix}.weight_t", np.ascontiguousarray(w.T.astype(np.float32)))
    return g.op("MatMul", [x, wt], name=f"{prefix}.MatMul")


def pack4(v: np.ndarray) -> np.ndarray:
    """[N, nb, 32] values 0..15 -> MatMulNBits' [N, nb, 16] bytes, low nibble first."""
    return (v[..., 0::2] | (v[..., 1::2] << 4)).astype(np.uint8)


def add_split_head(g: G, x: str, payload, prefix: str, k_in: int) -> str:
    """y = x @ W^T for Q8_0 blocks W = d*q, as two exact 4-bit products.

    q = 16*hi + lo with hi = q >> 4 in -8..7 and lo = q & 15 in 0..15, so
    W = (16d)*hi + d*lo and both terms are exact in f32 (d is an f16 value, hi and lo
    small integers): the same weights as the f32 table, read as 8 bits a weight instead
    of 32. ONNX Runtime's 4-bit kernel multiplies in f32; its 8-bit one is fast only
    with int8 activations, which would change the logits.
    """
    q, d = payload
    n, nb, _ = q.shape
    if nb * QK != k_in:
        raise SystemExit(f"gguf_to_onnx: {prefix}: K={k_in} is not {nb} blocks of {QK}")
    q16 = q.astype(np.int16)
    hi = g.op("MatMulNBits", [x, g.init(f"{prefix}.hi.qweight", pack4((q16 >> 4) + 8)),
                              g.init(f"{prefix}.hi.scales", (16 * d).reshape(-1).astype(np.float32))],
              domain=MS, name=f"{prefix}.hi.MatMulNBits", K=k_in, N=n, bits=4, block_size=QK)
    lo = g.op("MatMulNBits", [x, g.init(f"{prefix}.lo.qweight", pack4(q16 & 15)),
                              g.init(f"{prefix}.lo.scales", d.reshape(-1).astype(np.float32)),
                              g.init(f"{prefix}.lo.zero_points", np.zeros(n * ((nb + 1) // 2), np.uint8))],
              domain=MS, name=f"{prefix}.lo.MatMulNBits", K=k_in, N=n, bits=4, block_size=QK)
    return g.op("Add", [hi, lo], name=prefix)


def head_kind(m, precision: str, head: str) -> str:
    """The tied LM head a conversion builds: `head` where the embedding is Q8_0 blocks,
    else the f32 table."""
    if m.has_output_head() or precision != "q4" or head == "f32":
        return "f32"
    return head if m.qtype("token_embd.weight") == gguf.GGMLQuantizationType.Q8_0 else "f32"


def rope_tables(m: GGUFModel, max_pos: int):
    inv = 1.0 / (m.rope_theta ** (np.arange(0, m.head_dim, 2, dtype=np.float64) / m.head_dim))
    t = np.arange(max_pos, dtype=np.float64)
    f = np.outer(t, inv)
    return np.cos(f).astype(np.float32), np.sin(f).astype(np.float32)


def build_graph(m: GGUFModel, precision: str, max_pos: int | None = None,
                head: str = "split4", attention: str = "gqa", activations: str = "f32") -> onnx.ModelProto:
    g = G()
    # int8: MatMulNBits quantizes each row of activations to int8 per block of 32 (as
    # llama.cpp does for its Q4/Q8 dot products): faster, and several rows (batches,
    # prompts) no longer take the dequantize-then-GEMM path, but the logits move.
    acc = {"accuracy_level": 4} if activations == "int8" else {}
    H, NH, NKV, D, L = m.hidden, m.n_heads, m.n_kv_heads, m.head_dim, m.n_layers
    grp = NH // NKV
    max_pos = max_pos or m.context_length
    xsum_cache: dict = {}

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total_seq"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, m.vocab])]
    for i in range(L):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{kv}", TensorProto.FLOAT, ["batch", NKV, "past_seq", D]))
            outputs.append(helper.make_tensor_value_info(
                f"present.{i}.{kv}", TensorProto.FLOAT, ["batch", NKV, "total_seq", D]))

    # ---- embeddings --------------------------------------------------------------------
    ek, ep = m.weight_rows("token_embd.weight")
    emb_f32_name = None
    head = head_kind(m, precision, head)
    if head in ("q8", "split4"):
        # 8-bit blocks dequantized as they are gathered: (u - 128) * d is exact in f32
        q, d = ep
        data = (q.astype(np.int16) + 128).astype(np.uint8).reshape(m.vocab, H)
        gd = g.init("embed.qweight", data)
        gs = g.init("embed.scales", d.astype(np.float32))
        gz = g.init("embed.zero_points", np.full(d.shape, 128, dtype=np.uint8))
        x = g.op("GatherBlockQuantized", [gd, "input_ids", gs, gz], domain=MS,
                 name="embed.GatherBlockQuantized", bits=8, block_size=QK,
                 gather_axis=0, quantize_axis=1)
    else:
        emb = dequant_payload(ek, ep)
        emb_f32_name = g.init("embed.weight", emb)
        x = g.op("Gather", [emb_f32_name, "input_ids"], axis=0, name="embed.Gather")

    # ---- shapes, mask bias, rope --------------------------------------------------------
    ids_shape = g.op("Shape", ["input_ids"])
    S = g.op("Gather", [ids_shape, g.const(1)], axis=0)            # scalar
    T = g.op("Gather", [g.op("Shape", ["attention_mask"]), g.const(1)], axis=0)
    P = g.op("Sub", [T, S])
    rows = g.op("Range", [P, T, g.const(1)])                        # [S] absolute query pos
    cols = g.op("Range", [g.const(0), T, g.const(1)])               # [T]
    causal = g.op("LessOrEqual", [g.op("Unsqueeze", [cols, g.const([0])]),
                                  g.op("Unsqueeze", [rows, g.const([1])])])  # [S, T]
    padm = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], to=TensorProto.BOOL),
                              g.const([1])])                        # [B, 1, T]
    allowed = g.op("And", [causal, padm])                           # [B, S, T]
    bias = g.op("Where", [allowed, g.const(0.0, np.float32), g.const(-1e9, np.float32)])
    if attention == "gqa":
        bias4 = g.op("Unsqueeze", [bias, g.const([1])], name="attn_bias")  # [B,1,S,T]
        B = g.op("Gather", [ids_shape, g.const([0])], axis=0)            # [1]
        tm1 = g.op("Cast", [g.op("Sub", [T, g.const(1)])], to=TensorProto.INT32)
        seqlens_k = g.op("Expand", [tm1, B], name="seqlens_k")           # [B] int32
        total_len = g.op("Cast", [T], to=TensorProto.INT32, name="total_sequence_length")
    else:
        bias = g.op("Unsqueeze", [bias, g.const([1, 2])], name="attn_bias")  # [B,1,1,S,T]

    pos = g.op("Max", ["position_ids", g.const(0)], name="position_ids_clamped")
    cos, sin = rope_tables(m, max_pos)
    cos_c = g.init("rope.cos_cache", cos)
    sin_c = g.init("rope.sin_cache", sin)

    # ---- layers ------------------------------------------------------------------------
    resid = None          # running residual stream (sum)
    pending = x           # output to be added to the residual
    for i in range(L):
        p = f"layers.{i}"
        gamma = g.init(f"{p}.input_norm.weight", m.dequant(f"blk.{i}.attn_norm.weight"))
        if resid is None:
            h = g.op("SimplifiedLayerNormalization", [pending, gamma], name=f"{p}.input_norm",
                     axis=-1, epsilon=m.rms_eps)
            resid = pending
        else:
            h, _, _, resid = g.op("SkipSimplifiedLayerNormalization", [resid, pending, gamma],
                                  n_out=4, domain=MS, name=f"{p}.input_norm",
                                  epsilon=m.rms_eps)
        qkv = concat_payloads([
            m.weight_rows(f"blk.{i}.attn_q.weight", NH),
            m.weight_rows(f"blk.{i}.attn_k.weight", NKV),
            m.weight_rows(f"blk.{i}.attn_v.weight"),
        ])
        y = add_matmul(g, h, *qkv, f"{p}.qkv_proj", precision, xsum_cache, H, **acc)
        q, k, v = g.op("Split", [y, g.const([NH * D, NKV * D, NKV * D])], n_out=3, axis=-1)
        q = g.op("RotaryEmbedding", [q, pos, cos_c, sin_c], domain=MS, name=f"{p}.rope_q",
                 num_heads=NH, interleaved=0)
        k = g.op("RotaryEmbedding", [k, pos, cos_c, sin_c], domain=MS, name=f"{p}.rope_k",
                 num_heads=NKV, interleaved=0)
        if attention == "gqa":
            # com.microsoft GroupQueryAttention: concat past, GQA broadcast, causal mask and
            # the padding bias in one kernel. All rows are treated as full length T (left
            # padding is masked through attention_bias), so seqlens_k = T - 1 for every row.
            o, _, _ = g.op("GroupQueryAttention",
                           [q, k, v, f"past_key_values.{i}.key", f"past_key_values.{i}.value",
                            seqlens_k, total_len, "", "", "", bias4],
                           domain=MS, name=f"{p}.attn", n_out=3,
                           outputs=[f"{p}.attn_out", f"present.{i}.key", f"present.{i}.value"],
                           num_heads=NH, kv_num_heads=NKV, scale=float(1.0 / np.sqrt(D)),
                           do_rotary=0)
        else:
            # [B,S,NH*D] -> [B,NKV,grp,S,D]
            q = g.op("Transpose", [g.op("Reshape", [q, g.const([0, 0, NH, D])])], perm=[0, 2, 1, 3])
            q = g.op("Reshape", [q, g.const([0, NKV, grp, -1, D])])
            k = g.op("Transpose", [g.op("Reshape", [k, g.const([0, 0, NKV, D])])], perm=[0, 2, 1, 3])
            v = g.op("Transpose", [g.op("Reshape", [v, g.const([0, 0, NKV, D])])], perm=[0, 2, 1, 3])
            pk = g.op("Concat", [f"past_key_values.{i}.key", k], axis=2,
                      outputs=[f"present.{i}.key"], name=f"{p}.concat_k")
            pv = g.op("Concat", [f"past_key_values.{i}.value", v], axis=2,
                      outputs=[f"present.{i}.value"], name=f"{p}.concat_v")
            k5 = g.op("Unsqueeze", [pk, g.const([2])])                  # [B,NKV,1,T,D]
            v5 = g.op("Unsqueeze", [pv, g.const([2])])
            sc = g.op("FusedMatMul", [q, k5], domain=MS, name=f"{p}.qk", transB=1,
                      alpha=float(1.0 / np.sqrt(D)))                    # [B,NKV,grp,S,T]
            sc = g.op("Add", [sc, bias])
            pr = g.op("Softmax", [sc], axis=-1)
            o = g.op("MatMul", [pr, v5], name=f"{p}.pv")                # [B,NKV,grp,S,D]
            o = g.op("Reshape", [o, g.const([0, NH, -1, D])])
            o = g.op("Transpose", [o], perm=[0, 2, 1, 3])
            o = g.op("Reshape", [o, g.const([0, 0, NH * D])])
        ok, opl = m.weight_rows(f"blk.{i}.attn_output.weight")
        attn_out = add_matmul(g, o, ok, opl, f"{p}.o_proj", precision, xsum_cache, H, **acc)

        gamma2 = g.init(f"{p}.post_attention_norm.weight", m.dequant(f"blk.{i}.ffn_norm.weight"))
        h2, _, _, resid = g.op("SkipSimplifiedLayerNormalization", [resid, attn_out, gamma2],
                               n_out=4, domain=MS, name=f"{p}.post_attention_norm",
                               epsilon=m.rms_eps)
        gu = concat_payloads([m.weight_rows(f"blk.{i}.ffn_gate.weight"),
                              m.weight_rows(f"blk.{i}.ffn_up.weight")])
        y = add_matmul(g, h2, *gu, f"{p}.gate_up_proj", precision, xsum_cache, H, **acc)
        gate, up = g.op("Split", [y, g.const([m.ffn, m.ffn])], n_out=2, axis=-1)
        act = g.op("QuickGelu", [gate], domain=MS, alpha=1.0)       # x*sigmoid(x) = SiLU
        act = g.op("Mul", [act, up])
        dk, dpl = m.weight_rows(f"blk.{i}.ffn_down.weight")
        pending = add_matmul(g, act, dk, dpl, f"{p}.down_proj", precision, xsum_cache, m.ffn, **acc)

    # ---- final norm on the last position only, LM head ---------------------------------
    last = lambda t: g.op("Slice", [t, g.const([-1]), g.const([np.iinfo(np.int64).max]),
                                    g.const([1])])
    gamma = g.init("final_norm.weight", m.dequant("output_norm.weight"))
    hf, _, _, _ = g.op("SkipSimplifiedLayerNormalization", [last(resid), last(pending), gamma],
                       n_out=4, domain=MS, name="final_norm", epsilon=m.rms_eps)
    if m.has_output_head():
        hk, hp = m.weight_rows("output.weight")
        add_matmul(g, hf, hk, hp, "lm_head", precision, xsum_cache, H, **acc)
    elif emb_f32_name is not None:
        g.op("FusedMatMul", [hf, emb_f32_name], domain=MS, name="lm_head", transB=1,
             alpha=1.0)
    elif head == "split4":
        add_split_head(g, hf, ep, "lm_head", H)
    else:
        # only reached with head == "q8": MatMulNBits bits=8 is fast on CPU only with
        # accuracy_level=4 (int8 activations); opt-in, like --activations int8.
        add_matmul(g, hf, ek, ep, "lm_head", precision, xsum_cache, H, accuracy_level=4)
    # rename the head output to `logits`
    g.nodes[-1].output[0] = "logits"

    graph = helper.make_graph(g.nodes, "tensoras_llama_decoder", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(MS, 1)],
                              producer_name="tensoras-importer")
    model.ir_version = 8
    return model


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

def build_tokenizer(m: GGUFModel):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    if m.tok_model != "gpt2":
        raise SystemExit(f"gguf_to_onnx: tokenizer model {m.tok_model!r} not supported (gpt2 BPE only)")
    vocab = {t: i for i, t in enumerate(m.tokens)}
    merges = [tuple(x.split(" ", 1)) for x in m.merges]
    bpe = models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if m.tok_pre in ("smollm", "starcoder", "refact"):
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), bl])
    elif m.tok_pre in (None, "default", "gpt-2", "gpt2"):
        tok.pre_tokenizer = bl
    else:
        raise SystemExit(f"gguf_to_onnx: pre-tokenizer {m.tok_pre!r} not supported")
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    special = [AddedToken(t, special=True, normalized=False)
               for t, ty in zip(m.tokens, m.token_types) if int(ty) == 3]
    tok.add_special_tokens(special)
    return tok


# --------------------------------------------------------------------------------------------

def io_names(m: GGUFModel):
    ins = ["input_ids", "attention_mask", "position_ids"]
    outs = ["logits"]
    for i in range(m.n_layers):
        ins += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        outs += [f"present.{i}.key", f"present.{i}.value"]
    return ins, outs


def convert(gguf_path, out_dir, precision="q4", attention="gqa", head="split4", activations="f32",
            quiet=False):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = GGUFModel(gguf_path)
    model = build_graph(m, precision, head=head, attention=attention, activations=activations)
    onnx_path = out / "model.onnx"
    tmp = out / "model.onnx.tmp"
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > 1_900_000_000:  # protobuf's 2 GB limit: weights go to model.onnx.data
        onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx.data", size_threshold=1024)
    else:
        onnx.save_model(model, str(tmp))
    os.replace(tmp, onnx_path)

    tok = build_tokenizer(m)
    tok.save(str(out / "tokenizer.json"))
    if m.chat_template:
        (out / "chat_template.jinja").write_text(m.chat_template)
    ins, outs = io_names(m)
    eos_tok = m.tokens[m.eos_id] if m.eos_id is not None else None
    cfg = {
        "model_type": "llama",
        "kind": "chat",
        "name": m.name,
        "source": {"format": "gguf", "file": Path(gguf_path).name},
        "precision": precision,
        "attention": attention,
        "lm_head": head_kind(m, precision, head),
        "activations": activations,
        "n_layers": m.n_layers,
        "n_heads": m.n_heads,
        "n_kv_heads": m.n_kv_heads,
        "head_dim": m.head_dim,
        "hidden_size": m.hidden,
        "intermediate_size": m.ffn,
        "vocab_size": m.vocab,
        "rope_theta": m.rope_theta,
        "rms_norm_eps": m.rms_eps,
        "context_length": m.context_length,
        "bos_token_id": m.bos_id,
        "eos_token_id": m.eos_id,
        "eos_token": eos_tok,
        "pad_token_id": m.pad_id,
        "add_bos_token": m.add_bos,
        "stop_token_ids": sorted({x for x in (m.eos_id,) if x is not None}),
        "chat_template": "chat_template.jinja" if m.chat_template else None,
        "tokenizer": "tokenizer.json",
        "onnx": {
            "file": "model.onnx",
            "opset": OPSET,
            "domains": ["", MS],
            "inputs": ins,
            "outputs": outs,
            "logits": "last_position_only",
            "logits_shape": ["batch", 1, m.vocab],
            "kv_shape": ["batch", m.n_kv_heads, "seq", m.head_dim],
            "kv_dtype": "float32",
            "position_ids": "cumsum(attention_mask) - 1 (negative values clamped to 0)",
            "padding": "left",
        },
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if not quiet:
        print(f"gguf_to_onnx: wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB, {precision})")
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="llama-architecture .gguf file")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--precision", choices=["q4", "fp32"], default="q4",
                    help="q4: keep Q4_1 blocks as MatMulNBits (default); fp32: dequantize all")
    ap.add_argument("--attention", choices=["gqa", "std"], default="gqa",
                    help="gqa: com.microsoft GroupQueryAttention (default, fastest); "
                         "std: MatMul/Softmax attention from standard ops")
    ap.add_argument("--head", choices=["split4", "f32", "q8"], default="split4",
                    help="tied Q8_0 embedding / LM head: split4 (default): the 8-bit blocks as "
                         "two exact 4-bit products (same logits as f32, a quarter of the bytes); "
                         "f32: one dequantized fp32 table; q8: 8-bit blocks with int8 "
                         "activations (accuracy_level=4: faster, logits change)")
    ap.add_argument("--activations", choices=["f32", "int8"], default="f32",
                    help="f32: exact products with the GGUF weights (default); int8: MatMulNBits "
                         "accuracy_level=4, activations quantized to int8 per block of 32 as "
                         "llama.cpp does (decode ~25%% faster on AVX-512 VNNI, batched rows much "
                         "cheaper; logits change, so greedy answers of a small model can change)")
    a = ap.parse_args(argv)
    if not Path(a.gguf).is_file():
        sys.exit(f"gguf_to_onnx: no such file: {a.gguf}")
    if a.activations == "int8" and a.precision != "q4":
        sys.exit("gguf_to_onnx: --activations int8 needs --precision q4 (it applies to MatMulNBits)")
    convert(a.gguf, a.out, a.precision, attention=a.attention, head=a.head, activations=a.activations)


if __name__ == "__main__":
    main()
