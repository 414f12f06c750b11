"""The typed training API: a validated :class:`TrainSpec` and :func:`train`, the one entry point.

``edgevlm train`` maps its arguments onto a TrainSpec; the demo, the benchmarks
and the tests build one directly. Each task is a :class:`TaskConfig` (a name
resolves to the built-in config or a generic source/target one), so the task
name lives in the config alone. Every run writes ``OUT/<task>/`` for every
task (see :mod:`edgevlm.train.layout`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevlm.core.config import ADAPTER_JSON, TaskConfig
from edgevlm.core.errors import ConfigError
from edgevlm.train.layout import task_dir
from edgevlm.train.tasks import BUILTIN_TASKS, Example, builtin_task

Split = tuple[Sequence[Example], Sequence[Example]]  # (train, valid)
MAX_BOTTLENECK_RATIO = 4  # bottleneck <= max(4 x n_embd, MIN_BOTTLENECK_LIMIT)
MIN_BOTTLENECK_LIMIT = 512  # the paper's bottlenecks (<= 300) fit any backbone, even a 64-wide test model
MIN_MAX_LEN = 16  # task tokens + some source + some target


def task_config(name: str, bottleneck: int | None) -> TaskConfig:
    """Built-in config for the paper's tasks; a generic source/target config for a new task name."""
    if bottleneck is not None and (not _is_int(bottleneck) or bottleneck <= 0):
        raise ConfigError(f"--bottleneck must be a positive integer, got {bottleneck!r}")
    if name in BUILTIN_TASKS:
        return builtin_task(name, bottleneck)
    return TaskConfig(name, bottleneck or 100, ["<source>", "<target>"], "<source> {input} <target>")


