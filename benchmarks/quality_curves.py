"""Learning curves of the real-backbone quality suite (``--profile curves``): the paper's adapter, one 4x larger
and full fine-tuning, each trained from scratch at every step budget of the plan (its own warmup and decay, as a
user running that many steps gets), scored in PyTorch on the held-out sources.

Full fine-tuning's plateau is the first budget after which its metric gains less than ``PLATEAU`` points; the
paper's claim is judged there (adapter minus full), or at the last budget when it never flattens. Cells are
``<system>@<steps>`` files under the work directory, so a long plan runs across sessions.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

from . import quality_plan as qp

SYSTEMS = ("adapter", "adapter-4x", "full")
PLATEAU = 0.5  # metric points gained from one budget to the next below which full fine-tuning has flattened


def curve_cells(cells, ws, bb_path: Path, task: str, p: qp.Profile, data: tuple, test: list, bar) -> list:
    """Every (system, budget) cell of one task, trained on first use."""
    from .quality_cells import torch_cell, train_cell

    rows, bb = [], None
    for steps in p.budgets:
        pb = replace(p, steps=steps)
        for system in SYSTEMS:
            bar.set_postfix_str(f"{task}: {system} @ {steps} steps")
            kw = _system_kwargs(task, system)
            build = functools.partial(train_cell, bb_path, task, data, pb, **kw)

            def compute(system=system, steps=steps, build=build):
                nonlocal bb
                from edgevlm.train.backbone import load_backbone

                bb = bb or load_backbone(bb_path)
                d = ws.get(f"{task}-{system}@{steps}", build) / task
                return {**torch_cell(d, bb, task, test, p.tasks[task].eval_sources), "steps": steps}

            rows.append({**cells.get(task, f"{system}@{steps}", compute), "curve": system})
            bar.update(1)
    return rows


def _system_kwargs(task: str, system: str) -> dict:
    from edgevlm.train.api import task_config

    if system == "full":
        return {"full": True}
    if system == "adapter-4x":
        base = task_config(task, None)
        return {"tasks": [replace(base, bottleneck=4 * base.bottleneck)]}
    return {}


def plateau(points: list[tuple[int, float]]) -> int:
    """The budget where a (steps, metric) curve flattens: the first whose next gains < PLATEAU; else the last."""
    for (s, m), (_, nxt) in zip(points, points[1:]):
        if nxt - m < PLATEAU:
            return s
    return points[-1][0]


def judge(rows: list[dict], metric: str) -> dict:
    """The claim at full fine-tuning's plateau: {steps, full, adapter, adapter-4x, gap (adapter - full)}."""
    curve = {s: sorted((r["steps"], r[metric]) for r in rows if r["curve"] == s) for s in SYSTEMS}
    at = plateau(curve["full"])
    score = {s: dict(curve[s]).get(at) for s in SYSTEMS}
    return {"steps": at, **score, "gap": round(score["adapter"] - score["full"], 2)}


def markdown(task: str, rows: list[dict], metric: str) -> str:
    """A table (systems x budgets) and the verdict line of one task."""
    budgets = sorted({r["steps"] for r in rows})
    head = "| system | " + " | ".join(f"{b} steps" for b in budgets) + " |\n"
    head += "|---|" + "---|" * len(budgets) + "\n"
    for s in SYSTEMS:
        got = {r["steps"]: r[metric] for r in rows if r["curve"] == s}
        head += f"| {s} | " + " | ".join(f"{got[b]:.2f}" if b in got else "-" for b in budgets) + " |\n"
    j = judge(rows, metric)
    verdict = (
        f"\nFull fine-tuning flattens at {j['steps']} steps (gains < {PLATEAU} after it, or the last budget): "
        f"adapter {j['adapter']:.2f} vs full {j['full']:.2f} {metric} (gap {j['gap']:+.2f}); 4x adapter "
        f"{j['adapter-4x']:.2f}.\n"
    )
    return f"## {task}: {metric} by training steps\n\n" + head + verdict


def plot(rows: list[dict], tasks, metrics: dict, path: Path, label: str) -> Path:
    from . import plots

    panels = {}
    for t in tasks:
        m = metrics[t][0]
        panels[f"{t} ({m})"] = {
            s: tuple(zip(*sorted((r["steps"], r[m]) for r in rows if r["task"] == t and r["curve"] == s)))
            for s in SYSTEMS
        }
    return plots.lines(path, {}, "training steps", "score", f"Learning curves ({label})", panels=panels)
