"""LoRA inputs of a decoder graph: ``y + x @ A @ B`` on the graph projections some exported LoRA task targets.

Kept apart from the architecture modules: a builder whose ``lora`` set is empty (every bundle without a LoRA
task) adds nothing, so those graphs keep their nodes exactly. A and B are optional float inputs with identity
defaults (zeros, rank 1; :mod:`edgevlm.core.names`), read by two ``MatMul`` nodes the quantizers keep in float.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgevlm.core import names


def delta(b, x: str, y: str, proj: str, n_in: int, n_out: int) -> str:
    """``y + (x @ A) @ B`` when ``proj`` (a graph projection's name) is in ``b.lora``, else ``y`` unchanged.

    x [b, s, in], A [rows, in, R], B [rows, R, out] (rows 1 or the batch) -> [b, s, out]"""
    if proj not in b.lora:
        return y
    a, bb = names.lora_name(proj, "A"), names.lora_name(proj, "B")
    b.lora_io[a], b.lora_io[bb] = (n_in, True), (n_out, False)
    low = b.op("MatMul", [x, a], f"lora.{proj}")  # [b, s, R]
    return b.op("Add", [y, b.op("MatMul", [low, bb], f"lora.{proj}")], f"lora.{proj}")


def declare(b) -> list[onnx.ValueInfoProto]:
    """The LoRA inputs the graph reads, each with its identity default (zeros [1, in, 1] / [1, 1, out])."""
    out = []
    for name, (n, is_a) in b.lora_io.items():
        shape = (1, n, 1) if is_a else (1, 1, n)
        rank = names.lora_rank_dim(name[len(names.LORA_PREFIX) : -2])
        dims = [names.LORA_ROWS_DIM, n, rank] if is_a else [names.LORA_ROWS_DIM, rank, n]
        b.const(name, np.zeros(shape, np.float32))
        out.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    return out


def graph_lora_inputs(model: onnx.ModelProto) -> list[str]:
    """The LoRA inputs of a built graph (none for a graph exported without LoRA tasks)."""
    return [i.name for i in model.graph.input if names.is_lora(i.name)]
