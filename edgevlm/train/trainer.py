"""Training loop: one task's adapter, several tasks at once, or full fine-tuning (the paper's baseline).

Called through :func:`edgevlm.train.api.train`; writes the layout of :mod:`edgevlm.train.layout`.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from edgevlm.core.config import AdapterMeta, TaskConfig, atomic_write_text
from edgevlm.core.errors import ConfigError
from edgevlm.train.adapters import save_adapter
from edgevlm.train.backbone import Backbone
from edgevlm.train.data import IGNORE, Encoded, collate
from edgevlm.train.layout import BACKBONE_DIR, SUMMARY_JSON, task_dir
from edgevlm.train.model import VLM

CHECKPOINT = "checkpoint"


@dataclass
class TrainConfig:
    """Optimisation settings; validated on construction."""

    steps: int = 400
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 100
    save_every: int = 100
    max_len: int = 256
    full: bool = False

    def __post_init__(self) -> None:
        for k in ("steps", "batch_size", "max_len", "eval_every", "save_every"):
            if getattr(self, k) <= 0:
                raise ConfigError(f"--{k.replace('_', '-')} must be positive, got {getattr(self, k)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.warmup < 0 or self.clip <= 0:
            raise ConfigError("--warmup must be >= 0 and clip > 0")


@dataclass
class TaskData:
    cfg: TaskConfig
    train: list[Encoded]
    valid: list[Encoded] = field(default_factory=list)


def lm_loss(vlm: VLM, ids, mask, labels, task: str) -> torch.Tensor:
    """Mean cross-entropy over target tokens only (the LM head runs only there). ids/mask/labels [b, t]."""
    return vlm.target_loss(ids, mask, labels, task, IGNORE)


@torch.no_grad()
def validation_loss(vlm: VLM, data: list[Encoded], task: str, pad: int, batch_size: int = 32) -> float:
    """Token-weighted mean target loss over ``data``."""
    was_training = vlm.training
    vlm.eval()
    total, count = 0.0, 0
    for i in range(0, len(data), batch_size):
        ids, mask, labels = collate(data[i : i + batch_size], pad)
        n = int((labels[:, 1:] != IGNORE).sum())
        total += float(lm_loss(vlm, ids, mask, labels, task)) * n
        count += n
    vlm.train(was_training)
    return total / max(count, 1)


def trainable(vlm: VLM, tasks: list[str], full: bool) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze the tasks' parts (adapters stay identity under --full)."""
    vlm.requires_grad_(False)
    params = []
    for name in tasks:
        mod = vlm.task(name)
        parts = [mod.task_embeddings] if full else list(mod.parameters())
        params += parts
    if full:
        params += list(vlm.backbone.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def make_optimizer(params, tc: TrainConfig):
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)

    def schedule(step: int) -> float:  # linear warmup, then linear decay to 0
        return min(1.0, (step + 1) / max(tc.warmup, 1)) * max(0.0, 1.0 - step / tc.steps)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def save_checkpoint(out: Path, params, opt, sched, step: int, gen: torch.Generator, history: list) -> None:
    """Trainable tensors, optimizer moments and RNG state as safetensors + JSON (atomic)."""
    from safetensors.torch import save_file

    tensors = {f"param.{i}": p.detach().contiguous() for i, p in enumerate(params)}
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            tensors[f"opt.{i}.{k}"] = v.detach().reshape(-1) if v.dim() == 0 else v.detach().contiguous()
    tensors["rng.data"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = out / f".{CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "sched": sched.state_dict(), "history": history}))
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    tmp.rename(out / CHECKPOINT)


def load_checkpoint(out: Path, params, opt, sched, gen: torch.Generator) -> tuple[int, list]:
    from safetensors.torch import load_file

    ck = out / CHECKPOINT
    if not (ck / "state.json").is_file():
        raise ConfigError(f"--resume: no checkpoint in {ck}")
    tensors = load_file(str(ck / "state.safetensors"))
    meta = json.loads((ck / "state.json").read_text())
    with torch.no_grad():
        for i, p in enumerate(params):
            if tensors[f"param.{i}"].shape != p.shape:
                raise ConfigError(f"{ck}: checkpoint does not match this model/task set (param {i})")
            p.copy_(tensors[f"param.{i}"])
            st = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
            if st:
                st["step"] = st["step"].reshape(())
                opt.state[p] = st
    sched.load_state_dict(meta["sched"])
    for group, lr in zip(opt.param_groups, sched.get_last_lr()):
        group["lr"] = lr
    gen.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), meta["history"]


