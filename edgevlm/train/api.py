"""Glue between the CLI and the library: resolve tasks, data and backbone into a training run."""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.config import TaskConfig
from edgevlm.core.errors import ConfigError
from edgevlm.train.tasks import BUILTIN_TASKS, Example, builtin_task


def task_config(name: str, bottleneck: int | None) -> TaskConfig:
    """Built-in config for the paper's tasks; a generic source/target config for a new task name."""
    if bottleneck is not None and bottleneck <= 0:
        raise ConfigError(f"--bottleneck must be a positive integer, got {bottleneck}")
    if name in BUILTIN_TASKS:
        return builtin_task(name, bottleneck)
    return TaskConfig(name, bottleneck or 100, ["<source>", "<target>"], "<source> {input} <target>")


def task_examples(
    name: str, data: str | None, valid: str | None, fmt: str | None
) -> tuple[list[Example], list[Example]]:
    """(train, valid) examples: from files, or the built-in mini task of that name.

    Without a validation file, 5 % of the distinct sources are held out with all their rows
    (E2E has several references per MR: a row split would leak them into training).
    """
    from edgevlm.train.tasks.loaders import holdout_split, load_examples
    from edgevlm.train.tasks.mini import mini_task

    if data is None:
        if name not in BUILTIN_TASKS:
            raise ConfigError(f"unknown task {name!r} and no --data; built-in tasks: {sorted(BUILTIN_TASKS)}")
        return mini_task(name, "train"), mini_task(name, "valid", 64)
    train = load_examples(data, name, fmt)
    if valid:
        return train, load_examples(valid, name, fmt)
    return holdout_split(train)  # 5 % of the source units (MR, talk, dialogue, article), each kept whole


def resolve_tasks(names: list[str]) -> list[str]:
    out = list(BUILTIN_TASKS) if names == ["all"] else names
    if len(set(out)) != len(out):
        raise ConfigError(f"--task given twice: {out}")
    return out


def build_training(args):
    """(vlm, backbone, datas, train_config) from parsed ``edgevlm train`` arguments."""
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.data import encode_example
    from edgevlm.train.model import VLM
    from edgevlm.train.trainer import TaskData, TrainConfig

    names = resolve_tasks(args.task)
    lr = args.lr or (5e-4 if args.full else 3e-3)
    tc = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=lr,
        seed=args.seed,
        eval_every=args.eval_every,
        save_every=args.save_every,
        max_len=args.max_len,
        full=args.full,
    )
    cfgs = {n: task_config(n, args.bottleneck) for n in names}
    examples = {n: task_examples(n, args.data, getattr(args, "valid_data", None), args.format) for n in names}
    backbone = load_backbone(args.backbone)
    if getattr(args, "distill_from", None):
        from edgevlm.train.distill import distill_targets

        examples = {
            n: (distill_targets(args.distill_from, backbone, cfgs[n], tr, Path(args.out)), va)
            for n, (tr, va) in examples.items()
        }
    import torch

    torch.manual_seed(tc.seed)  # adapter initialisation is part of the seeded run
    vlm = VLM(backbone.model)
    v, eos = backbone.model.config.vocab_size, backbone.eos_token_id
    datas = {}
    for n in names:
        vlm.add_task(cfgs[n])
        enc = [
            [encode_example(backbone.tokenizer, cfgs[n], e, v, eos, tc.max_len) for e in split] for split in examples[n]
        ]
        datas[n] = TaskData(cfgs[n], enc[0], enc[1])
    return vlm, backbone, datas, tc
