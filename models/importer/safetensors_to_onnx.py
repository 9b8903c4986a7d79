#!/usr/bin/env python3
"""Convert a BERT-family sentence-transformer (safetensors + tokenizer.json) into ONNX.

Output directory:
    model.onnx      opset 17, standard ONNX ops only
                    inputs  input_ids, attention_mask, token_type_ids  int64 [batch, seq]
                    output  last_hidden_state float32 [batch, seq, hidden]
                    (pooling and normalisation are left to the caller)
    tokenizer.json  the model's tokenizer, with truncation set to the sentence-transformers
                    max_seq_length and padding set to the longest sequence of a batch
    config.json     hidden size, max length, pooling, normalize, ONNX names
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx_graph import G
    from safetensors.numpy import load_file
except ImportError as e:  # pragma: no cover
    sys.exit(f"safetensors_to_onnx: missing Python package ({e}); "
             f"pip install -r {Path(__file__).with_name('requirements.txt')}")

OPSET = 17

# all-MiniLM-L6-v2, used when the model directory carries no config.json
KNOWN_DEFAULTS = {
    "model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6,
    "num_attention_heads": 12, "intermediate_size": 1536, "vocab_size": 30522,
    "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
    "hidden_act": "gelu", "pad_token_id": 0,
}


def read_json(p: Path, default=None):
    return json.loads(p.read_text()) if p.is_file() else default


def load_config(model_dir: Path):
    cfg = read_json(model_dir / "config.json")
    if cfg is None:
        print("safetensors_to_onnx: no config.json, using all-MiniLM-L6-v2 values", file=sys.stderr)
        cfg = dict(KNOWN_DEFAULTS)
    if cfg.get("model_type", "bert") not in ("bert",):
        raise SystemExit(f"safetensors_to_onnx: model_type {cfg.get('model_type')!r} not supported")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise SystemExit(f"safetensors_to_onnx: hidden_act {cfg.get('hidden_act')!r} not supported")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise SystemExit("safetensors_to_onnx: only absolute position embeddings are supported")
    st = read_json(model_dir / "sentence_bert_config.json", {})
    pool = read_json(model_dir / "1_Pooling" / "config.json", {})
    modules = read_json(model_dir / "modules.json", [])
    pooling = "mean"
    if pool.get("pooling_mode_cls_token"):
        pooling = "cls"
    elif pool.get("pooling_mode_max_tokens"):
        pooling = "max"
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules) if modules else True
    max_len = int(st.get("max_seq_length") or min(512, cfg.get("max_position_embeddings", 512)))
    return cfg, {"pooling": pooling, "normalize": normalize, "max_length": max_len}


def build_graph(w: dict, cfg: dict) -> onnx.ModelProto:
    w = {k.removeprefix("bert."): v.astype(np.float32) if v.dtype != np.int64 else v
         for k, v in w.items()}
    H = cfg["hidden_size"]
    NH = cfg["num_attention_heads"]
    D = H // NH
    L = cfg["num_hidden_layers"]
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    g = G()

    def ln(x, p):
        return g.op("LayerNormalization", [x, g.init(p + ".weight", w[p + ".weight"]),
                                           g.init(p + ".bias", w[p + ".bias"])],
                    axis=-1, epsilon=eps, name=p)

    def lin(x, p, wt=None, b=None):
        wt = w[p + ".weight"].T if wt is None else wt
        b = w[p + ".bias"] if b is None else b
        y = g.op("MatMul", [x, g.init(p + ".weight_t", np.asarray(wt, np.float32))],
                 name=p + ".MatMul")
        return g.op("Add", [y, g.init(p + ".bias", np.asarray(b, np.float32))],
                    name=p + ".BiasAdd")

    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
           for n in ("input_ids", "attention_mask", "token_type_ids")]
    outs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                          ["batch", "seq", H])]

    # positions 0..S-1 as a Slice of the position table (a Gather(Range) pattern here trips
    # ONNX Runtime's EmbedLayerNormalization fusion into an invalid Slice)
    S1 = g.op("Shape", ["input_ids"], start=1, end=2)                       # [1] = [S]
    x = g.op("Gather", [g.init("embeddings.word_embeddings.weight",
                               w["embeddings.word_embeddings.weight"]), "input_ids"], axis=0)
    x = g.op("Add", [x, g.op("Slice", [g.init("embeddings.position_embeddings.weight",
                                              w["embeddings.position_embeddings.weight"]),
                                       g.const([0]), S1, g.const([0])])])
    x = g.op("Add", [x, g.op("Gather", [g.init("embeddings.token_type_embeddings.weight",
                                               w["embeddings.token_type_embeddings.weight"]),
                                        "token_type_ids"], axis=0)])
    x = ln(x, "embeddings.LayerNorm")

    maskb = g.op("Cast", ["attention_mask"], to=TensorProto.BOOL)
    bias = g.op("Where", [maskb, g.const(0.0, np.float32), g.const(-1e9, np.float32)])
    bias = g.op("Unsqueeze", [bias, g.const([1, 2])], name="attn_bias")  # [B,1,1,S]

    scale = np.float32(1.0 / np.sqrt(D))
    for i in range(L):
        p = f"encoder.layer.{i}"
        a = p + ".attention.self"
        wqkv = np.concatenate([w[a + ".query.weight"] * scale, w[a + ".key.weight"],
                               w[a + ".value.weight"]], axis=0).T
        bqkv = np.concatenate([w[a + ".query.bias"] * scale, w[a + ".key.bias"],
                               w[a + ".value.bias"]])
        qkv = lin(x, a + ".qkv", wqkv, bqkv)
        q, k, v = g.op("Split", [qkv, g.const([H, H, H])], n_out=3, axis=-1)
        shp = g.const([0, 0, NH, D])
        q = g.op("Transpose", [g.op("Reshape", [q, shp])], perm=[0, 2, 1, 3])   # B,N,S,D
        k = g.op("Transpose", [g.op("Reshape", [k, shp])], perm=[0, 2, 3, 1])   # B,N,D,S
        v = g.op("Transpose", [g.op("Reshape", [v, shp])], perm=[0, 2, 1, 3])   # B,N,S,D
        s = g.op("Add", [g.op("MatMul", [q, k]), bias])
        s = g.op("Softmax", [s], axis=-1)
        o = g.op("MatMul", [s, v])
        o = g.op("Reshape", [g.op("Transpose", [o], perm=[0, 2, 1, 3]), g.const([0, 0, H])])
        o = lin(o, p + ".attention.output.dense")
        x = ln(g.op("Add", [o, x]), p + ".attention.output.LayerNorm")
        h = lin(x, p + ".intermediate.dense")
        # exact GELU: 0.5 * h * (1 + erf(h / sqrt(2)))
        e = g.op("Erf", [g.op("Div", [h, g.const(np.sqrt(2.0), np.float32)])])
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [e, g.const(1.0, np.float32)])]),
                         g.const(0.5, np.float32)])
        h = lin(h, p + ".output.dense")
        x = ln(g.op("Add", [h, x]), p + ".output.LayerNorm")
    g.nodes[-1].output[0] = "last_hidden_state"
    graph = helper.make_graph(g.nodes, "tensoras_bert_encoder", ins, outs, g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="tensoras-importer")
    m.ir_version = 8
    return m


def convert(model_dir, out_dir, name=None, quiet=False):
    src = Path(model_dir)
    out = Path(out_dir)
    st_path = src / "model.safetensors"
    tok_path = src / "tokenizer.json"
    for p in (st_path, tok_path):
        if not p.is_file():
            raise SystemExit(f"safetensors_to_onnx: missing {p}")
    cfg, st = load_config(src)
    out.mkdir(parents=True, exist_ok=True)
    model = build_graph(load_file(str(st_path)), cfg)
    tmp = out / "model.onnx.tmp"
    onnx.save_model(model, str(tmp))
    os.replace(tmp, out / "model.onnx")

    tok = json.loads(tok_path.read_text())
    tok["truncation"] = {"direction": "Right", "max_length": st["max_length"],
                         "strategy": "LongestFirst", "stride": 0}
    pad_tok = read_json(src / "special_tokens_map.json", {}).get("pad_token", "[PAD]")
    if isinstance(pad_tok, dict):
        pad_tok = pad_tok.get("content", "[PAD]")
    pad_id = int(cfg.get("pad_token_id", 0))
    tok["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                      "pad_id": pad_id, "pad_type_id": 0, "pad_token": pad_tok}
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))

    conf = {
        "model_type": cfg.get("model_type", "bert"),
        "kind": "embedding",
        "name": name or (src.name if src.name != "model" else src.parent.name),
        "source": {"format": "safetensors", "file": "model.safetensors"},
        "hidden_size": cfg["hidden_size"],
        "dimensions": cfg["hidden_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "intermediate_size": cfg["intermediate_size"],
        "vocab_size": cfg["vocab_size"],
        "max_position_embeddings": cfg.get("max_position_embeddings", 512),
        "max_length": st["max_length"],
        "layer_norm_eps": cfg.get("layer_norm_eps", 1e-12),
        "pooling": st["pooling"],
        "normalize": st["normalize"],
        "pad_token_id": pad_id,
        "pad_token": pad_tok,
        "tokenizer": "tokenizer.json",
        "onnx": {
            "file": "model.onnx",
            "opset": OPSET,
            "domains": [""],
            "inputs": ["input_ids", "attention_mask", "token_type_ids"],
            "outputs": ["last_hidden_state"],
            "last_hidden_state_shape": ["batch", "seq", cfg["hidden_size"]],
        },
    }
    (out / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
    if not quiet:
        size = (out / "model.onnx").stat().st_size / 1e6
        print(f"safetensors_to_onnx: wrote {out / 'model.onnx'} ({size:.1f} MB)")
    return conf


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True,
                    help="directory with model.safetensors and tokenizer.json (+ config.json)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--name", help="model name for config.json")
    a = ap.parse_args(argv)
    convert(a.model_dir, a.out, name=a.name)


if __name__ == "__main__":
    main()
