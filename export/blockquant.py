"""The int4 weights: Q4_1-style blocks (a scale and a *float* minimum per 32 weights along the input dim) run by
ONNX Runtime's ``MatMulNBits``, and the token table as 8-bit blocks (``GatherBlockQuantized``, Q8_0-style).

A block of 32 weights is ``scale * q + minimum`` with ``q`` in 0..15 (llama.cpp's Q4_1; SmolLM2's GGUF body is
stored exactly so, its token table as Q8_0). ``MatMulNBits`` only knows ``scale * (q - zero_point)`` with an
*integer* zero point, and a float zero point drops it onto its unpacked path (every weight dequantized per call,
an order of magnitude slower; figures in docs/training.md). So the node gets the nearest integer zero point and
the fraction it misses, ``residual = minimum + zero_point * scale`` per block, is added back exactly as
``block_sums(x) @ residual`` (a [K, K/32] indicator MatMul shared by every weight reading the same ``x``, then a
[K/32, N] MatMul): ``x @ W == MatMulNBits(x) + block_sums(x) @ residual``. Without that term each block is
shifted by up to half a step, the same shift for all 32 weights, so the errors add up along the input instead of
averaging out; with it int4 agrees with fp32 as well as int8 does (what is left is the per-token int8
activations, ``accuracy_level`` 4, both modes; the agreement figures are in docs/training.md).

On weights already on such a grid (a Q4_1 GGUF) the blocks are found exactly (max reconstruction error 0); on
float weights this is min/max round-to-nearest with a float minimum, Q4_1's own quantizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

BLOCK = 32
LEVELS = 15  # 4-bit codes 0..15


@dataclass(frozen=True)
class Q4Blocks:
    """A [K, N] weight as ``scale * (q - zero_point) + residual`` per block of ``BLOCK`` rows (K padded up)."""

    q: np.ndarray  # [N, KB, BLOCK] uint8 codes 0..15
    scale: np.ndarray  # [N, KB] float32
    zero_point: np.ndarray  # [N, KB] uint8 0..15
    residual: np.ndarray  # [KB, N] float32: the block's minimum the integer zero point misses

    def dequantize(self, k: int) -> np.ndarray:
        """The float weight these blocks stand for, [k, N] (float64 arithmetic, float32 result)."""
        s = self.scale.astype(np.float64)[..., None]
        w = s * (self.q.astype(np.float64) - self.zero_point[..., None]) + self.residual.T[..., None]
        return w.reshape(len(self.q), -1)[:, :k].T.astype(np.float32)


def q4_blocks(w: np.ndarray) -> Q4Blocks:
    """Q4_1 blocks of a [K, N] MatMul weight along K (the last block padded with its own edge values)."""
    k, n = w.shape
    kb = -(-k // BLOCK)
    b = np.pad(w, ((0, kb * BLOCK - k), (0, 0)), mode="edge").T.reshape(n, kb, BLOCK).astype(np.float64)
    lo, hi = b.min(-1), b.max(-1)
    step = (hi - lo) / LEVELS
    step = np.where(step > 0, step, 1.0)  # a constant block: every code 0, the value in the residual
    q = np.clip(np.rint((b - lo[..., None]) / step[..., None]), 0, LEVELS).astype(np.uint8)
    zp = np.clip(np.rint(-lo / step), 0, LEVELS)
    residual = lo + zp * step
    return Q4Blocks(q, step.astype(np.float32), zp.astype(np.uint8), residual.T.astype(np.float32))


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """4-bit codes [..., 2m] -> bytes [..., m], the first code in the low nibble (MatMulNBits' layout)."""
    if codes.shape[-1] % 2:
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], 1), np.uint8)], -1)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def matmul_nodes(node: onnx.NodeProto, w: np.ndarray, block_sum: str, accuracy_level: int):
    """``node`` (x @ w) as MatMulNBits + the residual term; returns (nodes, initializers)."""
    k, n = w.shape
    blocks, base, y = q4_blocks(w), node.input[1], node.output[0]
    inits = [
        numpy_helper.from_array(pack_nibbles(blocks.q), f"{base}_Q4"),
        numpy_helper.from_array(blocks.scale.reshape(-1), f"{base}_scales"),
        numpy_helper.from_array(pack_nibbles(blocks.zero_point).reshape(-1), f"{base}_zero_points"),
        numpy_helper.from_array(blocks.residual, f"{base}_residual"),
    ]
    attrs = {"K": k, "N": n, "bits": 4, "block_size": BLOCK, "accuracy_level": accuracy_level}
    nodes = [
        helper.make_node(
            "MatMulNBits",
            [node.input[0], *[t.name for t in inits[:3]]],
            [f"{y}_q4"],
            f"{node.name}_Q4",
            domain="com.microsoft",
            **attrs,
        ),  # fmt: skip
        helper.make_node("MatMul", [block_sum, inits[3].name], [f"{y}_residual"], f"{node.name}_residual"),
        helper.make_node("Add", [f"{y}_q4", f"{y}_residual"], [y], f"{node.name}_add"),
    ]
    return nodes, inits


