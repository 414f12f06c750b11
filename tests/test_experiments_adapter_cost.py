"""experiments/adapter_cost (adapter_cost, adapter_variants, adapter_kernels): the candidate adapter kernels
compute the adapter, and the measurement attributes kernel time to the adapter nodes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from experiments.adapter_cost import adapter_cost as ac
from experiments.adapter_cost import adapter_kernels as ak
from experiments.adapter_cost import adapter_variants as av

pytestmark = pytest.mark.experiments  # opt-in: make test-experiments

# max |logit diff|, int8 vs fp32 adapter; tiny backbone measured <= 0.028 (fp32 bundle), <= 0.11 (int8/int4)
INT8_BOUND = 0.25
STEPS = 6


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Task-free tiny bundles, fp32 and int8 (the benchmark brings its own random adapters)."""
    from edgevlm.export import export_bundle

    root = tmp_path_factory.mktemp("adapter-cost")
    return {q: export_bundle("tiny", [], q, out=root / q, progress=False) for q in ("fp32", "int8")}


def _decoder(root, variant):
    sess, bb = ac.open_graph(root, variant, threads=1)
    return ac.decoder(sess, bb), bb


@pytest.mark.parametrize("quant", ["fp32", "int8"])
@pytest.mark.parametrize("variant", ["int8", "fp32-transposed"])
def test_variant_without_a_task_is_exactly_the_plain_graph(bundles, quant, variant):
    ref, bb = _decoder(bundles[quant], "fp32")
    dec, _ = _decoder(bundles[quant], variant)
    _, _, tokens, want = ac.decode(ref, None, STEPS, bb.vocab_size)
    _, _, _, got = ac.decode(dec, None, STEPS, bb.vocab_size, forced=tokens)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)  # identity defaults stay exact (int8: zero codes, scale 1)


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_variants_agree_with_the_fp32_adapter(bundles, tmp_path, quant):
    ref, bb = _decoder(bundles[quant], "fp32")
    ref_ads = ac.adapters(bb, "fp32", [10, 100], str(tmp_path))
    bounds = {"fp32-transposed": 1e-4, "int8": INT8_BOUND}
    for variant, bound in bounds.items():
        dec, _ = _decoder(bundles[quant], variant)
        got = ac.agreement(ref, dec, ref_ads, ac.adapters(bb, variant, [10, 100], str(tmp_path)), bb.vocab_size, 8)
        for b, r in got.items():
            assert r["max_abs_logit_diff"] <= bound and r["top1_agreement"] >= 0.85, (variant, b, r)


def test_int8_adapters_still_switch_tasks(bundles, tmp_path):
    dec, bb = _decoder(bundles["int8"], "int8")
    one = ac.adapters(bb, "int8", [100], str(tmp_path))
    two = ac.adapters(bb, "int8", [100], str(tmp_path), seed=ac.SEED + 1)  # another task, same bottleneck
    _, _, tokens, a = ac.decode(dec, one[100], STEPS, bb.vocab_size)
    _, _, _, b = ac.decode(dec, two[100], STEPS, bb.vocab_size, forced=tokens)
    _, _, _, none = ac.decode(dec, None, STEPS, bb.vocab_size, forced=tokens)
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) > 4 * INT8_BOUND
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, none)) > 4 * INT8_BOUND


def test_rewrite_keeps_the_adapter_inputs_swappable(bundles):
    model = av.rewrite(onnx.load(bundles["int8"] / "backbone.onnx"), "int8")
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    inits = {t.name for t in model.graph.initializer}
    q, s = "adapter.0.down.weight" + av.Q, "adapter.0.down.weight" + av.SCALE
    assert inputs[q].elem_type == onnx.TensorProto.INT8 and q in inits and s in inits
    assert [d.dim_param or d.dim_value for d in inputs[q].shape.dim] == [128, "bottleneck"]
    assert "adapter.0.down.weight" not in inputs
    kinds = {n.op_type for n in model.graph.node if n.name in av.adapter_matmuls(model)}
    assert kinds == {"DynamicQuantizeMatMul"} and len(av.adapter_matmuls(model)) == 2 * 4
    with pytest.raises(ValueError, match="unknown adapter variant"):
        av.rewrite(model, "fp16")


def test_int8_columns_round_trip():
    w = np.random.default_rng(0).normal(0, 0.05, (64, 10)).astype(np.float32)
    w[:, 3] = 0
    q, scale = av.int8_columns(w)
    assert q.dtype == np.int8 and scale.shape == (10,) and scale[3] == 1 and not q[:, 3].any()
    assert np.abs(q * scale - w).max() <= scale.max() / 2 + 1e-7


def test_node_medians_sum_each_nodes_median():
    ev = lambda name, dur: {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur}  # noqa: E731
    events = [ev("adapter.0/MatMul_1", d) for d in (10, 30, 20)] + [ev("h.0/MatMul_2", d) for d in (100, 300)]
    events += [ev("adapter/columns", 1000), {"cat": "Session", "name": "model_run", "dur": 9999}]
    adapter, total = ac.node_medians(events)
    assert adapter == pytest.approx(0.020) and total == pytest.approx(0.020 + 0.200 + 1.0)


def test_measure_reports_every_bottleneck(bundles):
    recs = ac.measure(bundles["int8"], "fp32", 1, [10, 300], reps=1, steps=2)
    assert [r["bottleneck"] for r in recs] == [10, 300]
    for r in recs:
        assert 0 < r["adapter_kernel_ms_none"] < r["step_kernel_ms_none"] and r["max_abs_logit_diff"] == 0
        assert r["top1_agreement"] == 1 and {"wall_pct", "cpu_pct", "kernel_pct"} <= set(r)


def test_cli_refuses_unknown_variant(capsys):
    with pytest.raises(SystemExit) as e:
        ac.main(["--bundle", "x", "--variants", "fp16"])
    assert e.value.code == 2 and "--variants: unknown ['fp16']" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ak.KINDS)
def test_every_kernel_candidate_computes_x_times_w(kind):
    rng = np.random.default_rng(1)
    w, x = rng.normal(0, 0.02, (96, 20)).astype(np.float32), rng.normal(0, 1, (1, 3, 96)).astype(np.float32)
    level = "ORT_ENABLE_EXTENDED" if kind == "fp16-cast" else "ORT_ENABLE_ALL"
    got = ak.session(ak.graph(96, 20, kind), 1, level).run(None, {"x": x, **ak.feeds(w, kind)})[0]
    bound = {"fp32": 1e-6, "fp32-transposed": 1e-6, "fp16-cast": 1e-3}.get(kind, 0.02)  # int8: weights + acts
    assert got.shape == (1, 3, 20) and np.abs(got - x @ w).max() <= bound, (kind, np.abs(got - x @ w).max())
