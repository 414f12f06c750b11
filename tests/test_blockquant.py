"""The block quantizer (edgevlm/core/quant.py) and the kernels it feeds (export/blockquant.py): blocks on their
grid, chunk-independent (training and export get the same blocks), and every shipped recipe's ``MatMulNBits``
gives the same result for one row (decode, M=1) as for many rows (prefill, M>1), both equal to float math on
the dequantized weight within the int8 activation rounding (onnxruntime #29853: its M=1 path was reported
wrong); the token table's ``GatherBlockQuantized`` returns the dequantized rows exactly, also when it reads
the LM head's own tensors (tied)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevlm.core import quant
from edgevlm.export import blockquant
from edgevlm.export.quantize import ACCURACY
from edgevlm.export.verify import session

K, N, M = 96, 40, 7  # K: 3 blocks (an odd count: zero points pad a nibble)
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
SHIPPED = sorted({r for recipe in quant.RECIPES.values() for r in (recipe.body, recipe.head)})  # (bits, symmetric)


def _on_grid(rng, bits: int, k: int = K, n: int = N) -> np.ndarray:
    """A [k, n] weight exactly on an integer-zero-point grid, each block using its lowest and highest code."""
    top = (1 << bits) - 1
    scale = rng.uniform(0.01, 0.05, (k // 32, 1, n)).astype(np.float32)
    zp = rng.integers(0, top + 1, (k // 32, 1, n))
    q = rng.integers(0, top + 1, (k // 32, 32, n))
    q[:, 0], q[:, 1] = 0, top
    return ((q - zp).astype(np.float32) * scale).reshape(k, n)


@pytest.mark.parametrize("bits", [4, 8])
def test_weights_on_the_grid_come_back(bits):
    w = _on_grid(np.random.default_rng(0), bits)
    b = quant.quantize(w, bits, symmetric=False)
    assert b.codes.shape == (N, K // 32, 32) and b.scales.shape == b.zero_points.shape == (N, K // 32)
    assert b.codes.max() <= (1 << bits) - 1 and b.zero_points.dtype == np.uint8
    assert np.abs(b.dequantize() - w).max() <= 1e-6 * np.abs(w).max()


@pytest.mark.parametrize("bits, symmetric", SHIPPED)
def test_float_weights_round_within_a_step_and_padding(bits, symmetric, monkeypatch):
    w = np.random.default_rng(1).normal(size=(70, 5)).astype(np.float32)  # 70: the last block padded
    b = quant.quantize(w, bits, symmetric)
    assert (b.zero_points is None) == symmetric and b.dequantize().shape == w.shape
    err = np.abs(b.dequantize() - w)
    step = np.abs(np.repeat(b.scales.T, 32, 0)[:70])
    assert np.all(err <= 2.5 * step), (err / step).max()  # clipped outliers: at most a few steps
    assert np.mean(err <= step / 2 + 1e-6) > 0.95  # the rest rounds to the nearest step
    monkeypatch.setattr(quant, "SHRINK", (1.0,))  # the full-range grid alone: the search never does worse
    plain = quant.fake_quantize(w, bits, symmetric)
    assert np.square(b.dequantize() - w).sum() <= np.square(plain - w).sum() * 1.001


def test_symmetric_blocks_put_the_largest_magnitude_on_an_end_code():
    w = np.random.default_rng(2).normal(size=(64, 3)).astype(np.float32)
    w[5, 0], w[40, 1] = -9.0, 7.0  # one outlier per block, of either sign
    b = quant.quantize(w, 4, symmetric=True)
    assert b.zero_points is None and b.codes.min() >= 0 and b.codes.max() <= 15
    assert b.codes[0, 0, 5] == 0 and b.codes[1, 1, 8] == 0  # code 0: 8 steps from the zero point (the long side)
    assert b.scales[0, 0] > 0 > b.scales[1, 1]  # the scale carries the sign


def test_quantize_is_chunk_independent_and_deterministic(monkeypatch):
    """Training quantizes torch weights, the exporter graph initializers: same float32 weight, same blocks,
    however many columns are processed at a time."""
    w = np.random.default_rng(3).normal(size=(96, 50)).astype(np.float32)
    whole = quant.quantize(w, 4)
    monkeypatch.setattr(quant, "CHUNK", 7)
    chunked = quant.quantize(w, 4)
    for part in ("codes", "scales", "zero_points"):
        np.testing.assert_array_equal(getattr(whole, part), getattr(chunked, part))
    np.testing.assert_array_equal(quant.fake_quantize(w, 4), whole.dequantize())
    part = quant.quantize(np.ascontiguousarray(w[:, 10:30]), 4)  # q alone vs packed q/k/v
    np.testing.assert_array_equal(part.codes, whole.codes[10:30])
    np.testing.assert_array_equal(part.scales, whole.scales[10:30])


def test_bad_shapes_and_bits_are_refused():
    with pytest.raises(ValueError, match="bits 4 or 8"):
        quant.quantize(np.zeros((32, 2), np.float32), bits=3)
    with pytest.raises(ValueError, match="2-D"):
        quant.quantize(np.zeros(32, np.float32))


def test_pack_low_nibble_first_and_odd_counts():
    assert blockquant.pack(np.array([[1, 2, 3]], np.uint8), 4).tolist() == [[0x21, 0x03]]
    assert blockquant.pack(np.array([[1, 200]], np.uint8), 8).tolist() == [[1, 200]]


def _matmul_model(w: np.ndarray, bits: int, symmetric: bool, flat: bool = False) -> onnx.ModelProto:
    """x [1, s, K] -> MatMulNBits with the blocks of ``w``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", w.shape[1]])
    tensors = blockquant.block_tensors(quant.quantize(w, bits, symmetric), "w", flat)
    mm = helper.make_node("MatMul", ["x", "w"], ["y"], "mm")
    node = blockquant.matmul_node(mm, tensors, *w.shape, bits, ACCURACY)
    return helper.make_model(helper.make_graph([node], "g", [x], [y], tensors), opset_imports=OPSETS, ir_version=10)


