#!/usr/bin/env python3
"""Writes a tiny decoder in the standard layout for backend tests: vocab 16, one layer,
one KV head of width 4. Its logits are a readable function of the whole KV cache:
logits[0] = sum of all token ids seen so far, logits[1] = how many tokens were seen,
so a test can tell the cache really carries over between steps. The batch dimension is
free and zero-filled (left) padding adds nothing to either sum, so a batched run must
give every row exactly the figures of its own sequence."""

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

V, D = 16, 4


def decoder_model(name: str, vocab: int, nodes: list, inits: list) -> onnx.ModelProto:
    """A one-layer decoder in the standard I/O layout (one KV head of width D) around the
    given nodes, which must compute `logits`, `present.0.key` and `present.0.value`."""
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["b", "s"]),
        helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, ["b", 1, "p", D]),
        helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT, ["b", 1, "p", D]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 1, vocab]),
        helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT, ["b", 1, "t", D]),
        helper.make_tensor_value_info("present.0.value", TensorProto.FLOAT, ["b", 1, "t", D]),
    ]
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build() -> onnx.ModelProto:
    emb = np.zeros((V, D), np.float32)
    emb[:, 0] = np.arange(V)
    emb[:, 1] = 1.0
    w = np.zeros((D, V), np.float32)
    w[0, 0] = 1.0
    w[1, 1] = 1.0
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["x"]),
        helper.make_node("Unsqueeze", ["x", "axis1"], ["kv"]),
        helper.make_node("Concat", ["past_key_values.0.key", "kv"], ["present.0.key"], axis=2),
        helper.make_node("Concat", ["past_key_values.0.value", "kv"], ["present.0.value"], axis=2),
        helper.make_node("ReduceSum", ["present.0.key", "axis2"], ["ctx"], keepdims=0),
        helper.make_node("MatMul", ["ctx", "w"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(emb, "emb"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    return decoder_model("tiny_decoder", V, nodes, inits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(build(), args.out / "model.onnx")
    config = {"n_layers": 1, "n_kv_heads": 1, "head_dim": D, "vocab_size": V, "context_length": 8}
    (args.out / "config.json").write_text(json.dumps(config))


if __name__ == "__main__":
    main()