def block_sum_nodes(x: str, k: int, have: set[str]):
    """``x @ indicator`` ([.., K] -> [.., K/32] block sums) and the indicator initializer unless in ``have``."""
    kb = -(-k // BLOCK)
    ind_name = f"blockquant.block_sum_{k}"
    inits = []
    if ind_name not in have:
        ind = np.zeros((k, kb), np.float32)
        ind[np.arange(k), np.arange(k) // BLOCK] = 1.0
        inits.append(numpy_helper.from_array(ind, ind_name))
        have.add(ind_name)
    return helper.make_node("MatMul", [x, ind_name], [f"{x}_block_sum"], f"{x}/block_sum"), inits


def quantize_matmuls(model: onnx.ModelProto, skip: set[str], accuracy_level: int) -> onnx.ModelProto:
    """Every MatMul with a constant 2-D initializer weight (not a graph input, not in ``skip``) -> int4 blocks,
    in place; returns ``model``. Block sums are computed once per distinct input."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    graph_inputs = {i.name for i in g.input}
    have, sums, nodes, used = set(inits), {}, [], set()
    for node in g.node:
        t = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if t is None or node.name in skip or node.input[1] in graph_inputs or len(t.dims) != 2:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(t)
        if node.input[0] not in sums:
            sum_node, extra = block_sum_nodes(node.input[0], w.shape[0], have)
            sums[node.input[0]] = sum_node.output[0]
            nodes.append(sum_node)
            g.initializer.extend(extra)
        new, extra = matmul_nodes(node, w, sums[node.input[0]], accuracy_level)
        nodes += new
        g.initializer.extend(extra)
        used.add(node.input[1])
    del g.node[:]
    g.node.extend(nodes)
    _drop_unused(g, used)
    return model


def _drop_unused(g: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove the initializers in ``candidates`` that no node reads any more."""
    read = {x for n in g.node for x in n.input}
    keep = [t for t in g.initializer if t.name not in candidates or t.name in read]
    del g.initializer[:]
    g.initializer.extend(keep)


def q8_table(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A [V, E] table as symmetric 8-bit blocks along E (Q8_0: scale max|w|/127): (uint8 codes + 128 [V, E],
    scales [V, E/32])."""
    v, e = table.shape
    b = table.reshape(v, e // BLOCK, BLOCK).astype(np.float64)
    scale = np.abs(b).max(-1) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(b / scale[..., None]), -127, 127) + 128
    return q.astype(np.uint8).reshape(v, e), scale.astype(np.float32)


def quantize_gather(model: onnx.ModelProto, node_name: str) -> onnx.ModelProto:
    """The Gather ``node_name`` on a [V, E] initializer -> 8-bit ``GatherBlockQuantized``, in place (left float
    when E is not a multiple of the block); returns ``model``."""
    g = model.graph
    i, node = next((i, n) for i, n in enumerate(g.node) if n.name == node_name)
    table = numpy_helper.to_array(next(t for t in g.initializer if t.name == node.input[0]))
    if table.ndim != 2 or table.shape[1] % BLOCK:
        return model
    codes, scales = q8_table(table)
    g.initializer.extend(
        [
            numpy_helper.from_array(codes, f"{node.input[0]}_Q8"),
            numpy_helper.from_array(scales, f"{node.input[0]}_scales8"),
        ]
    )
    new = helper.make_node(
        "GatherBlockQuantized", [f"{node.input[0]}_Q8", node.input[1], f"{node.input[0]}_scales8"], list(node.output),
        f"{node_name}_Q8", domain="com.microsoft", bits=8, block_size=BLOCK, gather_axis=0, quantize_axis=1,
    )  # fmt: skip
    g.node.remove(node)
    g.node.insert(i, new)
    _drop_unused(g, {node.input[0]})
    return model


def side_weights(model: onnx.ModelProto) -> set[str]:
    """The float initializers the residual terms read (block-sum indicators and residual tables)."""
    return {t.name for t in model.graph.initializer if t.name.endswith("_residual") or t.name.startswith("blockquant.")}