def _rows_one_by_one(sess, x: np.ndarray) -> np.ndarray:
    return np.concatenate([sess.run(None, {"x": x[:, i : i + 1]})[0] for i in range(x.shape[1])], 1)


@pytest.mark.parametrize("bits, symmetric", SHIPPED)
@pytest.mark.parametrize("threads, k", [(1, K), (2, K), (2, 576)])  # 576: SmolLM2's width
def test_kernel_one_row_equals_many_rows_and_float(bits, symmetric, threads, k):
    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.05, size=(k, N)).astype(np.float32)
    x = rng.normal(size=(1, M, k)).astype(np.float32)
    x[..., 5] += 4.0  # an outlier channel, as real activations have
    model = _matmul_model(w, bits, symmetric, flat=symmetric)  # symmetric: the LM head's flat layout
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits"]
    sess = session(model, threads=threads)
    many, one = sess.run(None, {"x": x})[0], _rows_one_by_one(sess, x)
    ref = x @ quant.fake_quantize(w, bits, symmetric)  # float math on the weights the kernel holds
    scale = np.abs(ref).max()
    print(
        bits, symmetric, threads, "M=1 vs M>1", np.abs(one - many).max() / scale, "vs float", np.abs(many - ref).max()
    )
    assert np.abs(one - many).max() <= 1e-5 * scale, np.abs(one - many).max()
    # what is left against float is the per-token int8 activations (accuracy_level 4), under 1.5 %
    assert np.abs(many - ref).max() <= 0.015 * scale, np.abs(many - ref).max() / scale


@pytest.mark.parametrize("bits", [4, 8])
def test_tied_table_gather_reads_the_lm_heads_blocks_exactly(bits):
    """The token table as ``GatherBlockQuantized`` on the very tensors of the LM head's ``MatMulNBits``."""
    rng = np.random.default_rng(5)
    table = rng.normal(0, 0.05, size=(50, 64)).astype(np.float32)  # [V, E]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "s"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", 64])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("e", "y")]
    nodes = [helper.make_node("Gather", ["t", "ids"], ["e"], "tok")]
    nodes.append(helper.make_node("MatMul", ["x", "h"], ["y"], "head"))
    inits = [numpy_helper.from_array(table, "t"), numpy_helper.from_array(table.T.copy(), "h")]
    model = helper.make_model(helper.make_graph(nodes, "g", [ids, x], outs, inits), opset_imports=OPSETS, ir_version=10)
    recipe = quant.Recipe(body=(bits, False), head=(bits, True))
    q = blockquant.quantize_graph(model, recipe, set(), "head", "tok", ACCURACY)
    assert sorted(n.op_type for n in q.graph.node) == ["GatherBlockQuantized", "MatMulNBits"]
    assert len(q.graph.initializer) == 3  # the head's blocks: codes as MatMulNBits and as the gather reads them, scales
    by_name = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    codes = sorted((a for a in by_name.values() if a.dtype == np.uint8), key=lambda a: a.ndim)
    assert [a.ndim for a in codes] == [2, 3]  # [N, K*bits/8] for the gather beside [N, KB, BLOCK*bits/8]
    np.testing.assert_array_equal(codes[1].reshape(codes[0].shape), codes[0])  # the same bytes
    which = np.array([[3, 0, 49, 3]])
    emb, logits = session(q).run(None, {"ids": which, "x": np.zeros((1, 1, 64), np.float32)})
    np.testing.assert_allclose(emb[0], quant.fake_quantize(table.T.copy(), bits, True).T[which[0]], atol=1e-7)


def test_bytes_per_token_count_the_tied_head_once_and_one_table_row():
    from edgevlm.export.graphstats import bytes_per_token

    table = np.random.default_rng(6).normal(size=(50, 64)).astype(np.float32)
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "s"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", 64])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("e", "y")]
    nodes = [helper.make_node("Gather", ["t", "ids"], ["e"], "tok")]
    nodes.append(helper.make_node("MatMul", ["x", "h"], ["y"], "head"))
    inits = [numpy_helper.from_array(table, "t"), numpy_helper.from_array(table.T.copy(), "h")]
    model = helper.make_model(helper.make_graph(nodes, "g", [ids, x], outs, inits), opset_imports=OPSETS, ir_version=10)
    assert bytes_per_token(model) == 64 * 4 + 50 * 64 * 4  # one float row + the float LM head
    q = blockquant.quantize_graph(model, quant.RECIPES["int4"], set(), "head", "tok", ACCURACY)
    assert bytes_per_token(q) == 50 * 32 + 50 * 2 * 4 + 32  # the 4-bit head (codes + scales) + one table row
