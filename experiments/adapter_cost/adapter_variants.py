"""Candidate adapter kernels, as rewrites of a bundle's graph: the adapter MatMuls' weight inputs in another form.

``fp32`` is the graph as exported (``x @ W``, float32 weights fed through the ORT adapter file). The others
replace each ``adapter.{i}.down|up.weight`` input by a differently stored, still swappable input (an optional
graph input with an identity default, fed by the same ``LoraAdapter`` mechanism):

- ``int8``: int8 weights with a float32 scale per output column (symmetric), run by ``com.microsoft``
  ``DynamicQuantizeMatMul`` (uint8 activations, one scale per call), the one ORT 1.23 CPU kernel found that
  takes a *non-constant* quantized B with a symbolic bottleneck; ``MatMulNBits`` needs K and N as attributes
  (the bottleneck is per task) and dequantizes a non-constant B on every call.
- ``fp32-transposed``: the same float32 weights stored transposed, ``FusedMatMul(transB=1)`` (MLAS's M=1
  dot-product kernel instead of the row-broadcast one).

Used by ``adapter_cost.py`` to measure each candidate's decode time and agreement with the fp32 adapter.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgevlm.core import names

VARIANTS = ("fp32", "int8", "fp32-transposed")
MATRICES = ("down.weight", "up.weight")
Q, SCALE = ".q", ".scale"  # suffixes of the rewritten inputs


def is_matrix(name: str) -> bool:
    return name.startswith("adapter.") and name.endswith(MATRICES)


def rewrite(model: onnx.ModelProto, variant: str) -> onnx.ModelProto:
    """``model`` (changed in place) with every adapter MatMul's weight input in ``variant``'s form."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown adapter variant {variant!r}; expected one of {VARIANTS}")
    if variant == "fp32":
        return model
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    inputs = {i.name: i for i in g.input}
    nodes = []
    for n in g.node:
        if n.op_type == "MatMul" and len(n.input) == 2 and is_matrix(n.input[1]):
            nodes.append(_replace(g, n, inputs.pop(n.input[1]), inits.pop(n.input[1]), variant))
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def _replace(g: onnx.GraphProto, node: onnx.NodeProto, vi, init, variant: str) -> onnx.NodeProto:
    """The node replacing ``x @ W`` (``W`` = graph input ``vi`` with default ``init``); adds its inputs to ``g``."""
    w, x = vi.name, node.input[0]
    dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    g.input.remove(vi)
    g.initializer.remove(init)
    for name, value in convert({w: numpy_helper.to_array(init)}, variant).items():
        shape = dims[::-1] if variant == "fp32-transposed" else dims if name.endswith(Q) else dims[1:]
        dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
        g.input.append(helper.make_tensor_value_info(name, dtype, shape))
        g.initializer.append(numpy_helper.from_array(value, name))
    if variant == "fp32-transposed":
        ms = "com.microsoft"
        return helper.make_node("FusedMatMul", [x, w + Q], list(node.output), node.name, domain=ms, transB=1)
    return helper.make_node(
        "DynamicQuantizeMatMul", [x, w + Q, w + SCALE], list(node.output), node.name, domain="com.microsoft"
    )


def convert(tensors: dict[str, np.ndarray], variant: str) -> dict[str, np.ndarray]:
    """Adapter tensors in graph layout (float32) -> the inputs ``variant``'s graph takes (others unchanged)."""
    out = {}
    for name, v in tensors.items():
        if variant == "fp32" or not is_matrix(name):
            out[name] = np.ascontiguousarray(v, np.float32)
        elif variant == "fp32-transposed":
            out[name + Q] = np.ascontiguousarray(v.T, np.float32)
        else:
            q, scale = int8_columns(v)
            out[name + Q], out[name + SCALE] = q, scale
    return out


def int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column: ``w ~= q * scale``; an all-zero column keeps scale 1 (q = 0 exactly)."""
    peak = np.abs(w).max(axis=0)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def random_adapter(n_layer: int, n_embd: int, bottleneck: int, n_tokens: int, seed: int, std: float = 0.05):
    """Random (untrained) adapter tensors in graph layout: LayerNorm at identity, normal down/up/biases."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names.adapter_names(n_layer):
        shape = names.adapter_shape(name, n_embd, bottleneck, n_tokens)
        value = np.full(shape, names.identity_value(name)) if ".ln." in name else rng.normal(0, std, shape)
        out[name] = value.astype(np.float32)
    return out


def adapter_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that multiply by an adapter weight (any variant)."""
    return [n.name for n in model.graph.node if any(is_matrix(i.removesuffix(Q)) for i in n.input[1:2])]
