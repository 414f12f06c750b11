"""The Llama family on the training side: architecture records, VLM on a tiny random Llama (GQA 4/2), backbone
sources, the GGUF tokenizer; slow tests on the real SmolLM2-135M."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from edgevlm.core.config import TaskConfig
from edgevlm.core.errors import BackboneError, TaskError
from edgevlm.train.backbone import load_backbone
from edgevlm.train.model import VLM


def task_cfg(name="t1", bottleneck=8) -> TaskConfig:
    return TaskConfig(name, bottleneck, ["<a>", "<b>"], "<a> {input} <b>")


def perturb(vlm: VLM, name: str, seed: int) -> None:
    """Make task ``name``'s adapters and embeddings non-trivial (as if trained)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vlm.task(name).parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return load_backbone(tiny_llama_dir)


def fresh(bb) -> VLM:
    """A VLM on a reloaded model: hooks of other tests never share it."""
    from transformers import AutoModelForCausalLM

    return VLM(AutoModelForCausalLM.from_pretrained(bb.path, attn_implementation="eager").eval())


def test_arch_record_sizes(llama):
    s = llama.sizes
    assert (s.architecture, s.n_layer, s.n_embd, s.n_head, s.n_kv_head, s.head_dim) == ("llama", 3, 64, 4, 2, 16)
    assert (s.vocab_size, s.n_positions, s.rope_theta, s.tie_embeddings) == (1024, 256, 10000.0, True)
    assert llama.config_dict == {"n_layer": 3, "n_head": 4, "n_embd": 64, "vocab_size": 1024, "n_positions": 256}
    assert llama.eos_token_id == llama.tokenizer.token_to_id("<|endoftext|>")


def test_fingerprint_covers_every_weight(llama):
    vlm = fresh(llama)
    before = llama.fingerprint
    from edgevlm.train.backbone import fingerprint

    assert fingerprint(vlm.backbone) == before  # deterministic across loads
    last = list(vlm.backbone.parameters())[-1]  # the final norm: never in a "sample" of the weights
    with torch.no_grad():
        last[0] += 1e-3
    assert fingerprint(vlm.backbone) != before


