"""``edgevlm train --method lora``: a peft LoRA directory that peft itself loads to the training model's logits, and
that exports to a bundle task giving the same logits; LoRA options checked in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgevlm.core.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def _spec(backbone, out, **kw):
    from edgevlm.train.api import TrainSpec
    from edgevlm.train.tasks.mini import mini_task

    examples = {"nlg": (mini_task("nlg", "train"), mini_task("nlg", "valid", 4))}
    opts = dict(tasks=["nlg"], out=out, examples=examples, steps=15, batch_size=4, max_len=96, progress=False)
    return TrainSpec(backbone=str(backbone), **{**opts, **kw})


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_peft_loads_the_trained_lora_to_the_training_models_logits(tmp_path, tiny_dir, tiny_llama_dir, arch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from edgevlm.train.api import load_spec_backbone, spec_examples
    from edgevlm.train.lora import LoraSpec, fit, save

    backbone_dir = tiny_dir if arch == "gpt2" else tiny_llama_dir
    spec = _spec(backbone_dir, tmp_path / "out")
    bb = load_spec_backbone(spec)
    targets = None if arch == "gpt2" else ("q_proj", "v_proj", "gate_proj", "down_proj")
    (cfg, tr, va), = spec_examples(spec, bb)  # fmt: skip
    pm, losses, _ = fit(bb, cfg, tr, va, spec.train_config(), LoraSpec(4, 8.0, targets))
    assert losses[-1] < losses[0]  # it trained
    out = save(pm, cfg, tmp_path / "lora", bb.path.name)
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(backbone_dir)), str(out)).eval()
    ids = torch.tensor([bb.tokenizer.encode("name[Aromi], eatType[coffee shop]").ids])
    with torch.no_grad():
        ours, theirs = pm(input_ids=ids).logits, loaded(input_ids=ids).logits
        with loaded.disable_adapter():
            plain = loaded(input_ids=ids).logits
    assert torch.allclose(ours, theirs, atol=1e-5) and (ours - plain).abs().max() > 1e-3


def test_train_cli_writes_a_lora_that_exports_to_the_same_logits(tmp_path, tiny_dir):
    """`edgevlm train --method lora` then `edgevlm export --lora`: the bundle's LoRA task reproduces peft's model
    loaded from the training output (fp32, 1e-4) and keeps the training template."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from edgevlm.core.prompts import encode_prompt
    from edgevlm.runtime import Runtime

    out, bundle = tmp_path / "out", tmp_path / "bundle"
    cli = [sys.executable, "-m", "edgevlm.apps.cli"]
    train = [*cli, "train", "--backbone", str(tiny_dir), "--method", "lora", "--rank", "4", "--alpha", "8"]
    train += ["--task", "nlg", "--steps", "10", "--batch-size", "4", "--out", str(out)]
    run = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    export = [*cli, "export", "--backbone", str(tiny_dir), "--lora", f"nlg={out / 'nlg'}", "--out", str(bundle)]
    run = subprocess.run(export, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rt = Runtime.load(bundle, threads=1)
    task = rt.task("nlg")
    assert task.template == "mr {input} response" and task.entry.method == "lora"
    ids = encode_prompt(rt.tokenizer, task.template, "name[Aromi], eatType[coffee shop]", (), rt.graph.vocab_size)
    pm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_dir)), str(out / "nlg")).eval()
    with torch.no_grad():
        want = pm(input_ids=torch.tensor([ids])).logits[0].numpy()
    from test_lora_peft import _logits

    assert np.abs(_logits(rt, ids, "nlg") - want).max() <= 1e-4


@pytest.mark.parametrize(
    "kw, lora, expect",
    [
        ({"full": True}, {}, "--full is not supported with --method lora"),
        ({"quant": "int4"}, {}, "--quant is not supported with --method lora"),
        ({}, {"rank": 0}, "--rank must be a positive integer"),
        ({}, {"alpha": -1.0}, "--alpha must be a positive number"),
        ({}, {"targets": ("no_such_module",)}, "--targets no_such_module"),
    ],
)
def test_lora_options_are_refused_in_one_line(tmp_path, tiny_dir, kw, lora, expect):
    from edgevlm.train.lora import LoraSpec, train_lora

    with pytest.raises(ConfigError) as e:
        train_lora(_spec(tiny_dir, tmp_path / "out", **kw), LoraSpec(**lora))
    assert expect in str(e.value) and "\n" not in str(e.value)
