"""Plans of the real-backbone quality suite (:mod:`.quality_real`): data, steps, lengths and the time budget.

Each task trains on the training side of a split by source unit (E2E MR, IWSLT
talk, dialogue, article) and is decoded on the first ``eval_sources`` held-out
units' sources. Training pads each batch to its own longest example (up to
``max_len``) and runs the LM head only at target positions
(:meth:`edgevlm.train.model.VLM.target_loss`), so the cost of a step is about
proportional to the tokens of the batch; :func:`estimate` turns that into
seconds from a measured seconds-per-token and the machine's load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgevlm.core.errors import ConfigError

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_TASKS = ("nlg", "mt", "summarization", "dialogue")
# (data spec relative to DATA_ROOT, every file the spec needs)
DATA = {
    "nlg": ("e2e/devset.csv", ("e2e/devset.csv",)),
    "mt": (
        "iwslt/IWSLT17.TED.tst2016.de-en.de.xml:iwslt/IWSLT17.TED.tst2016.en-de.en.xml",
        ("iwslt/IWSLT17.TED.tst2016.de-en.de.xml", "iwslt/IWSLT17.TED.tst2016.en-de.en.xml"),
    ),
    "summarization": ("cnn_dailymail/validation_first800.csv", ("cnn_dailymail/validation_first800.csv",)),
    "dialogue": (
        "personachat/valid_self_original_no_cands.first800.txt",
        ("personachat/valid_self_original_no_cands.first800.txt",),
    ),
}
# SmolLM2-135M adapter training, batch 8 x 128 tokens, quiet 2-core machine: 3.4 s/step (issue 15's measurement);
# --full (all 135 M weights, Adam) and decoding (forward only, per prompt or generated token) relative to it.
ADAPTER_S_PER_TOKEN = 3.4 / (8 * 128)
FULL_FACTOR = 1.5
DECODE_S_PER_TOKEN = ADAPTER_S_PER_TOKEN / 3
BUNDLE_EXPORT_S = 120.0  # one SmolLM2 export (fold, quantize, check against PyTorch)


@dataclass(frozen=True)
class TaskPlan:
    heldout_units: int  # source units held out whole
    eval_sources: int  # of their sources, decoded and scored (multi-reference)
    train_rows: int  # training examples (after a seeded shuffle of the training side)
    max_len: int  # prompt + target tokens of a training example
    valid: int = 16  # held-out rows not decoded, for the validation loss only
    mean_len: int = 0  # typical training example length (tokens), for the estimate; 0: max_len


@dataclass(frozen=True)
class Profile:
    name: str
    steps: int  # per system (adapter, full, distilled), same steps and examples for each
    batch_size: int
    tasks: dict[str, TaskPlan]
    distill: str | None = "nlg"  # the task distilled from its --full model
    quants: tuple[str, ...] = ("fp32", "int8", "int4")
    lr_full: float = 1e-4  # 5e-4 (the tiny default) destroys a pretrained 135 M model in few steps
    lr_adapter: float = 1e-2  # chosen on nlg among 3e-3 (the tiny default) and 1e-2 (experiments/quality/)
    mean_init: str | None = "nlg"  # the task whose adapter is also trained with task tokens from the table mean
    full: bool = True  # train --full as the reference
    lora: tuple[str, ...] = ()  # peft LoRA systems (see LORA), trained alike and exported beside the adapter
    lr_lora: float = 1e-2  # chosen on nlg's validation loss among 3e-4, 1e-3, 3e-3, 1e-2 (experiments/quality/)
    trained_for: tuple[str, ...] = ()  # quantizations the adapter is also trained for (train --quant), own bundle
    budgets: tuple[int, ...] = ()  # learning curves (.quality_curves): step budgets, each system trained per budget
    label: str = ""
    extra: dict = field(default_factory=dict)


CPU_TASKS = {
    "nlg": TaskPlan(heldout_units=40, eval_sources=40, train_rows=800, max_len=96, mean_len=60),
    "mt": TaskPlan(heldout_units=2, eval_sources=40, train_rows=800, max_len=128, mean_len=80),
    "summarization": TaskPlan(heldout_units=40, eval_sources=24, train_rows=400, max_len=320, mean_len=320),
    "dialogue": TaskPlan(heldout_units=40, eval_sources=40, train_rows=800, max_len=160, mean_len=140),
}
# LoRA systems: (target modules, rank; 0 = the rank whose parameter count matches the task's adapter)
LORA = {
    "lora": (("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), 0),
    "lora-qv8": (("q_proj", "v_proj"), 8),
}
PROFILES = {
    # fits 3 h on the 2-core machine (see estimate); results labelled cpu
    "cpu": Profile("cpu", steps=60, batch_size=8, tasks=CPU_TASKS, label="CPU, 2 cores, 60 steps x 8"),
    # the same suite with 25x the training (steps x batch) and more held-out sources: for a GPU machine
    "gpu": Profile(
        "gpu",
        steps=750,
        batch_size=16,
        tasks={
            t: replace(p, eval_sources=p.eval_sources * 2, train_rows=p.train_rows * 4) for t, p in CPU_TASKS.items()
        },
        label="GPU, 750 steps x 16",
    ),
    # issue 25's quality gate and issue 30's method comparison: the cpu plan on nlg and dialogue; the adapter
    # trained for int4 beside the fp32 one, peft LoRAs (matched parameters; rank 8 on q/v) on the same batches
    "gate": Profile(
        "gate",
        steps=60,
        batch_size=8,
        tasks={t: CPU_TASKS[t] for t in ("nlg", "dialogue")},
        quants=("fp32", "int4"),
        distill=None,
        mean_init=None,
        full=False,
        lora=tuple(LORA),
        trained_for=("int4",),
        label="CPU, 2 cores, 60 steps x 8: int4-trained adapters and LoRA",
    ),
    # issue 31's learning curves: adapter, 4x adapter and full fine-tuning from scratch at each budget (CPU: nlg
    # alone is about 45 min quiet; the whole plan is for several sessions, resumable, or curves-gpu)
    "curves": Profile(
        "curves",
        steps=240,
        batch_size=8,
        tasks={t: CPU_TASKS[t] for t in ("nlg", "summarization", "dialogue", "mt")},
        quants=(),
        distill=None,
        mean_init=None,
        full=False,
        budgets=(30, 60, 120, 240),
        label="learning curves, batch 8, 30-240 steps",
    ),
    "curves-gpu": Profile(
        "curves-gpu",
        steps=960,
        batch_size=16,
        tasks={t: CPU_TASKS[t] for t in ("nlg", "summarization", "dialogue", "mt")},
        quants=(),
        distill=None,
        mean_init=None,
        full=False,
        budgets=(30, 60, 120, 240, 480, 960),
        label="learning curves on a GPU, batch 16, 30-960 steps",
    ),
    # what was run in this session: three tasks, a handful of steps, to prove the pipeline on the real model
    "reduced": Profile(
        "reduced",
        steps=12,
        batch_size=8,
        tasks={t: replace(CPU_TASKS[t], eval_sources=24, train_rows=400) for t in ("nlg", "mt", "dialogue")},
        label="reduced CPU run: nlg, mt, dialogue, 12 steps x 8",
    ),
    # the fast test's plumbing run (a tiny backbone)
    "smoke": Profile(
        "smoke",
        steps=2,
        batch_size=4,
        tasks={t: TaskPlan(1 if t == "mt" else 3, 3, 16, 96, valid=4) for t in REAL_TASKS},
        label="smoke test",
    ),
}


def get_profile(name: str, tasks: list[str] | None = None) -> Profile:
    """The named profile, optionally restricted to ``tasks`` (ConfigError naming the option)."""
    if name not in PROFILES:
        raise ConfigError(f"--profile: unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    p = PROFILES[name]
    if not tasks:
        return p
    unknown = [t for t in tasks if t not in p.tasks]
    if unknown:
        raise ConfigError(f"--tasks: {unknown} not in profile {name!r} (it has {list(p.tasks)})")
    keep = {t: p.tasks[t] for t in tasks}
    return replace(p, tasks=keep, distill=p.distill if p.distill in tasks else None, mean_init=_in(p.mean_init, keep))


def _in(task: str | None, tasks) -> str | None:
    return task if task in tasks else None


def plan_key(p: Profile) -> str:
    """Short hash of the named profile's full plan (every task's), part of the work path: a changed plan
    (steps, rows, lengths, lr) never reuses cells of another; ``--tasks`` subsets share their profile's."""
    import hashlib

    return hashlib.sha256(repr(PROFILES.get(p.name, p)).encode()).hexdigest()[:8]