def test_identity_at_init_is_bitwise(llama):
    vlm = fresh(llama)
    plain = vlm.backbone(torch.randint(0, 1024, (2, 11))).logits  # warm-up, then a fixed input
    ids = torch.randint(0, 1024, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = vlm.backbone(ids).logits
        vlm.add_task(task_cfg())
        got, _ = vlm(ids, task="t1")
        none, _ = vlm(ids)
    assert torch.equal(got, plain) and torch.equal(none, plain)


def test_adapters_change_outputs_and_tasks_differ(llama):
    vlm = fresh(llama)
    for i, name in enumerate(("t1", "t2")):
        vlm.add_task(task_cfg(name))
        perturb(vlm, name, i)
    ids = torch.tensor([[1024, 5, 6, 7, 1025, 9]])
    with torch.no_grad():
        a, _ = vlm(ids, task="t1")
        b, _ = vlm(ids, task="t2")
        plain = vlm.backbone(ids[:, 1:4]).logits
        none, _ = vlm(ids[:, 1:4])
    assert (a - b).abs().max() > 1e-2
    assert torch.equal(none, plain), "task=None must be the plain backbone"
    with pytest.raises(TaskError, match="no task was selected"):
        vlm(ids)


def test_kv_cache_greedy_equals_full_rerun(llama):
    vlm = fresh(llama)
    vlm.add_task(task_cfg())
    perturb(vlm, "t1", 0)
    prompt = [1024, 11, 12, 13, 1025]
    from edgevlm.train.decoding import greedy

    got = greedy(vlm, prompt, "t1", 8, None)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(8):
            logits, _ = vlm(torch.tensor([ids]), task="t1")
            ids.append(int(logits[0, -1].argmax()))
    assert got == ids[len(prompt) :]


def test_left_padding_gives_unpadded_logits(llama):
    vlm = fresh(llama)
    vlm.add_task(task_cfg())
    perturb(vlm, "t1", 1)
    ids = torch.tensor([[1024, 20, 21, 22, 1025]])
    padded = torch.cat([torch.full((1, 3), llama.eos_token_id), ids], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        ref, _ = vlm(ids, task="t1")
        got, _ = vlm(padded, attention_mask=mask, task="t1")
    torch.testing.assert_close(got[:, 3:], ref, rtol=0, atol=1e-5)


def test_close_removes_every_hook(llama):
    vlm = fresh(llama)
    blocks = vlm.arch.blocks(vlm.backbone)
    assert all(len(b._forward_hooks) == 1 for b in blocks)
    vlm.add_task(task_cfg())
    perturb(vlm, "t1", 2)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        plain = vlm.backbone(ids).logits.clone()
        vlm._active = vlm.task("t1")  # an adapter left active must not leak into the HF model after close()
        vlm.close()
        after = vlm.backbone(ids).logits
    assert all(len(b._forward_hooks) == 0 for b in blocks)
    assert not any(k.startswith("_vlm") for b in blocks for k in vars(b))
    assert torch.equal(after, plain)
    with pytest.raises(TaskError, match="closed"):
        vlm(torch.tensor([[1024, 5]]), task="t1")


def test_context_manager_closes(llama):
    vlm = fresh(llama)
    with vlm as v:
        assert v is vlm and len(vlm._handles) == 3
    assert all(len(b._forward_hooks) == 0 for b in vlm.arch.blocks(vlm.backbone))


def test_target_loss_equals_full_logits_loss(llama):
    from torch.nn import functional as F

    vlm = fresh(llama)
    vlm.add_task(task_cfg())
    perturb(vlm, "t1", 4)
    ids = torch.tensor([[1024, 5, 6, 1025, 7, 8, 9], [3, 1024, 5, 1025, 10, 11, 12]])
    labels = torch.full_like(ids, -100)
    labels[:, 4:] = ids[:, 4:]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logits, _ = vlm(ids, attention_mask=mask, task="t1")
        ref = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        got = vlm.target_loss(ids, mask, labels, "t1", -100)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_bf16_autocast_loss_close_to_fp32_and_grads_stay_fp32(llama):
    vlm = fresh(llama)
    vlm.add_task(task_cfg())
    perturb(vlm, "t1", 5)
    ids = torch.randint(0, 1024, (4, 24), generator=torch.Generator().manual_seed(1))
    labels = torch.where(torch.arange(24) >= 12, ids, torch.full_like(ids, -100))
    mask = torch.ones_like(ids)
    ref = vlm.target_loss(ids, mask, labels, "t1", -100)
    vlm.train_dtype = torch.bfloat16
    got = vlm.target_loss(ids, mask, labels, "t1", -100)
    got.backward()
    assert got.dtype == torch.float32 and abs(got.item() - ref.item()) < 0.02 * ref.item()
    up = vlm.task("t1").adapters[0].up_weight
    assert up.dtype == torch.float32 and up.grad is not None and up.grad.abs().sum() > 0


def cli(*argv: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgevlm.apps.cli", *argv], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def trained_llama(tmp_path_factory, tiny_llama_dir):
    """An nlg adapter trained for 30 steps on the tiny Llama through the real CLI."""
    out = tmp_path_factory.mktemp("llama-train") / "nlg"
    r = cli("train", "--backbone", str(tiny_llama_dir), "--task", "nlg", "--steps", "30", "--eval-every", "10",
            "--lr", "1e-2", "--batch-size", "8", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


def test_cli_training_lowers_loss_on_llama(trained_llama, tiny_llama_dir):
    from edgevlm.core.config import ADAPTER_JSON

    losses = json.loads((trained_llama / "train_summary.json").read_text())["nlg"]["valid_loss"]
    assert losses[-1] < 0.9 * losses[0], losses  # random backbone: 7.2 -> 6.1 measured
    adir = next(p.parent for p in trained_llama.rglob(ADAPTER_JSON))
    meta = json.loads((adir / ADAPTER_JSON).read_text())
    assert meta["backbone_fingerprint"] == load_backbone(tiny_llama_dir).fingerprint


def test_distill_teacher_leaves_no_hooks_on_shared_backbone(trained_llama, tiny_llama_dir, tmp_path):
    from edgevlm.train.distill import distill_targets
    from edgevlm.train.tasks import builtin_task
    from edgevlm.train.tasks.mini import mini_task

    bb = load_backbone(tiny_llama_dir)
    blocks = list(bb.arch.blocks(bb.model))
    out = distill_targets(trained_llama, bb, builtin_task("nlg"), mini_task("nlg", "train", 3), tmp_path)
    assert len(out) == 3
    assert all(len(b._forward_hooks) == 0 for b in blocks)


@pytest.mark.parametrize(
    "edit, needle",
    [
        ({"model_type": "gpt_neox"}, "model_type='gpt_neox'"),
        ({"sliding_window": 64, "model_type": "mistral"}, "sliding_window=64"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "rope_scaling="),
        ({"attention_bias": True}, "attention_bias=True"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ],
)
def test_unsupported_config_is_one_line(tmp_path, tiny_llama_dir, edit, needle):
    import shutil

    d = tmp_path / "bad"
    shutil.copytree(tiny_llama_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(BackboneError) as e:
        load_backbone(d)
    msg = str(e.value)
    assert "\n" not in msg and str(d / "config.json") in msg and needle in msg, msg


def test_bad_sources_are_one_line(tmp_path, monkeypatch):
    from edgevlm.train import sources

    for spec, needle in ((tmp_path / "none", "does not exist"), (tmp_path / "x.gguf", "x.gguf does not exist")):
        with pytest.raises(BackboneError, match=needle):
            load_backbone(spec)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(BackboneError, match="junk.gguf: not a readable GGUF"):
        load_backbone(junk)
    monkeypatch.setitem(sources.BUILTIN, "smollm2-135m", ("edgevlm_no_such_pkg", "m.gguf", "no-such-pkg==1"))
    with pytest.raises(BackboneError, match="package 'edgevlm_no_such_pkg' is not installed.*no-such-pkg==1"):
        load_backbone("smollm2-135m")


# ---- the real SmolLM2 GGUF: tokenizer from its own vocabulary (fast), model (slow) ----


@pytest.fixture(scope="module")
def gguf_path():
    from edgevlm.train import sources

    try:
        return sources.locate_builtin("smollm2-135m")
    except BackboneError as e:
        pytest.skip(str(e))


def test_gguf_tokenizer_matches_gguf_vocabulary(gguf_path):
    from gguf import GGUFReader

    from edgevlm.train import gguf_vocab

    r = GGUFReader(str(gguf_path))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    tok = gguf_vocab.tokenizer(gguf_vocab.read(gguf_path))
    assert tok.get_vocab(with_added_tokens=True) == {t: i for i, t in enumerate(tokens)}
    merges = json.loads(tok.to_str())["model"]["merges"]
    assert [" ".join(m) if isinstance(m, list) else m for m in merges] == r.fields["tokenizer.ggml.merges"].contents()
    eos, bos = (int(r.fields[f"tokenizer.ggml.{k}_token_id"].contents()) for k in ("eos", "bos"))
    assert (tokens[eos], tokens[bos]) == ("<|im_end|>", "<|im_start|>")
    enc = tok.encode("The capital of France is")
    assert enc.tokens == ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"], "no BOS, byte-level BPE"
    assert tok.encode(" 2024").tokens == ["Ġ", "2", "0", "2", "4"], "smollm pre-tokenizer splits digits"
    chat = tok.encode("<|im_start|>user\nHi<|im_end|>")
    assert chat.ids[0] == bos and chat.ids[-1] == eos
    text = "héllo wörld  <tabs>\t\n 3.14"
    assert tok.decode(tok.encode(text).ids) == text


@pytest.fixture(scope="module")
def smollm2(gguf_path):
    return load_backbone("smollm2-135m")


@pytest.mark.slow
def test_smollm2_converts_once_and_reloads_fast(smollm2):
    from edgevlm.train.sources import SOURCE_JSON

    d = smollm2.path
    assert (d / "model.safetensors").is_file() and (d / SOURCE_JSON).is_file()
    assert not (d / "tokenizer.model").exists()
    assert smollm2.sizes.n_layer == 30 and smollm2.sizes.n_kv_head == 3 and smollm2.sizes.rope_theta == 100000.0
    assert smollm2.tokenizer.id_to_token(smollm2.eos_token_id) == "<|im_end|>"
    assert smollm2.chat_template and "<|im_start|>" in smollm2.chat_template
    before = {f.name: f.stat().st_mtime_ns for f in d.iterdir()}
    again = load_backbone("smollm2-135m")
    assert again.path == d and {f.name: f.stat().st_mtime_ns for f in d.iterdir()} == before, "converted again"


@pytest.mark.slow
def test_smollm2_greedy_paris(smollm2):
    from edgevlm.train.decoding import greedy

    vlm = VLM(smollm2.model)
    try:
        ids = smollm2.tokenizer.encode("The capital of France is").ids
        out = greedy(vlm, ids, None, 3, smollm2.eos_token_id)
        assert smollm2.tokenizer.decode(out).startswith(" Paris"), smollm2.tokenizer.decode(out)
    finally:
        vlm.close()


@pytest.mark.slow
def test_smollm2_adapter_steps_lower_loss(tmp_path, smollm2):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    out = tmp_path / "nlg"
    r = cli("train", "--backbone", "smollm2-135m", "--task", "nlg", "--steps", "6", "--eval-every", "3",
            "--batch-size", "4", "--max-len", "64", "--lr", "3e-3", "--out", str(out), env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    losses = json.loads((out / "train_summary.json").read_text())["nlg"]["valid_loss"]
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize(
    "preset, pre_import, want",
    [(None, "", "True PASSIVE"), ("ACTIVE", "", "False ACTIVE"), (None, "import torch; ", "False None")],
)
def test_passive_openmp_unless_user_chose_or_too_late(preset, pre_import, want):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = f"{pre_import}import os; from edgevlm.core.env import passive_openmp; "
    code += "r = passive_openmp(); print(r, os.environ.get('OMP_WAIT_POLICY'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.strip() == want, r.stderr
