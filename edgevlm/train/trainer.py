"""Training loop: one task's adapter, several tasks at once, or full fine-tuning (the paper's baseline).

Called through :func:`edgevlm.train.api.train`; writes the layout of :mod:`edgevlm.train.layout`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from edgevlm.core.config import AdapterMeta, TaskConfig, atomic_write_text
from edgevlm.core.errors import ConfigError, DistributedError
from edgevlm.train import checkpoint
from edgevlm.train.adapters import save_adapter
from edgevlm.train.backbone import Backbone
from edgevlm.train.data import IGNORE, Encoded, collate
from edgevlm.train.distributed import LOCAL, Dist, precision_name
from edgevlm.train.layout import BACKBONE_DIR, SUMMARY_JSON, task_dir
from edgevlm.train.model import VLM

CHECKPOINT = checkpoint.CHECKPOINT


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
    grad_accum: int = 1  # micro-batches per optimizer step (global batch = batch_size x processes x grad_accum)
    quant: str = "fp32"  # the bundle quantization the frozen backbone simulates (edgevlm.train.quantsim)

    def __post_init__(self) -> None:
        for k in ("steps", "batch_size", "max_len", "eval_every", "save_every", "grad_accum"):
            if getattr(self, k) <= 0:
                raise ConfigError(f"--{k.replace('_', '-')} must be positive, got {getattr(self, k)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.warmup < 0 or self.clip <= 0:
            raise ConfigError("--warmup must be >= 0 and clip > 0")
        from edgevlm.train.quantsim import check_mode

        check_mode(self.quant)
        if self.full and self.quant != "fp32":
            raise ConfigError(f"--quant {self.quant}: simulates a frozen backbone's bundle weights; --full trains them")


@dataclass
class TaskData:
    cfg: TaskConfig
    train: list[Encoded]
    valid: list[Encoded] = field(default_factory=list)


def lm_loss(vlm: VLM, ids, mask, labels, task: str) -> torch.Tensor:
    """Mean cross-entropy over target tokens only (the LM head runs only there). ids/mask/labels [b, t]."""
    return vlm.target_loss(ids, mask, labels, task, IGNORE)


def validation_loss(vlm: VLM, data: list[Encoded], task: str, pad: int, batch_size: int = 32) -> float:
    """Token-weighted mean target loss over ``data``."""
    total, count = validation_sums(vlm, data, task, pad, batch_size)
    return total / max(count, 1)


@torch.no_grad()
def validation_sums(vlm: VLM, data: list[Encoded], task: str, pad: int, batch_size: int = 32) -> tuple[float, int]:
    """(summed target loss, target tokens) over ``data``, on the model's device."""
    was_training = vlm.training
    vlm.eval()
    total, count, device = 0.0, 0, vlm.backbone.device
    for i in range(0, len(data), batch_size):
        ids, mask, labels = (t.to(device) for t in collate(data[i : i + batch_size], pad))
        n = int((labels[:, 1:] != IGNORE).sum())
        total += float(lm_loss(vlm, ids, mask, labels, task)) * n
        count += n
    vlm.train(was_training)
    return total, count


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


def save_checkpoint(out: Path, params, opt, sched, step: int, history: list) -> None:
    """Trainable tensors, optimizer moments and RNG state as safetensors + JSON (atomic). The batches need no
    state: :func:`step_indices` draws them from (seed, task, step) alone."""
    from safetensors.torch import save_file

    tensors = {f"param.{i}": p.detach().cpu().contiguous() for i, p in enumerate(params)}
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            tensors[f"opt.{i}.{k}"] = v.detach().cpu().reshape(-1) if v.dim() == 0 else v.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": step, "sched": sched.state_dict(), "history": history}
    checkpoint.publish(out, lambda d: save_file(tensors, str(d / checkpoint.STATE_TENSORS)), meta)


