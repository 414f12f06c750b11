"""int4 Q4_1-style blocks (export/blockquant.py) and the quantized kernels every shipped mode uses: blocks found
exactly on a Q4_1 grid, the residual term restores the float minimum, and each kernel's one-row (decode, M=1)
result equals its many-row (prefill, M>1) result and the float reference (onnxruntime takes separate M=1 paths)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevlm.export import blockquant
from edgevlm.export.quantize import INT4_ACCURACY, INT8_ACCURACY, nbits
from edgevlm.export.verify import session

K, N, M = 96, 40, 7  # K: 3 blocks (an odd count: zero points pad a nibble)
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]


def _q4_1_weight(rng, k: int = K, n: int = N) -> np.ndarray:
    """A [k, n] weight exactly on a Q4_1 grid: scale * q + minimum per 32-block along k, float minima."""
    kb = k // 32
    scale = rng.uniform(0.01, 0.05, (kb, n))
    low = rng.uniform(-0.4, 0.1, (kb, n))  # some blocks entirely above zero
    q = rng.integers(0, 16, (kb, 32, n))
    q[:, 0], q[:, 1] = 0, 15  # the block's min and max are on the grid's ends, as Q4_1 writes them
    return (scale[:, None] * q + low[:, None]).reshape(k, n).astype(np.float32)


def test_blocks_are_found_exactly_on_a_q4_1_grid():
    w = _q4_1_weight(np.random.default_rng(0))
    b = blockquant.q4_blocks(w)
    assert b.q.shape == (N, K // 32, 32) and b.scale.shape == b.zero_point.shape == (N, K // 32)
    assert np.abs(b.dequantize(K) - w).max() < 1e-6
    assert np.abs(b.residual).max() > 0.005  # the integer zero point alone misses the float minimum


def test_float_weights_round_to_the_nearest_step_and_padding():
    w = np.random.default_rng(1).normal(size=(70, 5)).astype(np.float32)  # 70: the last block padded
    b = blockquant.q4_blocks(w)
    err = np.abs(b.dequantize(70) - w).reshape(-1)
    step = np.repeat(b.scale.T, 32, 0)[:70].reshape(-1)
    assert np.all(err <= step / 2 + 1e-6)
    full = np.abs(b.residual.T)[:, :2]  # the two full blocks straddle zero: the nearest zero point is in range
    assert np.all(full <= b.scale[:, :2] / 2 + 1e-6)


def test_pack_nibbles_low_first_and_odd_counts():
    assert blockquant.pack_nibbles(np.array([[1, 2, 3]], np.uint8)).tolist() == [[0x21, 0x03]]


def _matmul_model(w: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", w.shape[1]])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    g = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=OPSETS, ir_version=10)


def _quantized(mode: str, w: np.ndarray) -> onnx.ModelProto:
    if mode == "int4":
        return blockquant.quantize_matmuls(_matmul_model(w), set(), INT4_ACCURACY)
    return nbits(_matmul_model(w), 8, INT8_ACCURACY, skip=[])  # int8's body and every mode's LM head


def _rows_one_by_one(sess, x: np.ndarray) -> np.ndarray:
    return np.concatenate([sess.run(None, {"x": x[:, i : i + 1]})[0] for i in range(x.shape[1])], 1)


@pytest.mark.parametrize("mode", ["int4", "int8"])
@pytest.mark.parametrize("threads, k", [(1, K), (2, K), (2, 576)])  # 576: SmolLM2's width
def test_kernel_one_row_equals_many_rows_and_float(mode, threads, k):
    rng = np.random.default_rng(2)
    w = _q4_1_weight(rng, k, N)
    x = rng.normal(size=(1, M, k)).astype(np.float32)
    x[..., 5] += 4.0  # an outlier channel, as real activations have
    model = _quantized(mode, w)
    ops = sorted(n.op_type for n in model.graph.node)
    assert ops == (["Add", "MatMul", "MatMul", "MatMulNBits"] if mode == "int4" else ["MatMulNBits"])  # int4: sums
    sess = session(model, threads=threads)
    many, one = sess.run(None, {"x": x})[0], _rows_one_by_one(sess, x)
    ref = x @ w
    scale = np.abs(ref).max()
    print(mode, threads, "M=1 vs M>1", np.abs(one - many).max() / scale, "vs float", np.abs(many - ref).max() / scale)
    assert np.abs(one - many).max() <= 1e-5 * scale, (mode, np.abs(one - many).max())
    # what is left against float is the per-token int8 activations (accuracy_level 4), under 1.5 %
    assert np.abs(many - ref).max() <= 0.015 * scale, (mode, np.abs(many - ref).max() / scale)


def test_residual_term_is_what_makes_int4_exact():
    """On Q4_1-grid weights: the shipped int4 is within the activation rounding of float; the same blocks without
    the residual term (integer zero point only), and ORT's own 4-bit quantizer, are over 10 times further off."""
    rng = np.random.default_rng(3)
    w = _q4_1_weight(rng)
    x = rng.normal(size=(1, M, K)).astype(np.float32) + 0.5  # activations with a mean: block shifts add up
    ref = x @ w
    shipped = session(_quantized("int4", w)).run(None, {"x": x})[0]
    dropped = _quantized("int4", w)
    for n in dropped.graph.node:  # rewire the Add to read the MatMulNBits output twice, residual zeroed
        if n.op_type == "Add":
            n.input[1] = "zero"
    dropped.graph.initializer.append(numpy_helper.from_array(np.zeros(N, np.float32), "zero"))
    no_residual = session(dropped).run(None, {"x": x})[0]
    ort = session(nbits(_matmul_model(w), 4, INT4_ACCURACY, skip=[], symmetric=False)).run(None, {"x": x})[0]
    err = {k: float(np.abs(v - ref).mean()) for k, v in [("shipped", shipped), ("none", no_residual), ("ort", ort)]}
    print(err)
    assert err["shipped"] * 10 < min(err["none"], err["ort"]), err


def test_token_table_gather_is_8_bit_and_exact_on_a_q8_0_grid():
    rng = np.random.default_rng(4)
    scale = rng.uniform(0.001, 0.01, (50, 2))
    table = (scale[..., None] * rng.integers(-127, 128, (50, 2, 32))).reshape(50, 64).astype(np.float32)
    table[:, 0] = 127 * scale[:, 0]  # max |w| of the block on the grid, as Q8_0 writes it
    table[:, 32] = -127 * scale[:, 1]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "s"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", 64])
    g = helper.make_graph(
        [helper.make_node("Gather", ["t", "ids"], ["y"], name="tok")], "g", [ids], [y],
        [numpy_helper.from_array(table, "t")],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=OPSETS, ir_version=10)
    q = blockquant.quantize_gather(model, "tok")
    assert [n.op_type for n in q.graph.node] == ["GatherBlockQuantized"] and len(q.graph.initializer) == 2
    which = np.array([[3, 0, 49, 3]])
    got = session(q).run(None, {"ids": which})[0]
    assert np.abs(got - table[which]).max() < 1e-6
