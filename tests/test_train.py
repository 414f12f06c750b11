"""Training: frozen backbone, held-out loss drops, resume after interruption, multi-task, --full, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgevlm.train import trainer as train_mod
from edgevlm.train.adapters import load_adapter
from edgevlm.train.api import TrainSpec, train
from edgevlm.train.backbone import load_backbone


def spec(out, task=("nlg",), steps=60, **kw) -> TrainSpec:
    base = dict(batch_size=8, max_len=192, eval_every=steps, save_every=1000, progress=False)
    return TrainSpec(tasks=list(task), out=out, steps=steps, **{**base, **kw})


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_adapter_training_freezes_backbone_and_lowers_loss(tmp_path, tiny_dir):
    bb = load_backbone("tiny")
    before = snapshot(bb.model)
    result = train(spec(tmp_path, steps=120, backbone=bb))
    after = bb.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a backbone weight changed"
    losses = result["nlg"].valid_loss
    assert losses[-1] < 0.8 * losses[0], f"held-out loss did not drop clearly: {losses}"
    assert result.paths == {"nlg": tmp_path / "nlg"}  # one task: OUT/<task>/ too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nlg", "train_summary.json"]
    meta, tensors = load_adapter(tmp_path / "nlg")
    assert meta.backbone_fingerprint == bb.fingerprint and meta.task.name == "nlg"
    assert 0 < meta.trainable_share < 5 and meta.trainable_share == result["nlg"].trainable_share
    assert np.abs(tensors["adapter.0.up.weight"]).max() > 0, "up projection never trained"
    assert result["nlg"].train_loss is not None and np.isfinite(result["nlg"].train_loss)


def test_resume_after_interruption_reproduces_uninterrupted_run(tmp_path, monkeypatch, tiny_dir):
    train(spec(tmp_path / "ref", steps=20))
    ref = load_adapter(tmp_path / "ref" / "nlg")[1]

    calls = {"n": 0}
    real = train_mod.lm_loss

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 16:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "lm_loss", flaky)
    with pytest.raises(KeyboardInterrupt):
        train(spec(tmp_path / "run", steps=20, save_every=10))
    monkeypatch.setattr(train_mod, "lm_loss", real)
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
    assert not (tmp_path / "run" / "nlg").exists()
    train(spec(tmp_path / "run", steps=20, save_every=10, resume=True))
    got = load_adapter(tmp_path / "run" / "nlg")[1]
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_multitask_writes_one_adapter_per_task(tmp_path, tiny_dir):
    result = train(spec(tmp_path, task=("nlg", "mt"), steps=4))
    assert result.paths == {"nlg": tmp_path / "nlg", "mt": tmp_path / "mt"}
    for name, bottleneck in (("nlg", 10), ("mt", 300)):
        meta, tensors = load_adapter(tmp_path / name)
        assert meta.task.name == name and meta.task.bottleneck == bottleneck
        assert tensors["adapter.0.down.weight"].shape == (128, bottleneck)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["mt"]["path"] == str(tmp_path / "mt") and len(summary["nlg"]["valid_loss"]) == 2


def test_full_finetune_changes_backbone_and_saves_it(tmp_path, tiny_dir):
    bb = load_backbone("tiny")
    before = snapshot(bb.model)
    train(spec(tmp_path, steps=3, full=True, backbone=bb))
    assert any(not torch.equal(before[k], v) for k, v in bb.model.state_dict().items())
    meta, tensors = load_adapter(tmp_path / "nlg")
    assert meta.full_finetune and meta.trainable_share == 100.0
    assert (tmp_path / "nlg" / "backbone" / "model.safetensors").is_file()
    assert load_backbone(tmp_path / "nlg" / "backbone").fingerprint == meta.backbone_fingerprint
    assert np.all(tensors["adapter.0.up.weight"] == 0), "--full must leave the adapter at identity"


def test_full_multitask_shares_one_backbone_found_by_eval(tmp_path, tiny_dir):
    from edgevlm.train.evaluate import load_model

    train(spec(tmp_path, task=("nlg", "mt"), steps=2, full=True))
    assert (tmp_path / "backbone" / "model.safetensors").is_file() and not (tmp_path / "nlg" / "backbone").exists()
    for name in ("nlg", "mt"):
        vlm, bb, meta = load_model(tmp_path, task=name)
        assert meta.task.name == name and bb.path == tmp_path / "backbone"
        assert bb.fingerprint == meta.backbone_fingerprint


def cli(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgevlm.apps.cli", *argv], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_cli_train_prints_share(tmp_path, tiny_dir):
    r = cli(
        "train",
        "--backbone",
        "tiny",
        "--task",
        "mt",
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--out",
        str(tmp_path / "mt"),
    )
    assert r.returncode == 0, r.stderr
    assert "% of the backbone" in r.stdout
    assert json.loads((tmp_path / "mt" / "train_summary.json").read_text())["mt"]["trainable_share"] > 0


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--backbone", "/nonexistent/gpt2"], "/nonexistent/gpt2"),
        (["--bottleneck", "0"], "--bottleneck"),
        (["--task", "poetry"], "poetry"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, extra, needle, tiny_dir):
    argv = ["train", "--task", "nlg", "--steps", "1", "--out", str(tmp_path / "o")]
    if extra[0] == "--task":
        argv = ["train", *extra, "--steps", "1", "--out", str(tmp_path / "o")]
    else:
        argv += extra
    r = cli(*argv)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_cli_data_row_without_target_names_file_and_line(tmp_path, tiny_dir):
    data = tmp_path / "d.jsonl"
    data.write_text('{"source": "a", "target": "b"}\n{"source": "c"}\n')
    r = cli("train", "--task", "mytask", "--data", str(data), "--steps", "1", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert f"{data}:2" in r.stderr and "target" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_build_tiny_runs_offline(tmp_path):
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.tiny import build_tiny

    out = build_tiny(tmp_path / "tiny", steps=2, phase2_steps=2, probe_n=0)
    bb = load_backbone(out)
    assert bb.model.config.n_layer == 4 and bb.tokenizer.token_to_id("<|endoftext|>") == bb.eos_token_id


def test_tiny_corpus_never_holds_a_heldout_source():
    """The backbone's pretraining pairs exclude every validation/test source of the mini tasks."""
    from edgevlm.train.tasks.mini import mini_task
    from edgevlm.train.tiny import _plain, corpus, phase2_corpus

    docs = corpus() + phase2_corpus()
    assert all(d.count(" => ") == 1 and "<" not in d for d in docs)  # plain pairs, no task tokens
    sources = {d.split(" => ")[0] for d in docs}
    for name in ("nlg", "mt", "qa", "summarization", "dialogue"):
        held = {_plain(ex.source) for split in ("valid", "test") for ex in mini_task(name, split, 100)}
        assert len(held) >= 190 and not held & sources, name  # valid and test may share a source
