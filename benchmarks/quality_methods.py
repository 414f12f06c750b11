"""The quality suite's other systems (:mod:`.quality_real`): peft LoRAs trained like the adapter, and the adapter
trained for a quantized bundle (``train --quant``), each scored through the runtime.

A LoRA system (``quality_plan.LORA``) trains on the same examples, steps, batches, schedule and precision as the
task's adapter; its rank is fixed or, for ``lora``, the one whose parameter count is closest to the trained
adapter's (adapters + task embeddings). LoRAs have no PyTorch decoding row: their fp32 bundle is exact against
peft (tests/test_lora_peft.py), so their fp32 and quantized bundles are their rows, exported as tasks of the
adapter's own bundles (``<task>_lora`` ...), which also tests that they live beside bottleneck tasks.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from . import quality_plan as qp
from .quality_common import bundle_scores


def lora_task(task: str, system: str) -> str:
    """A LoRA system's task name inside the bundle (``nlg`` + ``lora-qv8`` -> ``nlg_lora_qv8``)."""
    return f"{task}_{system.replace('-', '_')}"


def per_rank_params(model, targets: tuple[str, ...]) -> int:
    """LoRA parameters per unit of rank on ``targets``: sum of in + out features of every targeted Linear."""
    import torch

    return sum(
        m.in_features + m.out_features
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )


def lora_rank(bb_path: Path, system: str, adapter_dir: Path) -> tuple[tuple[str, ...], int]:
    """(targets, rank) of a LoRA system; rank 0 in the plan = matched to the adapter's trainable parameters."""
    from edgevlm.train.backbone import load_backbone

    targets, rank = qp.LORA[system]
    if rank:
        return targets, rank
    n = json.loads((adapter_dir / "adapter.json").read_text())["trainable_params"]
    per = per_rank_params(load_backbone(bb_path).model, targets)
    return targets, max(1, round(n / per))


def train_lora_cell(bb_path: Path, task: str, data: tuple, p: qp.Profile, system: str, adapter_dir: Path, out: Path):
    """Train the ``system`` LoRA of ``task`` into ``out`` (a peft directory, ``out/<task>``)."""
    from edgevlm.train.api import TrainSpec
    from edgevlm.train.lora import LoraSpec, train_lora

    tp = p.tasks[task]
    targets, rank = lora_rank(bb_path, system, adapter_dir)
    spec = TrainSpec(tasks=[task], out=out, backbone=str(bb_path), examples={task: data}, steps=p.steps,
                     batch_size=p.batch_size, max_len=tp.max_len, lr=p.lr_lora, force=True, progress=True)  # fmt: skip
    return train_lora(spec, LoraSpec(rank=rank, alpha=2.0 * rank, targets=targets)).paths[task]


def export_systems(bb_path: Path, task: str, p: qp.Profile, dirs: dict, quant: str, out: Path) -> Path:
    """One ``quant`` bundle holding the task's adapter and the profile's LoRAs of it."""
    from .fixtures import export

    loras = [f"{lora_task(task, s)}={dirs[s]() / task}" for s in p.lora]
    return export(bb_path, [dirs["adapter"]() / task], quant, out, lora=loras)


def score_built(ws, key: str, build, task: str, system: str, test: list, p: qp.Profile, threads: int) -> dict:
    """Metrics and predictions of one system's task in the bundle ``ws.get(key, build)``, with its trainable
    share of the backbone and its method (adapter or lora)."""
    from edgevlm.runtime import Runtime

    name = task if system.startswith("adapter") else lora_task(task, system)
    rt = Runtime.load(ws.get(key, build), threads=threads)
    s, preds = bundle_scores(rt, name, test, p.tasks[task].eval_sources)
    entry = rt.manifest.tasks[name]
    return {**s, "predictions": preds, "trainable_pct": entry.trainable_share, "method": entry.method}


def trained_for_cells(cells, ws, bb_path: Path, task: str, p: qp.Profile, dirs: dict, test, bar) -> list:
    """The adapter trained for each of ``p.trained_for`` in that quantization's bundle."""
    from .fixtures import export

    rows = []
    for q in p.trained_for:
        bar.set_postfix_str(f"{task}: adapter trained for {q}, {q} bundle")
        cell = f"adapter-{q}-bundle-{q}"
        build = functools.partial(_export_trained, export, bb_path, dirs[f"adapter-{q}"], task, q)
        score = functools.partial(score_built, ws, f"{task}-{cell}", build, task, "adapter", test, p, cells.threads)
        rows.append(cells.get(task, cell, score))
        bar.update(1)
    return rows


def _export_trained(export, bb_path: Path, trained, task: str, quant: str, out: Path) -> Path:
    return export(bb_path, [trained() / task], quant, out)
