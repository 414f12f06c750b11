"""Quality on real data with a real backbone (SmolLM2-135M): ``edgevlm bench --suite quality --backbone B``.

Per task (nlg = E2E, mt = IWSLT17 de-en, summarization = CNN/DM, dialogue =
ConvAI2; files under ``../shared/data``, split by source unit): the untrained
adapter, an adapter at the paper's bottleneck, full fine-tuning (same steps
and examples), optionally an adapter distilled from the full model, all
decoded greedily in PyTorch; then the adapter exported as fp32/int8/int4
bundles and decoded through the runtime on the same held-out sources (metric
and share of outputs identical to the fp32 bundle's). Every cell's result is
a JSON file under ``WORK/cells/``: a rerun skips finished cells. The plan
(:mod:`.quality_plan`) and its time estimate are printed first.
"""

from __future__ import annotations

import functools
import json
import random
import time
from pathlib import Path

from edgevlm.core.config import atomic_write_text

from . import quality_curves as qc
from . import quality_methods as qm
from . import quality_plan as qp
from .common import Report, load_average
from .fixtures import Workspace, backbone_dir
from .quality_cells import torch_cell, train_cell
from .quality_common import agreement, with_e2e

SUITE = "quality"
PYTORCH_SYSTEMS = ("untrained", "adapter", "adapter-mean", "full", "distilled")


class Cells:
    """Per-cell results on disk (``root/<task>.<system>.json``, written atomically): done cells are skipped."""

    def __init__(self, root: Path, threads: int = 1):
        self.root, self.threads = root, threads  # threads: the runtime's, for the bundles' cells
        root.mkdir(parents=True, exist_ok=True)
        self.computed: list[str] = []

    def get(self, task: str, system: str, compute) -> dict:
        f = self.root / f"{task}.{system}.json"
        if f.is_file():
            return json.loads(f.read_text())
        t0 = time.time()
        load = load_average()
        rec = {"task": task, "system": system, **compute()}
        rec.update(seconds=round(time.time() - t0, 1), load_avg_at_start=load, load_avg_at_end=load_average())
        atomic_write_text(f, json.dumps(rec, indent=1) + "\n")
        self.computed.append(f.stem)
        return rec


def splits(task: str, tp: qp.TaskPlan, root: Path) -> tuple[list, list, list]:
    """(train, valid, test) examples: held-out units whole, their first ``eval_sources`` sources decoded."""
    from edgevlm.train.tasks.loaders import group_by_source, load_examples, split_by_source

    examples = load_examples(str(root / qp.DATA[task][0]) if ":" not in qp.DATA[task][0] else _pair(task, root), task)
    train, held = split_by_source(examples, tp.heldout_units, seed=0)
    random.Random(0).shuffle(train)
    decoded = {g.source for g in group_by_source(held)[: tp.eval_sources]}
    test = [e for e in held if e.source in decoded]
    valid = [e for e in held if e.source not in decoded][: tp.valid] or test[: tp.valid]
    return train[: tp.train_rows], valid, test


def _pair(task: str, root: Path) -> str:
    src, tgt = qp.DATA[task][0].split(":")
    return f"{root / src}:{root / tgt}"


def model_dirs(ws: Workspace, bb_path: Path, task: str, data: tuple, p: qp.Profile) -> dict:
    """``{system: () -> trained directory}``, each trained on first use (the distilled one after --full)."""
    dirs = {
        "adapter": lambda: ws.get(f"{task}-adapter", lambda o: train_cell(bb_path, task, data, p, o)),
        "adapter-mean": lambda: ws.get(
            f"{task}-adapter-mean", lambda o: train_cell(bb_path, task, data, p, o, init="mean")
        ),
        "full": lambda: ws.get(f"{task}-full", lambda o: train_cell(bb_path, task, data, p, o, full=True)),
        "distilled": lambda: ws.get(
            f"{task}-distilled", lambda o: train_cell(bb_path, task, data, p, o, teacher=dirs["full"]() / task)
        ),
    }
    for q in p.trained_for:  # the adapter trained against the q bundle's backbone weights
        dirs[f"adapter-{q}"] = lambda q=q: ws.get(
            f"{task}-adapter-{q}", lambda o: train_cell(bb_path, task, data, p, o, quant=q)
        )
    for name in p.lora:
        dirs[name] = lambda name=name: ws.get(
            f"{task}-{name}", lambda o: qm.train_lora_cell(bb_path, task, data, p, name, dirs["adapter"]() / task, o)
        )
    return dirs


