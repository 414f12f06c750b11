"""Qwen2-style q/k/v biases (the one bias the Llama graph takes): a tiny random Qwen2 with non-zero biases trains
(the VLM's identity), exports with the writer's fp32 self-check and matches HF Qwen2ForCausalLM on a left-padded
batch with cached steps; the self-check leaves no adapter hook on the model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from edgevlm.core import names
from edgevlm.export import verify
from edgevlm.export.graph import build_graph

TOL = 1e-4


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    from llama_helpers import TINY_LLAMA
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from edgevlm.train.tiny import ensure_tiny

    out = tmp_path_factory.mktemp("tiny-qwen2") / "model"
    torch.manual_seed(0)
    cfg = Qwen2Config(**TINY_LLAMA, bos_token_id=0, eos_token_id=0, pad_token_id=0, use_sliding_window=False)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
            elif name.endswith("proj.bias"):
                p.normal_(0.0, 0.5)  # q/k/v biases that matter
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(ensure_tiny() / "tokenizer.json", out / "tokenizer.json")
    return out


def _run(sess, ids, mask, past):
    out = sess.run(None, verify.feeds(ids, mask, past))
    return out[0], out[1:]


def test_graph_matches_hf_qwen2_with_biases(qwen_dir):
    from edgevlm.train.backbone import load_backbone

    hf = load_backbone(qwen_dir).model
    assert all(hf.model.layers[0].self_attn.q_proj.bias.abs() > 0)
    sess = verify.session(build_graph(hf))
    ids = np.array([[0, 0, 5, 9, 33, 70], [11, 12, 13, 14, 15, 16]])
    mask = (np.arange(6) >= np.array([[2], [0]])).astype(np.int64)
    past = [np.zeros((2, 2, 0, 16), np.float32) for _ in range(2 * 3)]
    got, past = _run(sess, ids, mask, past)
    with torch.no_grad():
        pos = torch.tensor((mask.cumsum(-1) - 1).clip(0))
        ref = hf(torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=pos, use_cache=True)
        assert np.abs(got - ref.logits.numpy())[mask.astype(bool)].max() < TOL
        cache = ref.past_key_values
        for _ in range(2):
            nxt = ref.logits[:, -1].argmax(-1, keepdim=True)
            mask = np.concatenate([mask, np.ones((2, 1), np.int64)], 1)
            pos = torch.tensor(mask.sum(-1, keepdims=True) - 1)
            ref = hf(nxt, attention_mask=torch.tensor(mask), position_ids=pos, past_key_values=cache, use_cache=True)
            cache = ref.past_key_values
            got, past = _run(sess, nxt.numpy(), mask, past)
            assert np.abs(got - ref.logits.numpy()).max() < TOL


@pytest.mark.parametrize("quant", ["fp32", "int4"])
def test_qwen2_exports_through_the_self_check(tmp_path, qwen_dir, quant):
    from edgevlm.core import bundle
    from edgevlm.export import export_bundle

    root = export_bundle(str(qwen_dir), [], quant, out=tmp_path / quant, progress=False)
    m = bundle.load_manifest(root, verify=True)
    assert m.backbone.architecture == "llama" and m.backbone.n_kv_head == 2
    assert m.export_log["fp32_max_abs_logit_diff"]["<none>"] < TOL
    assert names.LOGITS in {o.name for o in verify.session(str(root / bundle.BACKBONE_FILE)).get_outputs()}


def test_self_check_leaves_no_hooks_even_when_it_fails(tmp_path, qwen_dir):
    from edgevlm.core.errors import ExportError
    from edgevlm.export import writer
    from edgevlm.train.backbone import load_backbone

    bb = load_backbone(qwen_dir)
    path = writer.spill(build_graph(bb.model), tmp_path / "g" / "backbone.onnx")
    assert writer.self_check(path, bb, [])["<none>"] < TOL
    with torch.no_grad():
        bb.model.model.layers[0].self_attn.k_proj.bias += 1.0  # the graph no longer matches the model
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        writer.self_check(path, bb, [])
    assert not any(m._forward_hooks for m in bb.model.modules())


def test_qwen2_int4_bundle_runs_and_follows_pytorch(tmp_path, qwen_dir):
    """The int4 bundle through the runtime: it decodes what its own graph's greedy says (cut at EOS), and on
    PyTorch's greedy continuation its teacher-forced top-1 agrees with PyTorch at most positions."""
    from transformers import Qwen2ForCausalLM

    from edgevlm.core import bundle
    from edgevlm.export import export_bundle
    from edgevlm.runtime import Runtime

    root = export_bundle(str(qwen_dir), [], "int4", out=tmp_path / "int4", progress=False)
    cfg = bundle.load_manifest(root, verify=True).backbone
    hf = Qwen2ForCausalLM.from_pretrained(str(qwen_dir)).eval()
    rt = Runtime.load(root, threads=1)
    sess = verify.session(str(root / bundle.BACKBONE_FILE))
    agree = total = 0
    for prompt in ([5, 9, 33, 70], [11, 12, 13, 14, 15, 16], [200, 3, 77]):
        graph = verify.greedy(sess, cfg, prompt, 8)
        want = graph[: graph.index(0)] if 0 in graph else graph  # EOS (id 0) ends the runtime's decoding
        assert rt.generate_tokens(prompt, max_new_tokens=8) == want
        with torch.no_grad():
            ref = hf.generate(torch.tensor([prompt]), max_new_tokens=8, min_new_tokens=8, do_sample=False)[0]
        logits, _ = verify.step(sess, ref[None, :-1].numpy(), np.ones((1, len(ref) - 1)), verify.empty_past(cfg))
        agree += int((logits[0, len(prompt) - 1 :].argmax(-1) == ref[len(prompt) :].numpy()).sum())
        total += 8
    assert agree / total >= 0.8, f"int4 top-1 agreement with PyTorch {agree}/{total}"
