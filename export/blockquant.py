"""Quantized backbone weights as ONNX Runtime kernels: every MatMul weight -> ``MatMulNBits`` blocks, the token
table -> ``GatherBlockQuantized`` (one table with the LM head where the model ties them), all from the blocks
of :func:`edgevlm.core.quant.quantize` (the quantizer training uses too).

A recipe gives (bits, symmetric) for the body's projections and for the LM head / token table
(:data:`edgevlm.core.quant.RECIPES`). Integer zero points are stored packed (two 4-bit values a byte, low
nibble first), so ``MatMulNBits`` runs its packed int8-compute kernels; symmetric blocks store none (the
kernel's default ``2**(bits-1)``). The LM head / token table is symmetric because ONNX Runtime 1.23.2's
``GatherBlockQuantized`` reads packed 4-bit zero points at the wrong rows (tests/test_blockquant.py). A tied
table shares the head's blocks and scales, its packed bytes stored twice: ``MatMulNBits`` as [N, KB,
BLOCK*bits/8] (ONNX Runtime >= 1.31 refuses other shapes), the gather as [N, K*bits/8]. No node besides the
kernel itself: no residual terms, and a bias ``Add`` right after a projection (GPT-2, Qwen2) becomes the
kernel's bias input.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgevlm.core import quant

BLOCK = quant.BLOCK


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes [..., m] (0 .. 2**bits-1) -> bytes: 8-bit as they are, 4-bit two a byte, the first in the low nibble
    (an odd count padded with a zero nibble)."""
    codes = codes.astype(np.uint8)
    if bits == 8:
        return codes
    if codes.shape[-1] % 2:
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], 1), np.uint8)], -1)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def block_tensors(blocks: quant.Blocks, base: str, flat: bool) -> list[onnx.TensorProto]:
    """(packed weight, scales[, packed zero points]) initializers named after ``base``. With ``flat`` the weight
    is [N, K*bits/8] (what ``GatherBlockQuantized`` reads), else [N, KB, BLOCK*bits/8] (``MatMulNBits``)."""
    n, kb, _ = blocks.codes.shape
    data = pack(blocks.codes, blocks.bits)  # [N, KB, BLOCK*bits/8]
    out = [
        numpy_helper.from_array(data.reshape(n, -1) if flat else data, f"{base}_q{blocks.bits}"),
        numpy_helper.from_array(blocks.scales, f"{base}_scales"),
    ]
    if blocks.zero_points is not None:
        out.append(numpy_helper.from_array(pack(blocks.zero_points, blocks.bits), f"{base}_zero_points"))
    return out


def flat_copy(data: onnx.TensorProto, base: str) -> onnx.TensorProto:
    """MatMulNBits' packed [N, KB, BLOCK*bits/8] weight as the [N, K*bits/8] table ``GatherBlockQuantized`` reads.
    The same bytes are stored twice: ONNX Runtime >= 1.31 refuses a MatMulNBits weight of any other shape, and a
    Reshape node on the one initializer would be constant-folded into a copy anyway. Per token the gather reads
    one row; MatMulNBits reads its own prepacked copy."""
    arr = numpy_helper.to_array(data)
    return numpy_helper.from_array(arr.reshape(arr.shape[0], -1), f"{base}_table_q")


def matmul_node(node: onnx.NodeProto, tensors: list[onnx.TensorProto], k: int, n: int, bits: int, accuracy: int):
    """``node`` (x @ W, W [k, n]) as one ``MatMulNBits`` on the block ``tensors``, same output name."""
    return helper.make_node(
        "MatMulNBits", [node.input[0], *[t.name for t in tensors]], list(node.output), f"{node.name}_Q{bits}",
        domain="com.microsoft", K=k, N=n, bits=bits, block_size=BLOCK, accuracy_level=accuracy,
    )  # fmt: skip