def load_checkpoint(out: Path, params, opt, sched, ctx: Dist = LOCAL, steps: int | None = None) -> tuple[int, list]:
    """Restore what :func:`save_checkpoint` wrote; every rank gets rank 0's copy (only rank 0 needs to see it).
    A complete checkpoint that a killed swap left beside ``checkpoint/`` is used (:func:`checkpoint.find`)."""
    from safetensors.torch import load

    if ctx.main:
        checkpoint.find(out)
    ck = out / CHECKPOINT
    raw = ctx.read_on_main(ck / checkpoint.STATE_JSON)
    if raw is None:
        raise ConfigError(f"--resume: no complete checkpoint in {ck}")
    meta = json.loads(raw)
    if steps is not None and meta["step"] >= steps:
        raise ConfigError(f"--resume: the checkpoint in {out} is at step {meta['step']}, not before --steps {steps}")
    try:
        tensors = load(ctx.read_on_main(ck / checkpoint.STATE_TENSORS) or b"")
    except Exception as e:  # safetensors' own error types for corrupt files
        raise ConfigError(f"{ck / checkpoint.STATE_TENSORS}: cannot read the checkpoint ({e})") from None
    with torch.no_grad():
        for i, p in enumerate(params):
            if f"param.{i}" not in tensors or tensors[f"param.{i}"].shape != p.shape:
                raise ConfigError(f"{ck}: checkpoint does not match this model/task set (param {i})")
            p.copy_(tensors[f"param.{i}"])
            st = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
            if st:
                st = {k: v.reshape(()) if k == "step" else v.to(p.device) for k, v in st.items()}
                opt.state[p] = st
    sched.load_state_dict(meta["sched"])
    for group, lr in zip(opt.param_groups, sched.get_last_lr()):
        group["lr"] = lr
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
    ctx: Dist = LOCAL,
) -> dict:
    """Train the given tasks (grouped batches, round robin), then write ``out/<task>/`` for each.

    Returns the summary written to ``out/train_summary.json``: per task its directory, trainable share,
    validation losses and last training loss. :func:`edgevlm.train.api.train` is the public entry point.
    Under torchrun every rank calls this with its ``ctx``; rank 0 alone prints, checkpoints and writes.
    """
    out = Path(out)
    state, start, history = start_state(vlm, backbone, datas, tc, out, resume, ctx)
    say = print if progress and ctx.main else (lambda *a, **k: None)
    say(ctx.describe(tc.batch_size, tc.grad_accum), file=sys.stderr, flush=True)
    vlm.train()
    try:
        with vlm.frozen_in(ctx.dtype):  # bf16: frozen weights cast once, not at every matmul
            last, secs = run_steps(vlm, datas, tc, out, state, backbone.eos_token_id, start, history, progress, ctx)
    except DistributedError as e:
        raise DistributedError(f"{e}; {resume_hint(out, ctx)}") from None
    n = (tc.steps - start) * tc.batch_size * ctx.world * tc.grad_accum
    say(f"{tc.steps - start} steps in {secs:.1f} s: {n / max(secs, 1e-9):.1f} examples/s", file=sys.stderr)
    vlm.eval()
    summary = write_outputs(vlm, backbone, datas, tc, out, history, last, ctx)
    ctx.barrier("waiting for rank 0 to write the outputs")
    vlm.to("cpu")  # the caller's backbone back where it was loaded
    return summary


def start_state(vlm: VLM, backbone: Backbone, datas: list[TaskData], tc: TrainConfig, out: Path, resume, ctx):
    """((params, optimizer, schedule, data generator), first step, validation history) on ``ctx.device``,
    resumed from rank 0's checkpoint or fresh; the trainable parameters are rank 0's on every rank."""
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
    vlm.to(ctx.device)
    vlm.train_dtype = ctx.dtype
    params = trainable(vlm, [d.cfg.name for d in datas], tc.full)
    opt, sched = make_optimizer(params, tc)
    if resume:
        start, history = load_checkpoint(out, params, opt, sched, ctx, tc.steps)
    else:
        start, history = 0, [{"step": 0, **validation_losses(vlm, datas, backbone.eos_token_id, ctx)}]
    ctx.broadcast_(params)
    return (params, opt, sched), start, history


def resume_hint(out: Path, ctx: Dist) -> str:
    ck = out / CHECKPOINT
    if ctx.main and (ck / "state.json").is_file():
        step = json.loads((ck / "state.json").read_text())["step"]
        return f"the checkpoint of step {step} is in {ck}: run the same command with --resume to continue"
    return f"run the same command with --resume to continue from {ck} (written every --save-every steps)"


def validation_losses(vlm: VLM, datas: list[TaskData], pad: int, ctx: Dist = LOCAL) -> dict[str, float]:
    """Each task's token-weighted validation loss; the ranks score disjoint shares and sum them."""
    out = {}
    for d in (d for d in datas if d.valid):
        total, count = ctx.sum_floats(list(validation_sums(vlm, d.valid[ctx.rank :: ctx.world], d.cfg.name, pad)))
        out[d.cfg.name] = total / max(count, 1)
    return out


def optimise(vlm: VLM, batches, n_targets: int, task: str, state, clip: float, ctx: Dist = LOCAL) -> float:
    """One optimizer + schedule step on this rank's micro-batches (ids, mask, labels [b, t]) of a global batch
    of ``n_targets`` target tokens; gradients and loss are summed over the ranks. Returns the global loss."""
    params, opt, sched = state
    opt.zero_grad(set_to_none=True)
    total = torch.zeros((), device=ctx.device)
    for ids, mask, labels in batches:
        share = int((labels[:, 1:] != IGNORE).sum()) / n_targets  # 1.0 for one process, one micro-batch
        loss = lm_loss(vlm, ids, mask, labels, task) * share
        loss.backward()
        total += loss.detach()
    total = ctx.sum_grads(params, total)
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()
    return total.item()


BUCKET_STEPS = 8  # steps whose examples are drawn together and grouped by length


