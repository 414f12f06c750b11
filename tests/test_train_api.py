"""TrainSpec validation (one line naming the option) and the adapter-directory finder shared by eval/export."""

from __future__ import annotations

import json
import shutil

import pytest

from edgevlm.core.config import TaskConfig
from edgevlm.core.errors import ConfigError, TaskError
from edgevlm.train.api import TrainSpec, train
from edgevlm.train.layout import adapter_dirs, find_adapter
from edgevlm.train.tasks import BUILTIN_TASKS, Example


def _spec(tmp_path, **kw) -> TrainSpec:
    return TrainSpec(**{"tasks": ["nlg"], "out": tmp_path / "out", **kw})


EX = ([Example("a", "b")], [])


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"steps": 0}, "--steps must be a positive integer, got 0"),
        ({"steps": 2.5}, "--steps must be a positive integer, got 2.5"),
        ({"batch_size": -1}, "--batch-size must be a positive integer, got -1"),
        ({"eval_every": 0}, "--eval-every must be a positive integer"),
        ({"save_every": True}, "--save-every must be a positive integer, got True"),
        ({"max_len": 0}, "--max-len must be a positive integer"),
        ({"bottleneck": 0}, "--bottleneck must be a positive integer, got 0"),
        ({"lr": 0.0}, "--lr must be a positive number, got 0.0"),
        ({"lr": float("nan")}, "--lr must be a positive number, got nan"),
        ({"seed": -1}, "--seed must be a non-negative integer, got -1"),
        ({"full": "yes"}, "--full must be True or False, got 'yes'"),
        ({"token_init": "random"}, "--token-init must be one of words, mean, got 'random'"),
        ({"quant": "int3"}, "--quant 'int3': expected one of ['fp32', 'int8', 'int4']"),
        ({"quant": "int4", "full": True}, "--quant int4: simulates a frozen backbone's bundle weights; --full trains"),
        ({"tasks": []}, "--task: at least one task is required"),
        ({"tasks": ["nlg", "nlg"]}, "--task given twice: ['nlg', 'nlg']"),
        ({"tasks": ["nlg", "all"]}, "--task: expected task names ('all' alone) or TaskConfigs, got 'all'"),
        ({"tasks": [3]}, "--task: expected task names ('all' alone) or TaskConfigs, got 3"),
        ({"tasks": ["poetry"]}, "unknown task 'poetry' and no --data"),
        ({"tasks": ["bad name"], "examples": {"bad name": EX}}, "task name 'bad name': expected"),
        ({"valid_data": "v.jsonl"}, "--valid-data needs --data"),
        ({"format": "e2e"}, "--format needs --data"),
        ({"data": "d.jsonl", "format": "xml"}, "--format 'xml' is not supported"),
        ({"tasks": ["nlg", "mt"], "data": "d.jsonl"}, "--data takes one --task"),
        ({"tasks": ["all"], "data": "d.jsonl"}, "--data takes one --task"),
        ({"data": "d.jsonl", "examples": {"nlg": EX}}, "--data and TrainSpec.examples are exclusive"),
        ({"examples": {"mt": EX}}, "TrainSpec.examples: expected {task: (train, valid)} for tasks ['nlg'], got ['mt']"),
        ({"examples": {"nlg": ([], [])}}, "TrainSpec.examples['nlg']: expected (train, valid) with training examples"),
        ({"out": ""}, "--out must be a directory path"),
        ({"distill_from": "/nonexistent/teacher"}, "--distill-from /nonexistent/teacher: directory does not exist"),
    ],
)
def test_spec_rejects_bad_values_with_one_line(tmp_path, kw, needle):
    with pytest.raises(ConfigError) as e:
        _spec(tmp_path, **kw)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg


def test_spec_out_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*f: exists and is not a directory"):
        TrainSpec(tasks="nlg", out=tmp_path / "f")


def test_spec_resolves_tasks_to_configs(tmp_path):
    s = _spec(tmp_path, tasks=["nlg", "mytask"], examples={"nlg": EX, "mytask": EX}, bottleneck=7)
    assert [c.name for c in s.tasks] == ["nlg", "mytask"] and [c.bottleneck for c in s.tasks] == [7, 7]
    assert s.tasks[0].template == BUILTIN_TASKS["nlg"].template and s.out == tmp_path / "out"
    assert [c.name for c in _spec(tmp_path, tasks=["all"]).tasks] == list(BUILTIN_TASKS)
    own = TaskConfig("custom", 12, ["<q>", "<a>"], "<q> {input} <a>")
    assert _spec(tmp_path, tasks=own, examples={"custom": EX}).tasks == (own,)
    tc = _spec(tmp_path, full=True).train_config()
    assert tc.lr == 5e-4 and tc.full and _spec(tmp_path).train_config().lr == 3e-3


def _fake_adapter(d):
    d.mkdir(parents=True)
    (d / "adapter.json").write_text("{}")
    return d


def test_finder_task_dir_output_dir_and_errors(tmp_path):
    out = tmp_path / "out"
    nlg, mt = _fake_adapter(out / "nlg"), _fake_adapter(out / "mt")
    (out / "checkpoint").mkdir()  # run-level files are not adapters
    assert adapter_dirs(out) == [mt, nlg] and adapter_dirs(nlg) == [nlg]
    assert find_adapter(out, "nlg") == nlg and find_adapter(nlg) == nlg and find_adapter(mt, "mt") == mt
    with pytest.raises(ConfigError, match=r"holds adapters for tasks \['mt', 'nlg'\]: pass --task"):
        find_adapter(out)
    with pytest.raises(TaskError, match=r"no adapter for task 'qa'; it holds adapters for tasks \['mt', 'nlg'\]"):
        find_adapter(out, "qa")
    (tmp_path / "empty").mkdir()
    for bad, needle in (
        (tmp_path / "empty", "no adapter.json in it or in its subdirectories"),
        (tmp_path / "no", "directory does not exist"),
    ):
        with pytest.raises(ConfigError) as e:
            adapter_dirs(bad, "--distill-from")
        assert str(e.value).startswith(f"--distill-from {bad}: ") and needle in str(e.value)
        assert "\n" not in str(e.value)


def test_one_task_output_legacy_layout_and_refusal(tmp_path, tiny_dir):
    """A trained single-task output and the old layout (files in OUT itself) both load for eval and export."""
    from edgevlm.export.adapters import load_task_adapters
    from edgevlm.train.evaluate import load_model

    result = train(TrainSpec(tasks="nlg", out=tmp_path / "new", steps=2, batch_size=2, eval_every=2, progress=False))
    assert result.paths == {"nlg": tmp_path / "new" / "nlg"}
    legacy = tmp_path / "legacy"
    shutil.copytree(tmp_path / "new" / "nlg", legacy)
    for path in (tmp_path / "new", tmp_path / "new" / "nlg", legacy):
        vlm, bb, meta = load_model(path, task="nlg")
        assert meta.task.name == "nlg"
        [a] = load_task_adapters([path])
        assert a.name == "nlg" and a.source == (legacy if path == legacy else tmp_path / "new" / "nlg")
    with pytest.raises(ConfigError, match="holds a single-task adapter of the old layout"):
        train(TrainSpec(tasks="nlg", out=legacy, steps=1, progress=False))
    assert json.loads((legacy / "adapter.json").read_text())["task"]["name"] == "nlg"  # untouched
