"""Seconds per training step on this CPU: adapter vs full fine-tuning, fp32 vs bf16 autocast, LM head at every
position vs only at the targets, OpenMP passive vs default waiting (each configuration in its own process,
since OpenMP reads its environment once).

``python experiments/train_step/train_step.py --backbone smollm2-135m --batch 8 --seq 128 --steps 3``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = {
    "adapter-fp32-targets": dict(full=False, bf16=False, targets=True),
    "adapter-fp32-allpos": dict(full=False, bf16=False, targets=False),
    "adapter-bf16-targets": dict(full=False, bf16=True, targets=True),
    "full-fp32-targets": dict(full=True, bf16=False, targets=True),
}


def batch(vocab: int, b: int, s: int, gen):
    """Random ids [b, s]; the second half of each row is the target (labels -100 elsewhere)."""
    import torch

    ids = torch.randint(0, vocab, (b, s), generator=gen)
    labels = torch.full_like(ids, -100)
    labels[:, s // 2 :] = ids[:, s // 2 :]
    return ids, torch.ones_like(ids), labels


def loss_fn(vlm, ids, mask, labels, targets: bool):
    from torch.nn import functional as F

    if targets:
        return vlm.target_loss(ids, mask, labels, "t", -100)
    logits, _ = vlm(ids, attention_mask=mask, task="t")  # [b, s, V]
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


def measure(backbone: str, cfg: dict, b: int, s: int, steps: int) -> dict:
    """Median seconds of ``steps`` forward+backward+AdamW steps (after one warm-up step)."""
    import torch

    from edgevlm.core.config import TaskConfig
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.model import VLM

    bb = load_backbone(backbone)
    vlm = VLM(bb.model)
    mod = vlm.add_task(TaskConfig("t", 64, ["<a>"], "<a> {input}"))
    params = list(bb.model.parameters()) if cfg["full"] else list(mod.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen, times = torch.Generator().manual_seed(0), []
    vlm.train()
    for i in range(steps + 1):
        ids, mask, labels = batch(vlm.vocab_size, b, s, gen)
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["bf16"]):
            loss = loss_fn(vlm, ids, mask, labels, cfg["targets"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return {"s_per_step": sorted(times)[len(times) // 2], "all": [round(x, 2) for x in times]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--config", choices=sorted(CONFIGS), help="measure one configuration in this process")
    p.add_argument("--omp", default="PASSIVE,default", help="OMP_WAIT_POLICY values to compare")
    a = p.parse_args(argv)
    if a.config:
        print(json.dumps(measure(a.backbone, CONFIGS[a.config], a.batch, a.seq, a.steps)))
        return
    for name in CONFIGS:
        for omp in a.omp.split(","):
            if omp == "default" and name != "adapter-fp32-targets":
                continue  # the OpenMP comparison on the baseline only
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            env.update({} if omp == "default" else {"OMP_WAIT_POLICY": omp})
            cmd = [sys.executable, __file__, "--config", name]
            cmd += ["--backbone", a.backbone, "--batch", str(a.batch), "--seq", str(a.seq), "--steps", str(a.steps)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            res = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-300:]}
            print(json.dumps({"config": name, "omp": omp, "batch": a.batch, "seq": a.seq, **res}), flush=True)


if __name__ == "__main__":
    main()
