"""Helpers for the exporter tests: briefly trained tiny adapters, a reference VLM, task prompts, ORT adapter selection."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

# Tasks trained for the export tests: different bottlenecks (10, 300, 100) and task-token counts (2, 3, 3).
TASKS = {"nlg": {"bottleneck": 10}, "qa": {"bottleneck": 300}, "dialogue": {"bottleneck": 100}}
STEPS = 120
_ALIVE: list = []  # LoraAdapters must outlive the RunOptions that reference them


def train_adapters(root: Path) -> dict[str, Path]:
    """{'multi': a multi-task output (nlg/, dialogue/), 'qa': a single adapter directory}, trained for a few steps."""
    from edgevlm.train.api import build_training
    from edgevlm.train.trainer import train

    out = {"multi": root / "multi", "qa": root / "qa"}
    for key, tasks in (("multi", ["nlg", "dialogue"]), ("qa", ["qa"])):
        args = Namespace(
            backbone="tiny",
            task=tasks,
            data=None,
            valid_data=None,
            format=None,
            bottleneck=None,
            steps=STEPS,
            batch_size=8,
            lr=None,
            max_len=96,
            eval_every=10**6,
            save_every=10**6,
            seed=0,
            full=False,
            resume=False,
            distill_from=None,
            out=str(out[key]),
        )
        vlm, bb, datas, tc = build_training(args)
        for d in datas.values():
            d.valid = d.valid[:4]
        train(vlm, bb, datas, tc, out[key], progress=False)
    return out


def reference_vlm(tiny_dir: Path, dirs: dict[str, Path]):
    """A PyTorch VLM on a fresh copy of the tiny backbone with every trained task loaded."""
    import torch

    from edgevlm.export.adapters import load_task_adapters
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.model import VLM

    vlm = VLM(load_backbone(tiny_dir).model).eval()
    for a in load_task_adapters(list(dirs.values())):
        vlm.add_task(a.meta.task).load_tensors({k: torch.from_numpy(v) for k, v in a.tensors.items()}, str(a.source))
    return vlm


def task_prompts(tokenizer, vocab_size: int, n: int = 3) -> dict:
    """task (None = plain backbone) -> ``n`` encoded validation prompts from the mini tasks."""
    from edgevlm.core.prompts import encode_prompt
    from edgevlm.train.tasks import BUILTIN_TASKS
    from edgevlm.train.tasks.mini import mini_task

    out = {None: [tokenizer.encode(" " + e.target).ids[:12] for e in mini_task("nlg", "valid", n)]}
    for name in TASKS:
        cfg = BUILTIN_TASKS[name]
        out[name] = [
            encode_prompt(tokenizer, cfg.template, e.source, cfg.special_tokens, vocab_size)
            for e in mini_task(name, "valid", n)
        ]
    return out


def lora(path: Path):
    """RunOptions selecting the ORT adapter file ``path`` (LoraAdapter kept alive on the options object)."""
    import onnxruntime as ort

    adapter = ort.LoraAdapter()
    adapter.Load(str(path))
    ro = ort.RunOptions()
    ro.add_active_adapter(adapter)
    _ALIVE.append(adapter)
    return ro
