#!/usr/bin/env python3
"""Writes a tiny real decoder whose graph accepts only --positions positions, like a model
with a learned position table (GPT-2's): the position ids index a table of that many rows,
so a run at a later position fails inside ONNX Runtime (Gather: index out of bounds).
Its logits always favour --token by far, so a greedy generation never stops on its own.
Run with the importer's Python (onnx, numpy); used by tests/e2e/test_faults.py."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models" / "importer"))
from tiny_decoder import D, decoder_model  # noqa: E402


def build(positions: int, vocab: int, token: int) -> onnx.ModelProto:
    w = np.zeros((D, vocab), np.float32)
    w[:, token] = 100.0
    nodes = [
        helper.make_node("Gather", ["pos_table", "position_ids"], ["x"]),
        helper.make_node("Unsqueeze", ["x", "axis1"], ["kv"]),
        helper.make_node("Concat", ["past_key_values.0.key", "kv"], ["present.0.key"], axis=2),
        helper.make_node("Concat", ["past_key_values.0.value", "kv"], ["present.0.value"], axis=2),
        helper.make_node("ReduceSum", ["x", "axis1"], ["ctx"], keepdims=1),
        helper.make_node("MatMul", ["ctx", "w"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(np.ones((positions, D), np.float32), "pos_table"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    return decoder_model("positions_decoder", vocab, nodes, inits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--positions", type=int, required=True)
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--token", type=int, required=True)
    ap.add_argument("--eos", type=int, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(build(args.positions, args.vocab, args.token), args.out / "model.onnx")
    # The config claims far more context than the graph has: what a converter that got the
    # position table's size wrong would write.
    config = {"n_layers": 1, "n_kv_heads": 1, "head_dim": D, "vocab_size": args.vocab,
              "context_length": 4096, "eos_token_ids": [args.eos]}
    (args.out / "config.json").write_text(json.dumps(config))


if __name__ == "__main__":
    main()
