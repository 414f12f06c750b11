"""Sentence-level distillation: targets are the --full teacher's greedy outputs, cached, and trainable via the CLI."""

from __future__ import annotations

import json

import pytest
from test_eval_formats import e2e_file

from edgevlm.apps import cli
from edgevlm.core.errors import TaskError
from edgevlm.train import distill
from edgevlm.train.evaluate import TorchGenerator, load_model
from edgevlm.train.tasks import builtin_task
from edgevlm.train.tasks.loaders import load_examples


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill")
    data = e2e_file(d)
    out = d / "teacher"
    assert (
        cli.main(
            [
                "train",
                "--task",
                "nlg",
                "--data",
                data,
                "--full",
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--eval-every",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "nlg" / "backbone" / "config.json").is_file()
    return out, data


def test_targets_are_teacher_greedy_outputs_and_cached(teacher, tiny_backbone, tmp_path, monkeypatch):
    tdir, data = teacher
    cfg = builtin_task("nlg")
    examples = load_examples(data, "nlg")[:6]
    got = distill.distill_targets(tdir, tiny_backbone, cfg, examples, tmp_path)
    vlm, bb, _ = load_model(tdir)
    gen = TorchGenerator(vlm, bb, cfg)
    for g, e in zip(got, examples):
        assert g.source == e.source
        assert g.target == (gen(e.source) or e.target)  # the single-prompt greedy reference
    cache = list((tmp_path / "distill").glob("nlg-*.jsonl"))
    assert len(cache) == 1 and len(cache[0].read_text().splitlines()) == 6
    assert json.loads(cache[0].read_text().splitlines()[0])["gold"] == examples[0].target

    def no_decoding(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(distill, "decode_all", no_decoding)
    assert distill.distill_targets(tdir, tiny_backbone, cfg, examples, tmp_path) == got
    with pytest.raises(AssertionError, match="decoded again"):  # other inputs -> other key
        distill.distill_targets(tdir, tiny_backbone, cfg, examples[:3], tmp_path)


def test_teacher_of_another_task_is_refused(teacher, tiny_backbone, tmp_path):
    with pytest.raises(TaskError, match="adapter is for task 'nlg', not 'mt'"):
        distill.distill_targets(teacher[0], tiny_backbone, builtin_task("mt"), [], tmp_path)


def test_train_distill_from_cli(teacher, tmp_path):
    tdir, data = teacher
    out = tmp_path / "student"
    assert (
        cli.main(
            [
                "train",
                "--task",
                "nlg",
                "--data",
                data,
                "--distill-from",
                str(tdir),
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--eval-every",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "nlg" / "adapter.safetensors").is_file()
    cached = load_examples(next((out / "distill").glob("nlg-*.jsonl")), "nlg")
    assert {e.source for e in cached} <= {e.source for e in load_examples(data, "nlg")}
