"""VLM adapters and task embeddings: arithmetic, identity at init, coexisting tasks, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgevlm.core import names
from edgevlm.core.config import AdapterMeta, TaskConfig
from edgevlm.core.errors import ConfigError, TaskError
from edgevlm.train.adapters import load_adapter, save_adapter
from edgevlm.train.decoding import greedy
from edgevlm.train.model import VLM, Adapter


def small_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=97, n_layer=2, n_head=2, n_embd=16, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def task_cfg(name="t1", bottleneck=4) -> TaskConfig:
    return TaskConfig(name, bottleneck, ["<a>", "<b>"], "<a> {input} <b>")


def randomize(module: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def numpy_adapter(h, ln_w, ln_b, dw, db, uw, ub, eps=1e-5):
    """Hand-written reference: h + up(relu(down(LN(h))))."""
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    x = (h - mu) / np.sqrt(var + eps) * ln_w + ln_b
    return h + np.maximum(x @ dw + db, 0) @ uw + ub


def test_adapter_matches_reference():
    a = Adapter(16, 5)
    randomize(a)
    h = torch.randn(3, 7, 16)
    got = a(h).detach().numpy()
    t = {k: v.detach().numpy() for k, v in a.tensors(0).items()}
    ref = numpy_adapter(h.numpy(), *(t[names.adapter_name(0, p)] for p in names.ADAPTER_PARTS))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_fresh_adapter_is_exact_identity():
    a = Adapter(16, 5)
    h = torch.randn(2, 3, 16)
    assert torch.equal(a(h), h)
    vlm = VLM(small_gpt2())
    vlm.add_task(task_cfg())
    ids = torch.randint(0, 97, (2, 9))
    plain, _ = vlm(ids)
    with_task, _ = vlm(ids, task="t1")
    assert torch.equal(plain, with_task)


def test_task_tokens_start_from_their_words_or_the_table_mean(tiny_backbone):
    from edgevlm.train.data import token_init_ids

    cfg = TaskConfig("d", 4, ["<persona_b>", "<user>"], "<persona_b> {input} <user>")
    tok, vlm = tiny_backbone.tokenizer, VLM(tiny_backbone.model)
    ids = token_init_ids(tok, cfg)
    assert ids == [
        tok.encode(" persona b", add_special_tokens=False).ids,
        tok.encode(" user", add_special_tokens=False).ids,
    ]
    assert token_init_ids(tok, cfg, "mean") is None
    wte = vlm.arch.embeddings(vlm.backbone).weight.detach()
    words = vlm.add_task(cfg, ids).task_embeddings.detach()
    for k, row in enumerate(ids):
        torch.testing.assert_close(words[k], wte[row].mean(0))
    assert not torch.equal(words[0], words[1])  # the model can tell the persona from the user turn at step 0
    mean = vlm.add_task(TaskConfig("m", 4, ["<a>", "<b>"], "<a> {input} <b>")).task_embeddings.detach()
    torch.testing.assert_close(mean, wte.mean(0).expand(2, -1))
    with pytest.raises(TaskError, match="init_ids has 1 entries, expected one per special token"):
        vlm.add_task(TaskConfig("x", 4, ["<a>", "<b>"], "<a> {input} <b>"), [[1]])
    with pytest.raises(ConfigError, match="--token-init must be one of words, mean, got 'x'"):
        token_init_ids(tok, cfg, "x")


def test_tasks_coexist_and_none_is_plain_backbone():
    model = small_gpt2()
    ids = torch.randint(0, 97, (1, 8))
    ref = model(input_ids=ids).logits
    vlm = VLM(model)
    for seed, name in enumerate(("t1", "t2")):
        randomize(vlm.add_task(task_cfg(name)), seed=seed)
    l1, _ = vlm(ids, task="t1")
    l2, _ = vlm(ids, task="t2")
    l0, _ = vlm(ids)
    assert torch.allclose(l0, ref, atol=1e-6)
    assert (l1 - l2).abs().max() > 1e-3 and (l1 - l0).abs().max() > 1e-3


def test_task_tokens_read_task_embeddings():
    vlm = VLM(small_gpt2())
    mod = vlm.add_task(task_cfg())
    with torch.no_grad():
        mod.task_embeddings.copy_(torch.arange(32.0).reshape(2, 16))
    emb = vlm.embed(torch.tensor([[97, 5, 98]]), "t1")
    assert torch.equal(emb[0, 0], mod.task_embeddings[0]) and torch.equal(emb[0, 2], mod.task_embeddings[1])
    assert torch.equal(emb[0, 1], vlm.backbone.transformer.wte.weight[5])
    with pytest.raises(TaskError):
        vlm.embed(torch.tensor([[97]]), None)


def test_kv_cache_decode_matches_full_forward():
    vlm = VLM(small_gpt2())
    randomize(vlm.add_task(task_cfg()))
    ids = torch.tensor([[97, 3, 4, 5, 98]])
    out = greedy(vlm, ids[0].tolist(), "t1", 6, None)
    seq = ids[0].tolist()
    for _ in range(6):  # greedy without cache, re-running the whole prefix
        logits, _ = vlm(torch.tensor([seq]), task="t1")
        seq.append(int(logits[0, -1].argmax()))
    assert out == seq[5:]


def test_save_load_round_trip(tmp_path):
    vlm = VLM(small_gpt2())
    randomize(vlm.add_task(task_cfg()))
    tensors = {k: v.detach().numpy() for k, v in vlm.task("t1").tensors().items()}
    save_adapter(tmp_path, tensors, AdapterMeta(task_cfg(), "fp", {"n_layer": 2}))
    meta, loaded = load_adapter(tmp_path)
    assert meta.task == task_cfg()
    vlm2 = VLM(small_gpt2())
    vlm2.add_task(meta.task).load_tensors({k: torch.from_numpy(v) for k, v in loaded.items()}, str(tmp_path))
    ids = torch.tensor([[97, 1, 2, 98]])
    assert torch.equal(vlm(ids, task="t1")[0], vlm2(ids, task="t1")[0])
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("bad", [0, -3])
def test_bottleneck_must_be_positive(bad):
    with pytest.raises(ConfigError, match="bottleneck"):
        task_cfg(bottleneck=bad)


def test_template_needs_input_field():
    with pytest.raises(ConfigError, match="input"):
        TaskConfig("x", 4, ["<a>"], "<a>")


def test_unknown_task_lists_available():
    vlm = VLM(small_gpt2())
    vlm.add_task(task_cfg())
    with pytest.raises(TaskError, match="t1"):
        vlm(torch.tensor([[1]]), task="nope")
    with pytest.raises(TaskError, match="already"):
        vlm.add_task(task_cfg())
