"""Exporter, fp32: graph contract, ONNX vs PyTorch (prefill + cached decode), ORT adapters, manifest, atomicity."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from export_helpers import TASKS, lora, reference_vlm, task_prompts

from edgevlm.core import bundle, names
from edgevlm.core.errors import BundleError
from edgevlm.export import verify
from edgevlm.export.adapters import read_ort_adapter
from edgevlm.export.graph import build_graph, decoder_io, graph_inputs
from edgevlm.train.decoding import greedy


@pytest.fixture(scope="module")
def fp32(tiny_bundle):
    return tiny_bundle("fp32")


@pytest.fixture(scope="module")
def ref_vlm(tiny_dir, trained_adapters):
    return reference_vlm(tiny_dir, trained_adapters)


@pytest.fixture(scope="module")
def prompts(tiny_backbone):
    return task_prompts(tiny_backbone.tokenizer, tiny_backbone.model.config.vocab_size)


@pytest.fixture(scope="module")
def fp32_sess(fp32):
    return verify.session(str(fp32 / bundle.BACKBONE_FILE))


def _cfg(m: bundle.Manifest) -> bundle.BackboneRecord:
    return m.backbone


@pytest.mark.parametrize("fused", [False, True])
def test_graph_contract(tiny_backbone, fused):
    model = build_graph(tiny_backbone.model, fused_attention=fused)
    onnx.checker.check_model(model, full_check=not fused)  # strict shape inference knows no com.microsoft ops
    if not fused:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    c = tiny_backbone.model.config
    spec = decoder_io(c).names()
    options = [o.name for o in decoder_io(c).options]
    assert [i.name for i in model.graph.input] == spec["inputs"] + spec["adapter_inputs"] + [
        names.ADAPTER_COLUMNS
    ] + options
    assert [o.name for o in model.graph.output] == spec["outputs"]
    gi = graph_inputs(model)
    assert gi[names.ADAPTER_COLUMNS] == [names.COLUMN_ROWS_DIM, names.COLUMNS_DIM]
    assert gi[names.LOGITS_TO_KEEP] == [1]
    hd = c.n_embd // c.n_head
    assert gi[names.INPUT_IDS] == [names.BATCH_DIM, names.SEQ_DIM]
    assert gi[names.past_key(0)] == [names.BATCH_DIM, c.n_head, names.PAST_DIM, hd]
    assert gi[names.adapter_name(0, "down.weight")] == [c.n_embd, names.BOTTLENECK_DIM]
    assert gi[names.TASK_EMBEDDINGS] == [names.TASK_TOKENS_DIM, c.n_embd]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in spec["adapter_inputs"]:  # optional: identity default with B = T = 1
        assert inits[n].dtype == np.float32
        assert inits[n].shape == names.adapter_shape(n, c.n_embd, 1, 1)
        assert np.all(inits[n] == names.identity_value(n))
    assert np.array_equal(inits[names.ADAPTER_COLUMNS], np.ones((1, 1), np.float32))  # every column: one task
    weights = set(inits) - set(spec["adapter_inputs"])
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    assert len(matmuls) == 4 * c.n_layer + 1  # every backbone linear layer + the LM head, all with initializer weights
    assert inits["lm_head.weight_t"].shape == (c.n_embd, c.vocab_size)
    assert not [n for n in model.graph.node if n.op_type in ("Gemm", "Constant")]


def test_fused_graph_attends_packed_qkv_and_appends_cache_in_one_kernel(tiny_backbone):
    """Fused: each layer's GroupQueryAttention reads c_attn's packed [q | k | v] and the graph's past as they are
    and writes the presents itself; nothing on the cache path copies (Concat) or reorders (Transpose) it."""
    model = build_graph(tiny_backbone.model, fused_attention=True)
    c = tiny_backbone.model.config
    gqa = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
    assert len(gqa) == c.n_layer and not {"Concat", "Transpose", "Split"} & {n.op_type for n in model.graph.node}
    for i, n in enumerate(gqa):
        assert list(n.input[1:5]) == ["", "", names.past_key(i), names.past_value(i)], n.input  # packed QKV
        assert list(n.output[1:]) == [names.present_key(i), names.present_value(i)]
        assert {a.name: a.i for a in n.attribute if a.name.endswith("num_heads")} == {
            "num_heads": c.n_head,
            "kv_num_heads": c.n_head,
        }


def test_manifest_and_files(fp32, trained_adapters):
    m = bundle.load_manifest(fp32, verify=True)
    assert m.backbone.quantization == "fp32" and m.tokenizer.file == bundle.TOKENIZER_FILE
    assert "/" not in json.dumps(m.backbone.to_json())  # the checkpoint by name, no local path
    assert m.backbone.source == "tiny-v2" and m.backbone.architecture == "gpt2"
    assert set(m.tasks) == set(TASKS)
    v = m.backbone.vocab_size
    for name, t in m.tasks.items():
        assert t.bottleneck == TASKS[name]["bottleneck"]
        assert t.special_token_ids == tuple(v + k for k in range(len(t.special_tokens)))
        assert t.generation.max_new_tokens > 0 and t.eos_token_id == m.tokenizer.eos_token_id
    assert set(m.files) == {p.relative_to(fp32).as_posix() for p in fp32.rglob("*") if p.is_file()} - {bundle.MANIFEST}
    counts, n_layer = m.export_log["op_counts"], m.backbone.n_layer
    assert counts["graph"]["LayerNormalization"] == 3 * n_layer + 1 and "Softmax" in counts["graph"]
    fused = counts["fused"]
    assert fused["com.microsoft.GroupQueryAttention"] == n_layer and "Softmax" not in fused
    assert not {"Concat", "Transpose", "Reshape", "Split"} & set(fused), fused  # no cache copy, no head reshapes
    assert m.backbone.kv_cache == "shared"  # GroupQueryAttention writes every present: the runtime shares the buffer
    assert fused["com.microsoft.FastGelu"] == n_layer and "Tanh" not in fused
    assert fused["com.microsoft.SkipLayerNormalization"] + fused.get("LayerNormalization", 0) == 3 * n_layer + 1
    assert fused["com.microsoft.SkipLayerNormalization"] >= 2 * n_layer  # incl. every adapter LayerNorm
    assert max(m.export_log["fp32_max_abs_logit_diff"].values()) <= 1e-4


def test_adapter_files_agree_with_graph(fp32):
    m = bundle.load_manifest(fp32)
    gi = graph_inputs(onnx.load(fp32 / bundle.BACKBONE_FILE, load_external_data=False))
    for name, t in m.tasks.items():
        params = read_ort_adapter(fp32 / t.adapter_file)
        shapes = {k: list(a.shape) for k, a in params.items()}
        assert bundle.check_adapter_against_graph(shapes, gi, m.backbone.n_embd, name) == (
            t.bottleneck,
            len(t.special_tokens),
        )
        shapes.pop(names.adapter_name(0, "up.bias"))
        with pytest.raises(BundleError, match="missing"):
            bundle.check_adapter_against_graph(shapes, gi, m.backbone.n_embd, name)


@pytest.mark.parametrize("task", [None, *TASKS])
def test_fp32_matches_torch_prefill_and_decode(fp32, fp32_sess, ref_vlm, prompts, task):
    m = bundle.load_manifest(fp32, verify=False)
    adapter = read_ort_adapter(fp32 / m.tasks[task].adapter_file) if task else None
    for p in prompts[task][:2]:
        assert verify.torch_vs_graph(fp32_sess, ref_vlm, _cfg(m), p, task, adapter, n_decode=4) <= 1e-4


def test_left_padded_batch_matches_torch(fp32, fp32_sess, ref_vlm, prompts):
    m = bundle.load_manifest(fp32, verify=False)
    task = "dialogue"
    a, b = prompts[task][0], prompts[task][1][:5]
    width = max(len(a), len(b))
    ids = np.array([[0] * (width - len(p)) + p for p in (a, b)])
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in (a, b)])
    adapter = read_ort_adapter(fp32 / m.tasks[task].adapter_file)
    logits, past = verify.step(fp32_sess, ids, mask, verify.empty_past(_cfg(m), 2), adapter)
    with torch.no_grad():
        ref, cache = ref_vlm(torch.tensor(ids), torch.tensor(mask), task=task)
        nxt = torch.tensor([[5], [7]])
        mask2 = np.concatenate([mask, np.ones((2, 1), np.int64)], 1)
        ref2, _ = ref_vlm(nxt, torch.tensor(mask2), task=task, past_key_values=cache)
    valid = mask.astype(bool)
    assert np.abs(logits - ref.numpy())[valid].max() <= 1e-4
    logits2, _ = verify.step(fp32_sess, nxt.numpy(), mask2, past, adapter)
    assert np.abs(logits2 - ref2.numpy()).max() <= 1e-4


def test_run_options_selection_equals_explicit_feeds(fp32, fp32_sess, ref_vlm, prompts):
    m = bundle.load_manifest(fp32, verify=False)
    cfg = _cfg(m)
    outs = {}
    for task, t in m.tasks.items():
        ids = np.array([prompts[task][0]])
        ro = lora(fp32 / t.adapter_file)
        via_ro, _ = verify.step(fp32_sess, ids, np.ones(ids.shape), verify.empty_past(cfg), run_options=ro)
        explicit, _ = verify.step(
            fp32_sess, ids, np.ones(ids.shape), verify.empty_past(cfg), read_ort_adapter(fp32 / t.adapter_file)
        )
        np.testing.assert_array_equal(via_ro, explicit)
        with torch.no_grad():
            ref, _ = ref_vlm(torch.tensor(ids), task=task)
        assert np.abs(via_ro - ref.numpy()).max() <= 1e-4
        outs[task] = via_ro[0, -1]
        plain, _ = verify.step(fp32_sess, ids[:, :3] % cfg.vocab_size, np.ones((1, 3)), verify.empty_past(cfg))
        with torch.no_grad():
            assert np.abs(plain - ref_vlm(torch.tensor(ids[:, :3] % cfg.vocab_size))[0].numpy()).max() <= 1e-4
    assert len({o.argmax() for o in outs.values()}) > 1 or len({o.tobytes() for o in outs.values()}) == len(outs)


@pytest.mark.parametrize("task", [None, *TASKS])
def test_fp32_greedy_identical_to_torch(fp32, fp32_sess, ref_vlm, prompts, task):
    m = bundle.load_manifest(fp32, verify=False)
    ro = lora(fp32 / m.tasks[task].adapter_file) if task else None
    for p in prompts[task][:2]:
        expect = greedy(ref_vlm, p, task, 12, None)
        assert verify.greedy(fp32_sess, _cfg(m), p, 12, run_options=ro) == expect


def test_bundle_write_is_atomic(tmp_path, trained_adapters, monkeypatch):
    from edgevlm.export import writer

    def crash(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(writer, "write_ort_adapter", crash)
    with pytest.raises(OSError, match="simulated"):
        writer.export_bundle(
            "tiny", [trained_adapters["multi"]], out=tmp_path / "b", progress=False, check=False, fuse=False
        )
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_existing_bundle(tmp_path, trained_adapters):
    from edgevlm.export import export_bundle

    out = export_bundle("tiny", [trained_adapters["qa"]], out=tmp_path / "b", progress=False, check=False, fuse=False)
    first = json.loads((out / bundle.MANIFEST).read_text())
    export_bundle("tiny", [trained_adapters["multi"]], out=out, force=True, progress=False, check=False, fuse=False)
    m = bundle.load_manifest(out)
    assert set(first["tasks"]) == {"qa"} and set(m.tasks) == {"nlg", "dialogue"}
    assert not (out / "adapters" / "qa.onnx_adapter").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
