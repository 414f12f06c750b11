"""Quality suite: adapters vs full fine-tuning, and the bundles' fp32/int8/int4 quality.

E2E (``../shared/data/e2e/devset.csv``, split by meaning representation so no
MR is on both sides): on the tiny default, ``nlg`` adapters (the paper's
bottleneck 10, and a wider 25) and a fully fine-tuned model
are trained with the same steps on the training MRs, then the held-out MRs
are decoded greedily by each PyTorch model and by the bottleneck-10 adapter
exported as fp32/int8/int4 bundles through the runtime; BLEU
(multi-reference) and ROUGE-L with the trainable share. The
five built-in mini tasks: one multi-task adapter run, each task's metric in
PyTorch and in every bundle. Skips E2E with a message when the file is absent.

    python -m edgevlm.benchmarks.quality [--quick] [--out DIR]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import plots
from .common import Report, check_threads, md_table, suite_dir
from .fixtures import Workspace, export
from .quality_common import agreement, bundle_scores

SUITE = "quality"
E2E_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "e2e" / "devset.csv"
WIDE_BOTTLENECK = 25  # nlg adapter at ~2.8% of the tiny backbone: the paper's "2-3% extra parameters"
MINI_TASKS = ("nlg", "mt", "qa", "summarization", "dialogue")
QUANTS = ("fp32", "int8", "int4")


@dataclass(frozen=True)
class Plan:
    e2e_steps: int
    e2e_heldout: int  # held-out MRs
    e2e_eval: int  # of which decoded
    mini_steps: int  # per task, multi-task run (round robin)
    mini_eval: int
    valid: int  # validation examples per task (loss only)
    batch_size: int = 16
    train_rows: int | None = None  # cap on training examples per task (None: all)


PLAN = Plan(e2e_steps=300, e2e_heldout=120, e2e_eval=100, mini_steps=80, mini_eval=50, valid=64)
QUICK = Plan(e2e_steps=4, e2e_heldout=12, e2e_eval=6, mini_steps=1, mini_eval=4, valid=4, batch_size=8, train_rows=128)


def train_adapters(
    bb_spec, datas_examples: dict, steps: int, out: Path, full: bool, batch_size: int, bottleneck: int | None = None
) -> Path:
    """Train ``{task: (train_examples, valid_examples)}`` together (adapters, or --full) into ``out/<task>/``."""
    from edgevlm.train.api import TrainSpec, train

    spec = TrainSpec(
        tasks=list(datas_examples),
        out=out,
        backbone=bb_spec,  # loaded fresh: --full changes the weights
        examples=datas_examples,
        bottleneck=bottleneck,
        steps=steps,
        batch_size=batch_size,
        eval_every=steps,
        save_every=steps,
        full=full,
        force=True,  # the benchmark's own work directory: a re-run retrains
    )
    return train(spec).out


def torch_scores(adapter_dir: Path, examples, limit: int, backbone=None) -> dict:
    """Metrics of the PyTorch VLM (adapter or --full output) on ``examples``."""
    from edgevlm.train.evaluate import TorchGenerator, evaluate, load_model

    vlm, bb, meta = load_model(adapter_dir, backbone)
    out = evaluate(examples, TorchGenerator(vlm, bb, meta.task), limit=limit, progress=False)
    return {**out, "trainable_pct": meta.trainable_share}


def e2e(report: Report, ws: Workspace, plan: Plan, threads: int, path: Path, bar) -> list[dict]:
    from edgevlm.train.tasks.e2e import load_e2e
    from edgevlm.train.tasks.loaders import group_by_source, split_by_source

    train_rows, held = split_by_source(load_e2e(path), plan.e2e_heldout, seed=0)
    train_rows = train_rows[: plan.train_rows]
    decoded = {g.source for g in group_by_source(held)[: plan.e2e_eval]}
    test = [e for e in held if e.source in decoded]
    valid = [e for e in held if e.source not in decoded][: plan.valid]  # validation loss only; never decoded
    report.note(
        f"E2E: {len({e.source for e in train_rows})} training MRs ({len(train_rows)} rows), "
        f"{plan.e2e_eval} held-out MRs decoded (multi-reference), split by MR with seed 0"
    )
    data = {"nlg": (train_rows, valid)}
    systems = {}
    for key, full, bottleneck, name in (
        ("e2e-adapter", False, None, "adapter (PyTorch)"),
        ("e2e-adapter-b25", False, WIDE_BOTTLENECK, f"adapter b{WIDE_BOTTLENECK} (PyTorch)"),
        ("e2e-full", True, None, "full fine-tuning (PyTorch)"),
    ):
        bar.set_postfix_str(f"E2E: train {name}")
        systems[name] = ws.get(
            key,
            lambda p, full=full, bottleneck=bottleneck: train_adapters(
                "tiny", data, plan.e2e_steps, p, full, plan.batch_size, bottleneck
            ),
        )
        bar.update(1)
    ad = systems["adapter (PyTorch)"]
    out = []
    for name, d in systems.items():
        bb = None if "full" in name else "tiny"
        bar.set_postfix_str(f"E2E: decode {name}")
        s = torch_scores(d, test, plan.e2e_eval, bb)
        out.append(_row(report, "e2e", name, s))
        bar.update(1)
    out += bundles(report, ws, "e2e", {"nlg": ad}, {"nlg": test}, plan.e2e_eval, threads, bar)
    return out


def bundles(
    report, ws, dataset: str, adapters: dict[str, Path], examples: dict, limit: int, threads: int, bar
) -> list[dict]:
    """Export the ``{task: adapter_dir}`` in each quantization mode; score every task through the runtime."""
    from edgevlm.runtime import Runtime
    from edgevlm.train.tiny import ensure_tiny

    out, ref = [], {}
    for q in QUANTS:
        bar.set_postfix_str(f"{dataset}: {q} bundle")
        b = ws.get(f"{dataset}-bundle-{q}", lambda p, q=q: export(ensure_tiny(), list(adapters.values()), q, p))
        rt = Runtime.load(b, threads=threads)
        for t in adapters:
            s, preds = bundle_scores(rt, t, examples[t], limit)
            ref.setdefault(t, preds)
            s["same_output_as_fp32_pct"] = agreement(preds, ref[t])
            out.append(_row(report, dataset, f"{q} bundle (runtime)", s, t))
        bar.update(1)
    return out


def _row(report: Report, dataset: str, system: str, s: dict, task: str = "nlg") -> dict:
    extra = f", trainable {s['trainable_pct']:.2f}%" if "trainable_pct" in s else ""
    same = f", {s['same_output_as_fp32_pct']:.0f}% outputs identical to fp32" if "same_output_as_fp32_pct" in s else ""
    return report.add(
        f"[{dataset}/{task}] {system}: BLEU {s['bleu']:.2f}, ROUGE-L {s['rougeL']:.2f}, F1 {s['f1']:.2f} "
        f"on {s['n']} sources{extra}{same}",
        kind="score",
        dataset=dataset,
        task=task,
        system=system,
        **{k: v for k, v in s.items()},
    )


def mini(report: Report, ws: Workspace, plan: Plan, threads: int, bar) -> list[dict]:
    from edgevlm.train.tasks.mini import mini_task

    data = {t: (mini_task(t, "train", plan.train_rows), mini_task(t, "valid", plan.valid)) for t in MINI_TASKS}
    test = {t: mini_task(t, "test", plan.mini_eval) for t in MINI_TASKS}
    bar.set_postfix_str("mini tasks: train 5 adapters")
    ad = ws.get(
        "mini-adapters",
        lambda p: train_adapters("tiny", data, plan.mini_steps * len(MINI_TASKS), p, False, plan.batch_size),
    )
    bar.update(1)
    out = []
    for t in MINI_TASKS:
        s = torch_scores(ad / t, test[t], plan.mini_eval, "tiny")
        out.append(_row(report, "mini", "adapter (PyTorch)", s, t))
    bar.update(1)
    return out + bundles(report, ws, "mini", {t: ad / t for t in MINI_TASKS}, test, plan.mini_eval, threads, bar)


def primary(task: str) -> str:
    from edgevlm.train.tasks import BUILTIN_TASKS

    return BUILTIN_TASKS[task].metric


def markdown(rows: list[dict]) -> str:
    parts = []
    e = [r for r in rows if r["dataset"] == "e2e"]
    if e:
        parts.append(
            "## E2E NLG (tiny backbone, held-out MRs)\n\n"
            + md_table(
                e,
                [
                    ("system", "system"),
                    ("bleu", "BLEU"),
                    ("rougeL", "ROUGE-L"),
                    ("trainable_pct", "trainable %"),
                    ("same_output_as_fp32_pct", "outputs = fp32 bundle %"),
                    ("n", "MRs"),
                ],
            )
            + "\n![E2E](e2e.png)\n"
        )
    m = [r for r in rows if r["dataset"] == "mini"]
    if m:
        table = {}
        for r in m:
            row = table.setdefault(r["task"], {"task": r["task"], "metric": primary(r["task"])})
            row[r["system"]] = r[primary(r["task"])]
        systems = list(dict.fromkeys(r["system"] for r in m))
        parts.append(
            "## Built-in mini tasks (each task's metric)\n\n"
            + md_table(list(table.values()), [("task", "task"), ("metric", "metric")] + [(s, s) for s in systems])
            + "\n![mini tasks](mini.png)\n"
        )
    return "\n".join(parts)


def plot(rows: list[dict], out: Path) -> None:
    e = [r for r in rows if r["dataset"] == "e2e"]
    if e:
        plots.grouped_bars(
            out / "e2e.png",
            [r["system"] for r in e],
            {"BLEU": [r["bleu"] for r in e], "ROUGE-L": [r["rougeL"] for r in e]},
            "score",
            "E2E held-out MRs",
        )
    m = [r for r in rows if r["dataset"] == "mini"]
    if m:
        systems = list(dict.fromkeys(r["system"] for r in m))
        series = {
            s: [next(r[primary(t)] for r in m if r["task"] == t and r["system"] == s) for t in MINI_TASKS]
            for s in systems
        }
        plots.grouped_bars(
            out / "mini.png",
            [f"{t} ({primary(t)})" for t in MINI_TASKS],
            series,
            "score",
            "Mini tasks: PyTorch adapter vs bundles",
        )


def run(
    quick: bool = False,
    out: str | Path | None = None,
    threads: int | None = None,
    work: str | Path | None = None,
    e2e_path: str | Path | None = None,
    backbone: str = "tiny",
    profile: str | None = None,
    tasks: list[str] | None = None,
) -> Path | None:
    """Run the suite; returns the results directory. A real ``backbone`` (``smollm2-135m`` or an HF
    directory) runs :mod:`.quality_real` with ``profile``/``tasks`` instead (None when its data is absent).

    Nothing here is timed, so ``threads`` defaults to 1 (training and
    decoding): on a shared 2-core machine two spinning threads per process
    run several times slower than one.
    """
    if backbone != "tiny":
        from . import quality_real

        return quality_real.run(
            backbone, profile or ("smoke" if quick else "cpu"), out, work, tasks, None, threads or 1
        )
    import torch
    from tqdm.auto import tqdm

    e2e_path = Path(e2e_path) if e2e_path else E2E_DEV
    threads = check_threads(threads or 1)
    torch.set_num_threads(threads)
    plan = QUICK if quick else PLAN
    report = Report(SUITE, threads, quick)
    ws = Workspace(Path(work) / ("quick" if quick else "full") if work else None)  # trained models depend on the plan
    rows: list[dict] = []
    has_e2e = e2e_path.is_file()
    try:
        with tqdm(total=(9 if has_e2e else 0) + 5, desc="quality", unit="step") as bar:
            if has_e2e:
                rows += e2e(report, ws, plan, threads, e2e_path, bar)
            else:
                report.note(f"E2E skipped: {e2e_path} not found (see ../shared/data/README.md)")
            rows += mini(report, ws, plan, threads, bar)
    finally:
        ws.close()
    dest = suite_dir(out, SUITE)
    dest.mkdir(parents=True, exist_ok=True)
    plot(rows, dest)
    return report.write(dest, markdown(rows), {"plan": vars(plan)})


def main(argv: list[str] | None = None) -> int:
    from .common import base_parser

    p = base_parser(SUITE)
    p.add_argument(
        "--work", help="keep trained adapters/bundles in this directory and reuse them (default: a temp dir)"
    )
    p.add_argument("--e2e", help=f"E2E devset CSV (default {E2E_DEV})")
    p.add_argument("--backbone", default="tiny", help="tiny (default), smollm2-135m or a Hugging Face directory")
    p.add_argument("--profile", help="real backbone: cpu (3 h on 2 cores, default), gpu, reduced, smoke")
    p.add_argument("--tasks", help="real backbone: comma-separated subset of nlg,mt,summarization,dialogue")
    a = p.parse_args(argv)
    run(a.quick, a.out, a.threads, a.work, a.e2e, a.backbone, a.profile, a.tasks.split(",") if a.tasks else None)
    return 0


if __name__ == "__main__":
    from .common import run_main

    sys.exit(run_main(main))
