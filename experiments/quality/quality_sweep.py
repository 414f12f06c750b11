"""Adapter settings on the real backbone: task-token init x learning rate, one task, held-out sources.

How the quality suite's adapter settings (``edgevlm.benchmarks.quality_plan``: ``lr_adapter``,
``--token-init``) were chosen: each combination trains one adapter on the plan's training rows (same seed,
steps, batch) and decodes the plan's held-out sources greedily in PyTorch; one JSON line per combination is
appended to ``--out``.

    python experiments/quality/quality_sweep.py --task nlg --profile reduced --steps 60 \
        --init words,mean --lr 3e-3,1e-2 [--threads 2] [--out FILE.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from edgevlm.benchmarks import quality_plan as qp
from edgevlm.core.errors import ConfigError


def one(task: str, p: qp.Profile, init: str, lr: float, bb_path: Path) -> dict:
    """Train one adapter (``init``, ``lr``) as the suite trains its adapter cell, and score it on the held-out
    sources."""
    from dataclasses import replace

    from edgevlm.benchmarks.quality_real import splits, torch_cell, train_cell
    from edgevlm.train.backbone import load_backbone

    tp = p.tasks[task]
    train_rows, valid, test = splits(task, tp, qp.DATA_ROOT)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        path = train_cell(bb_path, task, (train_rows, valid), replace(p, lr_adapter=lr), Path(out), init=init)
        t1 = time.time()
        s = torch_cell(path, load_backbone(bb_path), task, test, tp.eval_sources)
    keep = ("bleu", "rougeL", "rouge1", "rouge2", "f1", "perplexity")
    return (
        {"task": task, "init": init, "lr": lr, "steps": p.steps, "rows": len(train_rows), "n": s["n"]}
        | {k: s[k] for k in keep if k in s}
        | {"train_s": round(t1 - t0, 1), "eval_s": round(time.time() - t1, 1)}
    )


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog="python experiments/quality/quality_sweep.py", description=__doc__.splitlines()[0])
    a.add_argument("--task", default="nlg", choices=qp.REAL_TASKS)
    a.add_argument("--profile", default="reduced", help="the plan whose rows/lengths/sources are used")
    a.add_argument("--steps", type=int, help="override the plan's steps")
    a.add_argument("--init", default="words,mean", help="comma-separated --token-init values")
    a.add_argument("--lr", default="3e-3,1e-2", help="comma-separated learning rates")
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--out", default="quality_sweep.jsonl")
    args = a.parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, ValueError) as e:
        print(f"quality_sweep: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import dataclasses

    import torch

    from edgevlm.train.sources import ensure_gguf, locate_builtin

    p = qp.get_profile(args.profile, [args.task])
    p = dataclasses.replace(p, steps=args.steps) if args.steps else p
    if qp.missing_data(qp.DATA_ROOT, p.tasks):
        print(f"quality_sweep skipped: {qp.missing_data(qp.DATA_ROOT, p.tasks)[0]} not found")
        return 0
    torch.set_num_threads(args.threads)
    lrs = [float(x) for x in args.lr.split(",")]
    bb = ensure_gguf(locate_builtin("smollm2-135m"))
    for init in args.init.split(","):
        for lr in lrs:
            rec = one(args.task, p, init, lr, bb)
            print(json.dumps(rec), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
