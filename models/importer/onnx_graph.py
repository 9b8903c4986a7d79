"""The small ONNX graph builder both converters use: collects nodes and initializers,
names nodes uniquely, and deduplicates constant tensors."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper


class G:
    def __init__(self):
        self.nodes = []
        self.inits = []
        self.n = 0
        self._consts = {}

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const(self, arr, dtype=np.int64):
        arr = np.asarray(arr, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{len(self._consts)}", arr)
        return self._consts[key]

    def op(self, op_type, inputs, n_out=1, domain="", name=None, outputs=None, **attrs):
        name = name or self.name(op_type)
        outs = outputs or [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name,
                                           domain=domain or None, **attrs))
        return outs[0] if len(outs) == 1 else outs