def gather_node(node: onnx.NodeProto, tensors: list[onnx.TensorProto], bits: int) -> onnx.NodeProto:
    """The token lookup ``node`` (Gather on a [V, E] table) as ``GatherBlockQuantized`` on symmetric blocks
    ``tensors`` (flat [V, E*bits/8] data, [V, E/32] scales)."""
    return helper.make_node(
        "GatherBlockQuantized", [tensors[0].name, node.input[1], tensors[1].name], list(node.output),
        f"{node.name}_Q{bits}", domain="com.microsoft", bits=bits, block_size=BLOCK, gather_axis=0,
        quantize_axis=1,
    )  # fmt: skip


def quantize_graph(model: onnx.ModelProto, recipe: quant.Recipe, keep: set[str], head: str, table: str, accuracy: int):
    """Every MatMul with a constant 2-D weight (except nodes in ``keep``) -> ``MatMulNBits``: the LM head node
    ``head`` with the recipe's head blocks, the others with its body blocks; the token Gather ``table`` ->
    ``GatherBlockQuantized`` (on the LM head's own tensors when the model ties them, else its own). In place;
    returns ``model``."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    graph_inputs = {i.name for i in g.input}
    nodes, replaced, added, head_tensors = [], set(), [], {}
    for node in g.node:
        t = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if t is None or node.name in keep or node.input[1] in graph_inputs or len(t.dims) != 2:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(t)
        bits, sym = recipe.head if node.name == head else recipe.body
        tensors = block_tensors(quant.quantize(w, bits, sym), node.input[1], flat=False)
        if node.name == head:
            head_tensors = {"weight": w, "tensors": tensors, "bits": bits}
        nodes.append(matmul_node(node, tensors, *w.shape, bits, accuracy))
        added += tensors
        replaced.add(node.input[1])
    nodes = [_table(n, inits, recipe, head_tensors, added, replaced) if n.name == table else n for n in nodes]
    del g.node[:]
    g.node.extend(_fold_biases(nodes, inits, {o.name for o in g.output}))
    g.initializer.extend(added)
    _drop_unused(g, replaced)
    return model


def _fold_biases(nodes: list, inits: dict, outputs: set[str]) -> list:
    """``MatMulNBits`` + ``Add`` of a constant [N] bias (its only reader) -> the kernel's own bias input."""
    readers: dict[str, list] = {}
    for n in nodes:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    folded = set()
    for n in nodes:
        y = n.output[0]
        add = readers.get(y, [None])[0] if len(readers.get(y, [])) == 1 and y not in outputs else None
        if n.op_type != "MatMulNBits" or add is None or add.op_type != "Add":
            continue
        bias = add.input[1] if add.input[0] == y else add.input[0]
        n_out = next(a.i for a in n.attribute if a.name == "N")
        if bias not in inits or list(inits[bias].dims) != [n_out]:
            continue
        ins = list(n.input) + [""] * (5 - len(n.input))  # zero_points, g_idx: empty where absent
        del n.input[:]
        n.input.extend(ins[:5] + [bias])
        n.output[0] = add.output[0]
        folded.add(id(add))
    return [n for n in nodes if id(n) not in folded]


def _table(node, inits: dict, recipe: quant.Recipe, head: dict, added: list, replaced: set) -> onnx.NodeProto:
    """The token Gather as ``GatherBlockQuantized`` (left float when E is not a multiple of the block)."""
    table = numpy_helper.to_array(inits[node.input[0]])
    if table.ndim != 2 or table.shape[1] % BLOCK:
        return node
    bits, sym = recipe.head
    if head and head["bits"] == bits and np.array_equal(head["weight"], table.T):  # tied: the head's blocks
        tensors = [flat_copy(head["tensors"][0], node.input[0]), *head["tensors"][1:]]
        added.append(tensors[0])
    else:
        tensors = block_tensors(quant.quantize(np.ascontiguousarray(table.T), bits, sym), node.input[0], flat=True)
        added += tensors
    replaced.add(node.input[0])
    return gather_node(node, tensors, bits)


def _drop_unused(g: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove the initializers in ``candidates`` that no node reads any more."""
    read = {x for n in g.node for x in n.input}
    keep = [t for t in g.initializer if t.name not in candidates or t.name in read]
    del g.initializer[:]
    g.initializer.extend(keep)
