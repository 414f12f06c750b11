"""The quality suite's two kinds of cell work (:mod:`.quality_real`, :mod:`.quality_curves`): train a system on a
task's split, and decode a trained (or fresh) adapter or ``--full`` output in PyTorch on the held-out sources."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from . import quality_plan as qp


def train_cell(
    bb_path: Path, task: str, data: tuple, p: qp.Profile, out: Path, full=False, teacher=None, init="words", **kw
):
    from edgevlm.train.api import TrainSpec, train

    tp = p.tasks[task]
    spec = TrainSpec(
        tasks=kw.pop("tasks", [task]),
        out=out,
        backbone=str(bb_path),
        examples={task: data},
        steps=p.steps,
        batch_size=p.batch_size,
        eval_every=p.steps,
        save_every=p.steps,
        max_len=tp.max_len,
        full=full,
        lr=p.lr_full if full else p.lr_adapter,
        distill_from=teacher,
        token_init=init,
        force=True,
        progress=True,
        **kw,
    )
    return train(spec).paths[task]


def torch_cell(adapter_dir: Path | None, bb, task: str, test: list, limit: int) -> dict:
    """Metrics (+ perplexity for dialogue) of an adapter / --full output, or of a fresh adapter (None)."""
    import torch

    from edgevlm.train.data import token_init_ids
    from edgevlm.train.evaluate import TorchGenerator, evaluate, load_model, perplexity
    from edgevlm.train.model import VLM
    from edgevlm.train.tasks import BUILTIN_TASKS

    if adapter_dir is None:
        torch.manual_seed(0)
        vlm, cfg, share = VLM(bb.model), BUILTIN_TASKS[task], None
        vlm.add_task(cfg, token_init_ids(bb.tokenizer, cfg))  # as training starts
        share = vlm.trainable_share(task)[1]
    else:
        vlm, bb, meta = load_model(adapter_dir, None if _is_full(adapter_dir) else bb, task)
        cfg, share = meta.task, meta.trainable_share
    with vlm, tempfile.TemporaryDirectory() as tmp:
        s = evaluate(test, TorchGenerator(vlm, bb, cfg), Path(tmp) / "p.jsonl", limit, progress=True, task=task)
        s["predictions"] = [json.loads(x)["prediction"] for x in (Path(tmp) / "p.jsonl").read_text().splitlines()]
        if task == "dialogue":  # of the held-out references given their prompts
            s["perplexity"] = perplexity(vlm, bb, cfg, test, min(512, vlm.sizes.n_positions))
    return {**s, "trainable_pct": share, "bottleneck": cfg.bottleneck}


def _is_full(d: Path) -> bool:
    from edgevlm.train.distill import meta_is_full

    return meta_is_full(d)
