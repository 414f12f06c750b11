"""The quantized Llama graph against float math on its own weights (tiny random Llama, GQA 4/2 heads): each
mode's graph equals the fp32 graph of the backbone whose weights training replaces by their blocks
(:mod:`edgevlm.train.quantsim`) within the int8 activation rounding, for the multi-row prefill (M>1) and the
one-row cached decode steps (M=1, onnxruntime #29853); packing q/k/v keeps each weight's own blocks; the nodes
a layer runs; ``edgevlm train --quant int4`` adapters equal their int4 bundle; export warns on a mismatch."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch

from edgevlm.core import bundle, quant
from edgevlm.export import verify
from edgevlm.export.fuse import fuse_graph
from edgevlm.export.graph import build_graph, op_counts
from edgevlm.export.graphstats import stats
from edgevlm.export.quantize import quantize
from edgevlm.train.quantsim import quantize_model

MODES = ("int8", "int4")
# int4 per layer, decode: qkv/o/gate_up/down MatMulNBits, 2 Splits, rotary on q and k (kept outside attention:
# see export/arch/llama.py), GroupQueryAttention, 2 skip RMSNorms, SwiGLU (Sigmoid, 2 Mul), the adapter
# (SkipLayerNorm, down MatMul + bias Add, Relu, columns Mul, up MatMul: its up bias rides the next skip norm).
LAYER_OPS = {
    "com.microsoft.MatMulNBits": 4,
    "Split": 2,
    "com.microsoft.RotaryEmbedding": 2,
    "com.microsoft.GroupQueryAttention": 1,
    "com.microsoft.SkipSimplifiedLayerNormalization": 2,
    "com.microsoft.SkipLayerNormalization": 1,
    "Sigmoid": 1,
    "Mul": 3,
    "MatMul": 2,
    "Add": 1,
    "Relu": 1,
}
PER_LAYER = sum(LAYER_OPS.values())  # 20


@pytest.fixture(scope="module")
def hf(tiny_llama_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager").eval()


def _fused(model) -> onnx.ModelProto:
    return fuse_graph(build_graph(model, fused_attention=True), model.config)


@pytest.fixture(scope="module")
def graphs(hf):
    """mode -> (quantized graph session, fp32 session of the backbone with the mode's dequantized weights)."""
    import copy

    out = {}
    for mode in MODES:
        sim = copy.deepcopy(hf)
        quantize_model(sim, mode)
        out[mode] = (verify.session(quantize(_fused(hf), mode)), verify.session(_fused(sim)))
    return out


def test_packed_projections_quantize_like_their_parts(hf):
    """The exporter quantizes q|k|v and gate|up packed, training each weight alone: the same blocks."""
    layer = hf.model.layers[0]
    for parts in ([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj],
                  [layer.mlp.gate_proj, layer.mlp.up_proj]):  # fmt: skip
        ws = [p.weight.detach().numpy().T for p in parts]  # [in, out] each
        packed = quant.quantize(np.concatenate(ws, 1), 4)
        alone = [quant.quantize(np.ascontiguousarray(w), 4) for w in ws]
        np.testing.assert_array_equal(packed.codes, np.concatenate([a.codes for a in alone]))
        np.testing.assert_array_equal(packed.scales, np.concatenate([a.scales for a in alone]))
        np.testing.assert_array_equal(packed.zero_points, np.concatenate([a.zero_points for a in alone]))


@pytest.mark.parametrize("mode", MODES)
def test_nodes_per_layer(hf, mode):
    q = quantize(_fused(hf), mode)
    n_layer = hf.config.num_hidden_layers
    ops = op_counts(q)
    layer_ops = {k: v for k, v in ops.items() if k in LAYER_OPS}
    want = {k: v * n_layer for k, v in LAYER_OPS.items()}
    want["com.microsoft.MatMulNBits"] += 1  # the LM head
    # layer 0's input norm has no residual before it: x / rms * w in standard ops (Pow, ReduceMean, Add, Sqrt,
    # Div, Mul) instead of a skip norm, which the final norm has
    want["Mul"] += 1
    want["Add"] += 1
    assert layer_ops == want, ops
    assert ops["com.microsoft.GatherBlockQuantized"] == 1 and "Concat" not in ops, ops
    s = stats(q)
    assert s["nodes_per_layer"] == (PER_LAYER * n_layer + 5) / n_layer, s  # layer 0's RMSNorm: 5 nodes more
    fp32 = stats(_fused(hf))
    assert s["weight_bytes_per_token"] < fp32["weight_bytes_per_token"] * (0.3 if mode == "int8" else 0.17), (s, fp32)


def _left_padded(vocab: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    rows = [list(rng.integers(10, vocab, n)) for n in (9, 5)]
    ids, mask = np.zeros((2, 9), np.int64), np.zeros((2, 9), np.int64)
    for i, r in enumerate(rows):
        ids[i, 9 - len(r) :], mask[i, 9 - len(r) :] = r, 1
    return ids, mask


def _decode(sess, ids, mask, n: int, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prefill logits [b, s, V], greedy tokens [b, n], the cached one-row steps' logits [b, n, V])."""
    logits, past = verify.step(sess, ids, mask, verify.empty_past(cfg, len(ids)))
    toks, steps = [], []
    for _ in range(n):
        toks.append(logits[:, -1].argmax(-1)[:, None])
        mask = np.concatenate([mask, np.ones_like(toks[-1])], 1)
        logits, past = verify.step(sess, toks[-1], mask, past)
        steps.append(logits[:, -1])
    return logits, np.concatenate(toks, 1), np.stack(steps, 1)


@pytest.mark.parametrize("mode", MODES)
def test_quantized_graph_equals_float_math_on_its_weights(hf, graphs, mode):
    """Left-padded two-row prefill (M>1) and 4 cached one-row steps (M=1) of the quantized graph vs the fp32
    graph on the dequantized weights, fed the same tokens; then the whole sequence re-run as one prefill (M>1)
    against the cached steps (M=1)."""
    sess, ref = graphs[mode]
    cfg = {"n_layer": 3, "n_head": 4, "n_embd": 64, "vocab_size": 1024, "n_kv_head": 2, "head_dim": 16}
    ids, mask = _left_padded(1000)
    got_pre, toks, got_steps = _decode(sess, ids, mask, 4, cfg)
    want_pre, _ = verify.step(ref, ids, mask, verify.empty_past(cfg, 2))
    full, fmask = np.concatenate([ids, toks], 1), np.ones((2, 13), np.int64)
    fmask[:, :9] = mask
    want_full, _ = verify.step(ref, full, fmask, verify.empty_past(cfg, 2))
    got_full, _ = verify.step(sess, full, fmask, verify.empty_past(cfg, 2))
    scale = np.abs(want_full).max()
    real = mask.astype(bool)
    pre = np.abs(verify.step(sess, ids, mask, verify.empty_past(cfg, 2))[0] - want_pre)[real].max() / scale
    dec = np.abs(got_steps - want_full[:, 9:]).max() / scale  # M=1 vs float
    many = np.abs(got_full[:, 9:] - want_full[:, 9:]).max() / scale  # M>1 vs float
    one_vs_many = np.abs(got_steps - got_full[:, 9:]).max() / scale
    print(mode, f"prefill {pre:.4f} decode {dec:.4f} rerun {many:.4f} M=1 vs M>1 {one_vs_many:.4f} (of max |logit|)")
    # the int8 activation rounding (per token and block of 32) of every MatMulNBits is all that is left
    assert max(pre, dec, many, one_vs_many) <= 0.05, (pre, dec, many, one_vs_many)
    plain = verify.session(_fused(hf))  # int4: the float weights themselves are further off (the test can tell)
    far = np.abs(verify.step(plain, full, fmask, verify.empty_past(cfg, 2))[0][:, 9:] - got_full[:, 9:]).max() / scale
    print(mode, f"vs the float weights {far:.4f}")
    assert mode == "int8" or far > 2 * many, (far, many)


def test_int4_trained_adapter_equals_its_int4_bundle(tmp_path, tiny_llama_dir, caplog):
    """``train --quant int4``: the adapter (recorded as trained for int4) on the torch backbone with int4 weights
    equals the int4 bundle's graph within the activation rounding; exporting it as int8 warns in one line."""
    from edgevlm.core.config import AdapterMeta, TaskConfig
    from edgevlm.export import export_bundle
    from edgevlm.export.adapters import read_ort_adapter
    from edgevlm.train.api import TrainSpec, train
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.model import VLM
    from edgevlm.train.tasks import Example

    cfg = TaskConfig("alpha", 8, ["<src>", "<out>"], "<src> {input} <out>", max_new_tokens=8)
    ex = [Example(f"word {i} and {i + 1}", f"result {i}") for i in range(8)]
    run = dict(steps=6, batch_size=4, eval_every=6, save_every=6, lr=3e-2, progress=False, quant="int4")
    spec = TrainSpec(
        tasks=[cfg], out=tmp_path / "ad", backbone=str(tiny_llama_dir), examples={"alpha": (ex, ex)}, **run
    )
    path = train(spec)["alpha"].path
    assert AdapterMeta.load(path).training["quant"] == "int4"
    root = export_bundle(str(tiny_llama_dir), [path], "int4", out=tmp_path / "b4", progress=False)
    tensors = read_ort_adapter(root / bundle.load_manifest(root).tasks["alpha"].adapter_file)
    bb = load_backbone(tiny_llama_dir)
    bb.quantize_weights("int4")
    with VLM(bb.model) as vlm:
        vlm.add_task(cfg).load_tensors({k: torch.from_numpy(v) for k, v in tensors.items()}, str(path))
        ups = [t.detach() for k, t in vlm.task("alpha").tensors().items() if "up.weight" in k]
        assert max(float(t.abs().max()) for t in ups) > 0  # trained: not the identity
        sess = verify.session(str(root / bundle.BACKBONE_FILE))
        prompt = [1024] + list(range(40, 60)) + [1025]
        diff = verify.torch_vs_graph(sess, vlm.eval(), bb.sizes.to_dict(), prompt, "alpha", tensors)
        with torch.no_grad():
            ref, _ = vlm(torch.tensor([prompt]), task="alpha")
    print("int4-trained adapter: torch simulation vs int4 graph", diff, "of", float(ref.abs().max()))
    assert diff <= 0.05 * float(ref.abs().max()), diff
    with caplog.at_level(logging.WARNING, logger="edgevlm.export"):
        export_bundle(str(tiny_llama_dir), [path], "int8", out=tmp_path / "b8", progress=False)
    lines = [r.getMessage() for r in caplog.records if "trained for --quant int4" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "exported as int8" in lines[0], caplog.text