def fit(
    vlm: VLM,
    backbone: Backbone,
    datas: list[TaskData],
    tc: TrainConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train the given tasks (grouped batches, round robin), then write ``out/<task>/`` for each.

    Returns the summary written to ``out/train_summary.json``: per task its directory, trainable share,
    validation losses and last training loss. :func:`edgevlm.train.api.train` is the public entry point.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    params = trainable(vlm, [d.cfg.name for d in datas], tc.full)
    opt, sched = make_optimizer(params, tc)
    pad = backbone.eos_token_id
    if resume:
        start, history = load_checkpoint(out, params, opt, sched, gen)
    else:
        start, history = 0, [{"step": 0, **validation_losses(vlm, datas, pad)}]
    vlm.train()
    last = run_steps(vlm, datas, tc, out, (params, opt, sched, gen), pad, start, history, progress)
    vlm.eval()
    return write_outputs(vlm, backbone, datas, tc, out, history, last)


def validation_losses(vlm: VLM, datas: list[TaskData], pad: int) -> dict[str, float]:
    return {d.cfg.name: validation_loss(vlm, d.valid, d.cfg.name, pad) for d in datas if d.valid}


def optimise(vlm: VLM, batch, task: str, state, clip: float) -> float:
    """One optimizer + schedule step on ``batch`` (ids, mask, labels [b, t]); returns the loss."""
    params, opt, sched, _ = state
    loss = lm_loss(vlm, *batch, task)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()
    return loss.item()


def run_steps(
    vlm: VLM, datas: list[TaskData], tc: TrainConfig, out: Path, state, pad: int, start: int, history, progress
):
    """Optimisation steps ``start..tc.steps`` (validation appended to ``history``, checkpoints every
    ``save_every``); returns each task's last training loss."""
    from tqdm.auto import tqdm

    params, opt, sched, gen = state
    last: dict[str, float] = {}
    names = "+".join(d.cfg.name for d in datas)
    bar = tqdm(
        range(start, tc.steps), initial=start, total=tc.steps, desc=f"train {names}", unit="step", disable=not progress
    )
    for step in bar:
        d = datas[step % len(datas)]
        idx = torch.randint(0, len(d.train), (tc.batch_size,), generator=gen).tolist()
        last[d.cfg.name] = optimise(vlm, collate([d.train[i] for i in idx], pad), d.cfg.name, state, tc.clip)
        bar.set_postfix(task=d.cfg.name, loss=f"{last[d.cfg.name]:.3f}")
        if (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps:
            history.append({"step": step + 1, **validation_losses(vlm, datas, pad)})
            losses = ", ".join(f"{k}={v:.3f}" for k, v in history[-1].items() if k != "step")
            bar.write(f"step {step + 1}: validation loss {losses}")
        if (step + 1) % tc.save_every == 0 and step + 1 < tc.steps:
            save_checkpoint(out, params, opt, sched, step + 1, gen, history)
    return last


def save_full_backbone(vlm: VLM, backbone: Backbone, bdir: Path) -> str:
    """The fine-tuned backbone (safetensors + tokenizer) in ``bdir``; returns its fingerprint."""
    from edgevlm.train.backbone import fingerprint

    vlm.backbone.save_pretrained(bdir, safe_serialization=True)
    backbone.save_tokenizer(bdir)
    return fingerprint(vlm.backbone)


def write_outputs(
    vlm: VLM, backbone: Backbone, datas: list[TaskData], tc: TrainConfig, out: Path, history: list, last: dict
) -> dict:
    """``out/<task>/`` per task; under --full the backbone in ``out/<task>/backbone`` (one task) or
    ``out/backbone`` (shared by several tasks). See :mod:`edgevlm.train.layout`."""
    fp, cfg = backbone.fingerprint, backbone.config_dict
    if tc.full:
        shared = len(datas) > 1
        fp = save_full_backbone(vlm, backbone, (out if shared else task_dir(out, datas[0].cfg.name)) / BACKBONE_DIR)
    summary = {}
    for d in datas:
        name = d.cfg.name
        n, share = vlm.trainable_share(name)
        if tc.full:
            n, share = vlm.backbone_params() + vlm.task(name).task_embeddings.numel(), 100.0
        tensors = {k: v.detach().cpu().numpy() for k, v in vlm.task(name).tensors().items()}
        meta = AdapterMeta(d.cfg, fp, cfg, n, share, tc.full, {**asdict(tc), "history": history})
        path = save_adapter(task_dir(out, name), tensors, meta)
        summary[name] = {
            "path": str(path),
            "trainable_params": n,
            "trainable_share": share,
            "valid_loss": [h[name] for h in history if name in h],
            "train_loss": last.get(name),
        }
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    return summary