def load_factor() -> float:
    """How many times slower than quiet the machine runs now: 1-min load average per core, at least 1."""
    try:
        return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    except OSError:
        return 1.0


def estimate(p: Profile, s_per_token: float = ADAPTER_S_PER_TOKEN, load: float = 1.0) -> dict[str, float]:
    """Estimated seconds per task (training all systems + decoding all of them + bundles) on this machine."""
    out = {}
    for task, tp in p.tasks.items():
        step = p.batch_size * (tp.mean_len or tp.max_len) * s_per_token
        if p.budgets:  # adapter, 4x adapter, full at every budget; each decoded once
            decode = 3 * len(p.budgets) * tp.eval_sources * (tp.max_len + 40) * s_per_token / 3
            out[task] = load * (sum(p.budgets) * step * (2 + FULL_FACTOR) + decode)
            continue
        systems = 1 + (p.distill == task) + (p.mean_init == task) + len(p.lora) + len(p.trained_for)
        train = p.steps * step * (systems + FULL_FACTOR * p.full)
        decoders = 2 + p.full + (p.distill == task) + (p.mean_init == task)
        decoders += len(p.quants) * (1 + len(p.lora)) + len(p.trained_for)  # + bundles
        decode = decoders * tp.eval_sources * (tp.max_len + 40) * s_per_token / 3
        teacher = tp.train_rows * (tp.max_len + 40) * s_per_token / 3 if p.distill == task else 0.0
        out[task] = load * (train + decode + teacher) + (len(p.quants) + len(p.trained_for)) * BUNDLE_EXPORT_S
    return out


