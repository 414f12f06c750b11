"""Helpers for the exporter tests: briefly trained tiny adapters, a reference VLM, task prompts, ORT adapters."""

from __future__ import annotations

from pathlib import Path

# Tasks trained for the export tests: different bottlenecks (10, 300, 100) and task-token counts (2, 3, 3).
TASKS = {"nlg": {"bottleneck": 10}, "qa": {"bottleneck": 300}, "dialogue": {"bottleneck": 100}}
STEPS = 120
_ALIVE: list = []  # LoraAdapters must outlive the RunOptions that reference them


def train_adapters(root: Path) -> dict[str, Path]:
    """{'multi': a two-task output (nlg/, dialogue/), 'qa': one task's adapter directory}, trained briefly."""
    from edgevlm.train.api import TrainSpec, train
    from edgevlm.train.tasks.mini import mini_task

    runs = {"multi": ["nlg", "dialogue"], "qa": ["qa"]}
    for key, tasks in runs.items():
        examples = {t: (mini_task(t, "train"), mini_task(t, "valid", 4)) for t in tasks}
        spec = TrainSpec(
            tasks=tasks,
            out=root / key,
            examples=examples,
            steps=STEPS,
            batch_size=8,
            max_len=96,
            eval_every=STEPS,
            save_every=STEPS,
            progress=False,
        )
        train(spec)
    return {"multi": root / "multi", "qa": root / "qa" / "qa"}


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