def task_cells(cells: Cells, ws: Workspace, bb_path: Path, task: str, p: qp.Profile, root: Path, bar) -> list:
    """Every cell of one task, in order: PyTorch systems, then the adapter's bundles."""
    from edgevlm.train.backbone import load_backbone

    tp = p.tasks[task]
    train, valid, test = splits(task, tp, root)
    if p.budgets:
        return qc.curve_cells(cells, ws, bb_path, task, p, (train, valid), test, bar)
    dirs = model_dirs(ws, bb_path, task, (train, valid), p)
    optional = {"distilled": p.distill, "adapter-mean": p.mean_init, "full": task if p.full else None}
    systems = [s for s in PYTORCH_SYSTEMS if optional.get(s, task) == task]
    rows, bb, tokens = [], None, p.batch_size * (tp.mean_len or tp.max_len)
    for system in systems:
        bar.set_postfix_str(f"{task}: {system}")

        def compute(system=system):
            nonlocal bb
            bb = bb or load_backbone(bb_path)
            t0, trained = time.time(), system != "untrained" and not (ws.root / f"{task}-{system}").exists()
            d = None if system == "untrained" else dirs[system]() / task
            timing = (
                {"train_s_per_step": (time.time() - t0) / p.steps, "train_tokens_per_step": tokens} if trained else {}
            )
            return {**torch_cell(d, bb, task, test, tp.eval_sources), "train_rows": len(train), **timing}

        rows.append(with_e2e(cells.get(task, system, compute), task, test, tp.eval_sources))
        bar.update(1)
    rows += bundle_cells(cells, ws, bb_path, task, p, dirs, test, bar)
    return rows + qm.trained_for_cells(cells, ws, bb_path, task, p, dirs, test, bar)


def bundle_cells(cells: Cells, ws: Workspace, bb_path: Path, task: str, p, dirs, test, bar) -> list:
    """fp32/int8/int4 bundles of the adapter (and of the profile's LoRAs, tasks of the same bundle) through the
    runtime; each system's outputs compared with its own fp32 bundle's."""
    rows, first = [], {}
    for q in p.quants:
        bar.set_postfix_str(f"{task}: {q} bundle")
        build = functools.partial(qm.export_systems, bb_path, task, p, dirs, q)
        for system in ("adapter", *p.lora):
            cell = f"bundle-{q}" if system == "adapter" else f"{system}-bundle-{q}"
            score = functools.partial(
                qm.score_built, ws, f"{task}-bundle-{q}", build, task, system, test, p, cells.threads
            )
            rec = with_e2e(cells.get(task, cell, score), task, test, p.tasks[task].eval_sources)
            ref = first.setdefault(system, rec["predictions"])
            rows.append({**rec, "same_output_as_fp32_pct": agreement(rec["predictions"], ref)})
            bar.update(1)
    return rows


def n_cells(p: qp.Profile) -> int:
    if p.budgets:
        return len(qc.SYSTEMS) * len(p.budgets) * len(p.tasks)
    per_task = 2 + p.full + len(p.quants) * (1 + len(p.lora)) + len(p.trained_for)
    return sum(per_task + (p.distill == t) + (p.mean_init == t) for t in p.tasks)


def has_data(root: Path, p: qp.Profile, backbone: str) -> bool:
    missing = qp.missing_data(root, p.tasks)
    if missing:
        print(f"quality ({backbone}) skipped: {missing[0]} not found (see ../shared/data/README.md)")
    return not missing


def run(
    backbone: str = "smollm2-135m",
    profile: str = "cpu",
    out: str | Path | None = None,
    work: str | Path | None = None,
    tasks: list[str] | None = None,
    data_root: str | Path | None = None,
    threads: int = 1,
) -> Path | None:
    """Run (or resume) the suite; returns the results directory, or None when the data is absent."""
    import torch
    from tqdm.auto import tqdm

    from . import quality_real_report as rr

    p = qp.get_profile(profile, tasks)
    root = Path(data_root) if data_root else qp.DATA_ROOT
    if not has_data(root, p, backbone):
        return None
    torch.set_num_threads(threads)
    work = Path(work or rr.default_work(backbone))
    print(qp.describe(p, qp.load_factor(), qp.measured_s_per_token(work)), flush=True)
    report = Report(SUITE, threads, profile == "smoke")
    ws = Workspace(work / f"{p.name}-{qp.plan_key(p)}")
    bb_path = backbone_dir(ws, backbone) if backbone in ("tiny", "smollm2-135m") else Path(backbone)
    cells = Cells(ws.root / "cells", threads)
    rows = []
    with tqdm(total=n_cells(p), desc=f"quality {backbone}", unit="cell") as bar:
        for task in p.tasks:
            rows += task_cells(cells, ws, bb_path, task, p, root, bar)
    report.note(f"plan {p.name!r}: {p.label}; cells computed in this run: {cells.computed or 'none (all cached)'}")
    return rr.write(report, rows, p, backbone, rr.results_dir(out, backbone))