def step_indices(lengths: list[int], size: int, seed: int, task: str, k: int) -> list[int]:
    """The examples (indices into ``lengths``) of a task's ``k``-th global batch of ``size``.

    The batches of BUCKET_STEPS steps are drawn together, uniformly with replacement, sorted by length, cut into
    batches and served in a drawn order: each batch holds similar lengths, so little of a step pads, while every
    example stays equally likely. Drawn from (seed, task, k // BUCKET_STEPS) alone: every rank and a resumed
    run draw the same batches with no sampler state to save."""
    digest = hashlib.sha256(f"{seed}:{task}:{k // BUCKET_STEPS}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    pool = torch.randint(0, len(lengths), (size * BUCKET_STEPS,), generator=gen).tolist()
    pool.sort(key=lambda i: lengths[i])  # stable: ties keep their drawn order
    order = torch.randperm(BUCKET_STEPS, generator=gen).tolist()
    return pool[order[k % BUCKET_STEPS] * size :][:size]


def step_batches(d: TaskData, tc: TrainConfig, k: int, pad: int, ctx: Dist):
    """(this rank's micro-batches on its device, target tokens of the global batch) for the task's step ``k``."""
    lengths = [len(e.prompt) + len(e.target) for e in d.train]
    idx = step_indices(lengths, tc.batch_size * ctx.world * tc.grad_accum, tc.seed, d.cfg.name, k)
    micro = [[t.to(ctx.device) for t in collate([d.train[i] for i in m], pad)] for m in ctx.shard(idx, tc.batch_size)]
    return micro, sum(len(d.train[i].target) for i in idx)


def run_steps(
    vlm: VLM, datas: list[TaskData], tc: TrainConfig, out: Path, state, pad: int, start: int, history, progress, ctx
):
    """Optimisation steps ``start..tc.steps`` (validation appended to ``history``, checkpoints every
    ``save_every``); returns each task's last training loss and the seconds spent in optimizer steps."""
    from tqdm.auto import tqdm

    params, opt, sched = state
    last: dict[str, float] = {}
    names = "+".join(d.cfg.name for d in datas)
    show, busy = progress and ctx.main, 0.0
    bar = tqdm(
        range(start, tc.steps), initial=start, total=tc.steps, desc=f"train {names}", unit="step", disable=not show
    )
    for step in bar:
        d = datas[step % len(datas)]
        ctx.seed_step(tc.seed, step)
        t0 = time.perf_counter()
        batches = step_batches(d, tc, step // len(datas), pad, ctx)
        last[d.cfg.name] = optimise(vlm, *batches, d.cfg.name, state, tc.clip, ctx)
        busy += time.perf_counter() - t0
        bar.set_postfix(task=d.cfg.name, loss=f"{last[d.cfg.name]:.3f}")
        if (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps:
            history.append({"step": step + 1, **validation_losses(vlm, datas, pad, ctx)})
            losses = ", ".join(f"{k}={v:.3f}" for k, v in history[-1].items() if k != "step")
            if show:
                bar.write(f"step {step + 1}: validation loss {losses}")
        if (step + 1) % tc.save_every == 0 and step + 1 < tc.steps and ctx.main:
            save_checkpoint(out, params, opt, sched, step + 1, history)
        ctx.fault_point(step + 1)
    return last, busy


def save_full_backbone(vlm: VLM, backbone: Backbone, bdir: Path) -> str:
    """The fine-tuned backbone (safetensors + tokenizer) in ``bdir``; returns its fingerprint."""
    from edgevlm.train.backbone import fingerprint

    vlm.backbone.save_pretrained(bdir, safe_serialization=True)
    backbone.save_tokenizer(bdir)
    return fingerprint(vlm.backbone)


def write_outputs(
    vlm: VLM,
    backbone: Backbone,
    datas: list[TaskData],
    tc: TrainConfig,
    out: Path,
    history: list,
    last: dict,
    ctx: Dist = LOCAL,
) -> dict:
    """``out/<task>/`` per task; under --full the backbone in ``out/<task>/backbone`` (one task) or
    ``out/backbone`` (shared by several tasks). See :mod:`edgevlm.train.layout`. Only rank 0 writes;
    every rank returns the summary."""
    fp, cfg = backbone.fingerprint, backbone.config_dict
    if tc.full and ctx.main:
        shared = len(datas) > 1
        fp = save_full_backbone(vlm, backbone, (out if shared else task_dir(out, datas[0].cfg.name)) / BACKBONE_DIR)
    summary = {}
    for d in datas:
        name = d.cfg.name
        n, share = vlm.trainable_share(name)
        if tc.full:
            n, share = vlm.backbone_params() + vlm.task(name).task_embeddings.numel(), 100.0
        tensors = {k: v.detach().cpu().numpy() for k, v in vlm.task(name).tensors().items()}
        training = {**asdict(tc), "processes": ctx.world, "precision": precision_name(ctx.dtype), "history": history}
        meta = AdapterMeta(d.cfg, fp, cfg, n, share, tc.full, training, backbone_source=backbone.source)
        path = save_adapter(task_dir(out, name), tensors, meta) if ctx.main else task_dir(out, name)
        summary[name] = {
            "path": str(path),
            "trainable_params": n,
            "trainable_share": share,
            "valid_loss": [h[name] for h in history if name in h],
            "train_loss": last.get(name),
        }
    if ctx.main:
        shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
        atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    return summary