def task_examples(
    name: str, data: str | Path | None, valid: str | Path | None, fmt: str | None
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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve_tasks(tasks: Any, bottleneck: int | None, has_data: bool) -> tuple[TaskConfig, ...]:
    """Task names / TaskConfigs (``"all"`` = the built-in five) as TaskConfigs; ``bottleneck`` overrides
    the size of tasks given by name. A new name needs data (``--data`` or ``examples``)."""
    items = [tasks] if isinstance(tasks, (str, TaskConfig)) else list(tasks or ())
    if items == ["all"]:
        items = list(BUILTIN_TASKS)
    if not items:
        raise ConfigError("--task: at least one task is required")
    cfgs = []
    for t in items:
        if isinstance(t, TaskConfig):
            cfgs.append(t)
        elif isinstance(t, str) and t != "all":
            if t not in BUILTIN_TASKS and not has_data:
                raise ConfigError(f"unknown task {t!r} and no --data; built-in tasks: {sorted(BUILTIN_TASKS)}")
            cfgs.append(task_config(t, bottleneck))
        else:
            raise ConfigError(f"--task: expected task names ('all' alone) or TaskConfigs, got {t!r}")
    names = [c.name for c in cfgs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--task given twice: {names}")
    return tuple(cfgs)


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """One training run, validated on construction (ConfigError naming the option).

    ``tasks``: names, TaskConfigs or ``"all"`` (stored as TaskConfigs). Data per task: ``data``
    (+ ``valid_data``, ``format``; one task only), or in-memory ``examples`` ``{task: (train, valid)}``,
    or by default the built-in mini task. ``backbone``: ``"tiny"``, a local directory, or a loaded
    :class:`~edgevlm.train.backbone.Backbone` (modified in place under ``full``). ``lr`` defaults to
    3e-3 (adapters) or 5e-4 (``full``). ``token_init``: task tokens start from their names' embeddings
    (``"words"``) or all from the table's mean (``"mean"``). ``batch_size`` is per process; ``grad_accum``
    micro-batches make one step; ``device``, ``precision`` and ``dist_timeout`` are
    :mod:`edgevlm.train.distributed`'s (under torchrun / accelerate launch every process builds the same
    spec and calls :func:`train`).
    """

    tasks: tuple[TaskConfig, ...]
    out: Path
    backbone: Any = "tiny"
    data: str | Path | None = None
    valid_data: str | Path | None = None
    format: str | None = None
    examples: Mapping[str, Split] | None = None
    bottleneck: int | None = None
    steps: int = 400
    batch_size: int = 16
    lr: float | None = None
    seed: int = 0
    eval_every: int = 100
    save_every: int = 100
    max_len: int = 256
    full: bool = False
    distill_from: str | Path | None = None
    resume: bool = False
    force: bool = False
    progress: bool = True
    grad_accum: int = 1
    device: str = "auto"
    precision: str = "auto"
    dist_timeout: float = 600.0
    token_init: str = "words"
    quant: str = "fp32"

    def __post_init__(self) -> None:
        self._check_numbers()
        self.train_config()  # --quant (and the optimisation settings) checked now, not at the first step
        has_data = self.data is not None or self.examples is not None
        object.__setattr__(self, "tasks", resolve_tasks(self.tasks, self.bottleneck, has_data))
        self._check_data()
        self._check_examples()
        self._check_paths()

    def _check_numbers(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "save_every", "max_len", "grad_accum"):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise ConfigError(f"{_flag(name)} must be a positive integer, got {v!r}")
        if self.max_len < MIN_MAX_LEN:
            raise ConfigError(
                f"--max-len must be at least {MIN_MAX_LEN} (task tokens, source and target), got {self.max_len}"
            )
        if self.bottleneck is not None and (not _is_int(self.bottleneck) or self.bottleneck <= 0):
            raise ConfigError(f"--bottleneck must be a positive integer, got {self.bottleneck!r}")
        if self.lr is not None and (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, (int, float))
            or not (math.isfinite(self.lr) and self.lr > 0)
        ):
            raise ConfigError(f"--lr must be a positive number, got {self.lr!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed!r}")
        from edgevlm.train.data import TOKEN_INITS

        if self.token_init not in TOKEN_INITS:
            raise ConfigError(f"--token-init must be one of {', '.join(TOKEN_INITS)}, got {self.token_init!r}")
        for name in ("full", "resume", "force", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{_flag(name)} must be True or False, got {getattr(self, name)!r}")
        self._check_distributed()

    def _check_distributed(self) -> None:
        from edgevlm.train.distributed import DEVICES, PRECISIONS

        for name, allowed in (("device", DEVICES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{_flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        t = self.dist_timeout
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
            raise ConfigError(f"--dist-timeout must be a positive number of seconds, got {t!r}")

    def _check_data(self) -> None:
        from edgevlm.train.tasks.loaders import ALIASES, FORMATS

        if self.data is None:
            for name in ("valid_data", "format"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{_flag(name)} needs --data")
        elif self.examples is not None:
            raise ConfigError("--data and TrainSpec.examples are exclusive: pass one of them")
        elif len(self.tasks) > 1:
            raise ConfigError("--data takes one --task; multi-task training uses the built-in tasks")
        if self.format is not None and str(self.format).lower() not in (*FORMATS, *ALIASES):
            raise ConfigError(f"--format {self.format!r} is not supported; supported: {', '.join(FORMATS)}")

    def _check_examples(self) -> None:
        if self.examples is None:
            return
        names = [c.name for c in self.tasks]
        if not isinstance(self.examples, Mapping) or sorted(self.examples) != sorted(names):
            got = sorted(self.examples) if isinstance(self.examples, Mapping) else type(self.examples).__name__
            raise ConfigError(f"TrainSpec.examples: expected {{task: (train, valid)}} for tasks {names}, got {got}")
        for name, split in self.examples.items():
            if not (isinstance(split, (tuple, list)) and len(split) == 2) or not split[0]:
                raise ConfigError(f"TrainSpec.examples[{name!r}]: expected (train, valid) with training examples")

    def _check_paths(self) -> None:
        if not isinstance(self.out, (str, Path)) or not str(self.out):
            raise ConfigError(f"--out must be a directory path, got {self.out!r}")
        object.__setattr__(self, "out", Path(self.out))
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out}: exists and is not a directory")
        above = next((p for p in self.out.parents if p.exists()), None)  # the nearest existing ancestor
        if above is not None and not above.is_dir():
            raise ConfigError(f"--out {self.out}: {above} is a file, not a directory")
        if isinstance(self.backbone, (str, Path)) and not str(self.backbone):
            raise ConfigError("--backbone must be 'tiny' or a directory, got ''")
        if self.distill_from is not None and not Path(self.distill_from).is_dir():
            raise ConfigError(f"--distill-from {self.distill_from}: directory does not exist")

    def train_config(self):
        """The optimisation settings (recorded in every adapter.json)."""
        from edgevlm.train.trainer import TrainConfig

        lr = self.lr if self.lr is not None else (5e-4 if self.full else 3e-3)
        keys = ("steps", "batch_size", "seed", "eval_every", "save_every", "max_len", "full", "grad_accum", "quant")
        return TrainConfig(lr=float(lr), **{k: getattr(self, k) for k in keys})


@dataclass(frozen=True)
class TaskResult:
    """One trained task: its adapter directory and losses."""

    task: TaskConfig
    path: Path
    trainable_params: int
    trainable_share: float
    valid_loss: tuple[float, ...]  # step 0 (or the resumed history), every eval_every steps, the end
    train_loss: float | None  # the last training batch's loss (None: no step ran in this call)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote: ``OUT`` and one :class:`TaskResult` per task, in spec order."""

    out: Path
    tasks: tuple[TaskResult, ...]

    @property
    def paths(self) -> dict[str, Path]:
        return {t.task.name: t.path for t in self.tasks}

    def __getitem__(self, name: str) -> TaskResult:
        for t in self.tasks:
            if t.task.name == name:
                return t
        raise KeyError(name)


def load_spec_backbone(spec: TrainSpec):
    from edgevlm.train.backbone import Backbone, load_backbone

    if isinstance(spec.backbone, Backbone):
        return spec.backbone
    if not isinstance(spec.backbone, (str, Path)):
        raise ConfigError(f"--backbone must be 'tiny', a directory or a loaded Backbone, got {spec.backbone!r}")
    return load_backbone(spec.backbone)


def spec_examples(spec: TrainSpec, backbone) -> list[tuple[TaskConfig, list[Example], list[Example]]]:
    """(config, train, valid) per task; training targets replaced by the teacher's under ``distill_from``."""
    out = []
    for cfg in spec.tasks:
        if spec.examples is not None:
            tr, va = (list(x) for x in spec.examples[cfg.name])
        else:
            tr, va = task_examples(cfg.name, spec.data, spec.valid_data, spec.format)
        if spec.distill_from is not None:
            from edgevlm.train.distill import distill_targets

            tr = distill_targets(spec.distill_from, backbone, cfg, tr, spec.out)
        out.append((cfg, tr, va))
    return out


def check_sizes(spec: TrainSpec, sizes) -> None:
    """Options that must fit the backbone: a bottleneck of at most ``max(4 x n_embd, 512)`` (the paper's
    largest, 300, fits every backbone; 20,000 would be 370 M parameters on GPT-2), ``max_len`` within its context."""
    limit = max(MAX_BOTTLENECK_RATIO * sizes.n_embd, MIN_BOTTLENECK_LIMIT)
    for cfg in spec.tasks:
        if cfg.bottleneck > limit:
            raise ConfigError(
                f"--bottleneck {cfg.bottleneck} (task {cfg.name!r}): at most max({MAX_BOTTLENECK_RATIO} x n_embd, "
                f"{MIN_BOTTLENECK_LIMIT}) = {limit} for this backbone (n_embd={sizes.n_embd})"
            )
    if spec.max_len > sizes.n_positions:
        raise ConfigError(f"--max-len {spec.max_len}: beyond the backbone's context n_positions={sizes.n_positions}")


def prepare(spec: TrainSpec):
    """(vlm, backbone, task datas, train config) for ``spec``: the seeded model with every task added."""
    import torch

    from edgevlm.train.data import encode_example, token_init_ids
    from edgevlm.train.model import VLM
    from edgevlm.train.trainer import TaskData

    tc = spec.train_config()
    backbone = load_spec_backbone(spec)
    check_sizes(spec, backbone.sizes)
    if tc.quant != "fp32":
        if backbone is spec.backbone:  # the caller's: quantize a copy of its model
            import copy
            import dataclasses

            backbone = dataclasses.replace(backbone, model=copy.deepcopy(backbone.model), _fp=backbone._fp)
        backbone.quantize_weights(tc.quant)
    splits = spec_examples(spec, backbone)
    torch.manual_seed(tc.seed)  # adapter initialisation is part of the seeded run
    vlm = VLM(backbone.model)
    v, eos, tok = backbone.model.config.vocab_size, backbone.eos_token_id, backbone.tokenizer
    datas = []
    for cfg, tr, va in splits:
        vlm.add_task(cfg, token_init_ids(tok, cfg, spec.token_init))
        enc = [[encode_example(tok, cfg, e, v, eos, tc.max_len) for e in split] for split in (tr, va)]
        datas.append(TaskData(cfg, enc[0], enc[1]))
    return vlm, backbone, datas, tc


def check_out(spec: TrainSpec) -> None:
    """Refuse an ``out`` holding an adapter of the old single-task layout (it would hide the new task dirs),
    and a non-empty ``out`` unless ``resume`` or ``force`` (which replaces only this run's task directories)."""
    if (spec.out / ADAPTER_JSON).is_file():
        raise ConfigError(
            f"--out {spec.out}: holds a single-task adapter of the old layout ({ADAPTER_JSON}); "
            f"choose another --out (it now receives one {task_dir(spec.out, '<task>')} per task)"
        )
    if spec.out.is_dir() and not (spec.resume or spec.force) and any(spec.out.iterdir()):
        raise ConfigError(
            f"--out {spec.out}: is not empty (pass --force to replace this run's task adapters in it, "
            "--resume to continue its checkpoint, or choose another --out)"
        )


def train(spec: TrainSpec) -> TrainResult:
    """Train ``spec`` and write ``OUT/<task>/`` for every task (plus ``OUT/train_summary.json``).

    Under ``torchrun`` / ``accelerate launch`` every process calls this: it joins the launcher's process group
    (:mod:`edgevlm.train.distributed`), trains its shard of each global batch, and rank 0 writes."""
    from edgevlm.train.distributed import launch
    from edgevlm.train.trainer import fit

    check_out(spec)
    with launch(spec.device, spec.precision, spec.dist_timeout) as ctx:
        vlm, backbone, datas, tc = prepare(spec)
        summary = fit(vlm, backbone, datas, tc, spec.out, spec.resume, spec.progress, ctx)
    results = tuple(
        TaskResult(
            task=d.cfg,
            path=Path(summary[d.cfg.name]["path"]),
            trainable_params=summary[d.cfg.name]["trainable_params"],
            trainable_share=summary[d.cfg.name]["trainable_share"],
            valid_loss=tuple(summary[d.cfg.name]["valid_loss"]),
            train_loss=summary[d.cfg.name]["train_loss"],
        )
        for d in datas
    )
    return TrainResult(spec.out, results)
