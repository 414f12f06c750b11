"""``edgevlm eval --backbone`` on a ``--full`` output (issue 31 item 0): naming the backbone it was tuned from
evaluates the output's own fine-tuned copy with a one-line note; naming another backbone is one clear error. And
what adapter.json (and a LoRA's task file) records of the training run: lr, steps, bottleneck, precision, quant."""

from __future__ import annotations

import json
import shutil

import pytest

from edgevlm.apps.cli import main
from edgevlm.core.config import ADAPTER_JSON, AdapterMeta

torch = pytest.importorskip("torch")


def _spec(out, **kw):
    from edgevlm.train.api import TrainSpec

    base = dict(tasks=["nlg"], out=out, steps=2, batch_size=2, max_len=96, eval_every=2, progress=False)
    return TrainSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def full_out(tmp_path_factory, tiny_dir):
    from edgevlm.train.api import train

    out = tmp_path_factory.mktemp("full") / "run"
    train(_spec(out, full=True))
    return out


def _auto_precision() -> str:
    """What ``--precision auto`` picks on this machine's CPU (bf16 autocast where the CPU has native bf16)."""
    from edgevlm.train.distributed import pick_dtype, precision_name

    return precision_name(pick_dtype("auto", torch.device("cpu")))


def _eval(out, pred, *extra: str) -> int:
    return main(["eval", "--adapter", str(out), "--limit", "2", "--max-new-tokens", "8", "--out", str(pred), *extra])


def test_naming_the_origin_backbone_evaluates_the_outputs_own(full_out, tmp_path, capsys):
    assert _eval(full_out, tmp_path / "own.jsonl") == 0
    capsys.readouterr()
    assert _eval(full_out, tmp_path / "named.jsonl", "--backbone", "tiny") == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "note" in ln or "error" in ln]
    want = f"edgevlm eval: note: {full_out / 'nlg'} is a --full output: it carries its own fine-tuned backbone "
    assert err == [f"{want}(from tiny), {full_out / 'nlg' / 'backbone'}; evaluating with that"]
    assert (tmp_path / "named.jsonl").read_text() == (tmp_path / "own.jsonl").read_text()  # the same model
    assert _eval(full_out, tmp_path / "dir.jsonl", "--backbone", str(full_out / "nlg" / "backbone")) == 0
    assert "note" not in capsys.readouterr().err  # its own backbone named outright: nothing to say


def test_naming_another_backbone_is_one_line(full_out, tmp_path, capsys):
    other = tmp_path / "some-llama"
    assert _eval(full_out, tmp_path / "p.jsonl", "--backbone", str(other)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgevlm eval: error: --backbone {other}: ") and "Traceback" not in err
    assert "carries its own fine-tuned backbone (from tiny)" in err[0] and "leave --backbone out" in err[0]
    assert not (tmp_path / "p.jsonl").exists()


def test_adapter_json_records_the_training_settings(full_out, tmp_path, tiny_dir):
    from edgevlm.train.api import train
    from edgevlm.train.evaluate import load_model

    train(_spec(tmp_path / "a", lr=2e-3, bottleneck=12, quant="int8"))
    for d, full in ((tmp_path / "a" / "nlg", False), (full_out / "nlg", True)):
        meta = AdapterMeta.load(d)
        t = meta.training
        assert (t["steps"], t["batch_size"], t["full"], meta.full_finetune) == (2, 2, full, full)
        assert (t["precision"], t["processes"]) == (_auto_precision(), 1)  # what this CPU's run used
    a = AdapterMeta.load(tmp_path / "a" / "nlg")
    assert (a.training["lr"], a.training["quant"], a.task.bottleneck) == (2e-3, "int8", 12)
    assert AdapterMeta.load(full_out / "nlg").training["lr"] == 5e-4  # --full's default, recorded
    old = tmp_path / "old"  # written before precision was recorded: loads as before
    shutil.copytree(tmp_path / "a" / "nlg", old)
    obj = json.loads((old / ADAPTER_JSON).read_text())
    obj["training"] = {k: v for k, v in obj["training"].items() if k != "precision"}
    (old / ADAPTER_JSON).write_text(json.dumps(obj))
    assert load_model(old)[2].training["quant"] == "int8"


def test_lora_task_file_records_the_training_settings(tmp_path, tiny_dir):
    pytest.importorskip("peft")
    from edgevlm.train.lora import TASK_FILE, LoraSpec, train_lora

    train_lora(_spec(tmp_path / "l", backbone=str(tiny_dir), lr=1e-3), LoraSpec(2, 4.0))
    t = json.loads((tmp_path / "l" / "nlg" / TASK_FILE).read_text())["training"]
    assert (t["lr"], t["steps"], t["quant"], t["precision"], t["processes"]) == (1e-3, 2, "fp32", _auto_precision(), 1)
    assert len(t["valid_loss"]) == 2
    cfg = json.loads((tmp_path / "l" / "nlg" / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"]) == (2, 4.0)  # rank and alpha: peft's own file