def measured_s_per_token(work: Path) -> tuple[float, int] | None:
    """(median training seconds per token on a quiet machine, runs) of the adapters trained under ``work`` (any
    profile), if any: each run's rate divided by its load factor (mean 1-min load at its start and end per core)."""
    import json
    import statistics

    rates, cores = [], os.cpu_count() or 1
    for f in sorted(Path(work).glob("*/*/cells/*.adapter.json")):
        rec = json.loads(f.read_text())
        if rec.get("train_s_per_step") and rec.get("train_tokens_per_step"):
            loads = [rec.get(k, [cores])[0] for k in ("load_avg_at_start", "load_avg_at_end")]
            quiet = max(1.0, sum(loads) / len(loads) / cores)
            rates.append(rec["train_s_per_step"] / rec["train_tokens_per_step"] / quiet)
    return (statistics.median(rates), len(rates)) if rates else None


def describe(p: Profile, load: float, measured: tuple[float, int] | None = None) -> str:
    """The plan and its time budget, printed before the run: from this machine's measured seconds per training
    token when earlier runs left some (each divided by its load), else from the quiet figure; times the load now."""
    est = estimate(p, measured[0], load) if measured else estimate(p, load=load)
    lines = [
        f"quality plan {p.name!r} ({p.label}): {p.steps} steps x batch {p.batch_size} per system "
        f"(untrained, adapter at the paper's bottleneck lr {p.lr_adapter:g}"
        + (f", --full lr {p.lr_full:g}" if p.full else "")
        + (f", LoRA {'/'.join(p.lora)} lr {p.lr_lora:g}" if p.lora else "")
        + (f", adapter trained for {'/'.join(p.trained_for)}" if p.trained_for else "")
        + (f", distilled {p.distill}" if p.distill else "")
        + (f", mean-init task tokens {p.mean_init}" if p.mean_init else "")
        + f"); bundles {'/'.join(p.quants)}; LM head on target positions only; batches padded to their longest row"
    ]
    for t, tp in p.tasks.items():
        lines.append(
            f"  {t:<14} train {tp.train_rows} rows, max_len {tp.max_len}; hold out {tp.heldout_units} units, "
            f"decode {tp.eval_sources} sources; about {est[t] / 60:.0f} min"
        )
    basis = (
        f"{measured[0] * 8 * 128:.1f} s per quiet adapter step of 8 x 128 tokens (median of {measured[1]} measured "
        f"run(s), each divided by its load) x load {load:.1f}"
        if measured
        else f"{ADAPTER_S_PER_TOKEN * 8 * 128:.1f} s per adapter step of 8 x 128 tokens when quiet x load {load:.1f}"
    )
    lines.append(f"  estimated total {sum(est.values()) / 3600:.2f} h on this machine ({basis}; CPU figures)")
    return "\n".join(lines)


def missing_data(root: Path, tasks) -> list[str]:
    """The data files of ``tasks`` that are absent under ``root``."""
    return [str(root / f) for t in tasks for f in DATA[t][1] if not (root / f).is_file()]
