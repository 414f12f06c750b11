"""Footprint suite: disk and peak RSS of one bundle serving 1..5 tasks vs N separately fine-tuned models.

The bundle side: the paper's five tasks with their own bottlenecks (nlg 10,
mt 300, qa 300, summarization 100, dialogue 100) in one bundle, loaded by the
runtime. The other side is what full fine-tuning costs: one complete model
per task, N of them resident in one process. Each configuration's peak RSS
is measured in a fresh process (:mod:`.probe`) that loads it and decodes a
few tokens. The default backbone is GPT-2 small (124M, random weights).

    python -m edgevlm.benchmarks.footprint [--quick] [--size gpt2-small] [--out DIR]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from edgevlm.core.errors import ConfigError

from . import plots
from .common import Report, check_threads, md_table, suite_dir
from .fixtures import SIZES, Workspace, backbone_dir, dir_size, export, make_adapters
from .probe import run_probe

SUITE = "footprint"
TASKS = ("nlg", "mt", "qa", "summarization", "dialogue")  # the paper's bottlenecks: 10, 300, 300, 100, 100
QUANTS = ("fp32", "int8")
PROBE_REPEATS = 3  # peak RSS of one configuration varies by 10-20% between processes


def task_shares(adapter_root: Path) -> list[dict]:
    """Extra parameters per task (adapters + task embeddings) and their share of the backbone."""
    from edgevlm.core.config import AdapterMeta

    out = []
    for t in TASKS:
        m = AdapterMeta.load(adapter_root / t)
        out.append(
            {
                "task": t,
                "bottleneck": m.task.bottleneck,
                "extra_params": m.trainable_params,
                "extra_pct_of_backbone": m.trainable_share,
            }
        )
    return out


def bundle_side(
    report: Report, ws: Workspace, hf: Path, ad: Path, size: str, q: str, threads: int, repeats: int, bar
) -> list[dict]:
    """One bundle serving k tasks, k = 1..5: disk and peak RSS.

    k = 1 and k = 5 are exported bundles; k = 2..4 load the 1-task bundle and
    hot-add the other tasks' adapter files (``Runtime.add_task``) from the
    5-task bundle, whose disk cost is those files' sizes.
    """
    from edgevlm.core.bundle import load_manifest

    one = ws.get(f"{size}-bundle-{q}-1", lambda p: export(hf, [ad / TASKS[0]], q, p))
    five = ws.get(f"{size}-bundle-{q}-{len(TASKS)}", lambda p: export(hf, [ad / t for t in TASKS], q, p))
    files = [five / load_manifest(five, verify=False).tasks[t].adapter_file for t in TASKS]
    rows = []
    for k in range(1, len(TASKS) + 1):
        bar.set_postfix_str(f"{size} {q} bundle with {k} task(s)")
        real = k in (1, len(TASKS))
        path, added = (one if k == 1 else five, []) if real else (one, files[1:k])
        r = run_probe(
            {
                "engines": [{"kind": "edgevlm", "fmt": q, "path": str(path), "task": TASKS[0]}],
                "add_tasks": [str(f) for f in added],
                "threads": threads,
            },
            repeats,
        )
        disk = (dir_size(path) + sum(f.stat().st_size for f in added)) / 2**20
        how = "exported bundle" if real else f"1-task bundle + add_task x{k - 1}"
        rows.append(
            report.add(
                f"[{size}] one {q} bundle, {k} task(s) ({how}): disk {disk:.1f} MB, peak RSS {r['peak_rss_mb']:.0f} MB",
                kind="bundle",
                size=size,
                quant=q,
                n_tasks=k,
                method=how,
                disk_mb=disk,
                peak_rss_mb=r["peak_rss_mb"],
                rss_after_load_mb=r["rss_after_load_mb"],
                rss_after_import_mb=r["rss_after_import_mb"],
                load_s=r["load_s"][0],
            )
        )
        bar.update(1)
    return rows


def full_side(report: Report, ws: Workspace, size: str, q: str, threads: int, repeats: int, bar) -> list[dict]:
    """N fully fine-tuned models, N = 1..5, all loaded at once in one process.

    A fully fine-tuned model is a whole backbone per task, the same size as
    the 1-task bundle; each of the N is a separate copy (distinct files, so
    nothing is shared through the page cache).
    """
    one = ws.root / f"{size}-bundle-{q}-1"
    copies = [one] + [ws.get(f"{size}-full-{q}-{i}", lambda p: shutil.copytree(one, p)) for i in range(1, len(TASKS))]
    rows = []
    for n in range(1, len(TASKS) + 1):
        bar.set_postfix_str(f"{size} {q}: {n} full model(s)")
        r = run_probe(
            {
                "engines": [{"kind": "edgevlm", "fmt": q, "path": str(c), "task": TASKS[0]} for c in copies[:n]],
                "threads": threads,
            },
            repeats,
        )
        disk = sum(dir_size(c) for c in copies[:n]) / 2**20
        rows.append(
            report.add(
                f"[{size}] {n} full fine-tuned {q} model(s): disk {disk:.1f} MB, peak RSS {r['peak_rss_mb']:.0f} MB",
                kind="full",
                size=size,
                quant=q,
                n_tasks=n,
                disk_mb=disk,
                peak_rss_mb=r["peak_rss_mb"],
                rss_after_load_mb=r["rss_after_load_mb"],
                rss_after_import_mb=r["rss_after_import_mb"],
                load_s=sum(r["load_s"]),
            )
        )
        bar.update(1)
    return rows


def summary(report: Report, rows: list[dict], size: str) -> None:
    """The headline: what 5 tasks cost as one bundle vs 5 models."""
    for q in QUANTS:
        b = next(r for r in rows if r["kind"] == "bundle" and r["quant"] == q and r["n_tasks"] == len(TASKS))
        f = next(r for r in rows if r["kind"] == "full" and r["quant"] == q and r["n_tasks"] == len(TASKS))
        report.add(
            f"[{size}] {q}, 5 tasks: bundle {b['disk_mb']:.0f} MB disk / {b['peak_rss_mb']:.0f} MB RSS "
            "vs 5 full models "
            f"{f['disk_mb']:.0f} MB / {f['peak_rss_mb']:.0f} MB ({f['disk_mb'] / b['disk_mb']:.2f}x disk, "
            f"{f['peak_rss_mb'] / b['peak_rss_mb']:.2f}x RSS)",
            kind="summary",
            size=size,
            quant=q,
            disk_ratio=f["disk_mb"] / b["disk_mb"],
            rss_ratio=f["peak_rss_mb"] / b["peak_rss_mb"],
        )


MEASURES = (("disk_mb", "disk MB"), ("peak_rss_mb", "peak RSS MB"), ("rss_after_load_mb", "RSS after load MB"))


def markdown(size: str, shares: list[dict], rows: list[dict]) -> str:
    total = sum(s["extra_pct_of_backbone"] for s in shares)
    parts = [
        f"## {size}: extra parameters per task\n\n"
        + md_table(
            shares,
            [
                ("task", "task"),
                ("bottleneck", "bottleneck"),
                ("extra_params", "extra params"),
                ("extra_pct_of_backbone", "% of backbone"),
            ],
        )
        + f"\nAll five tasks together: {total:.2f}% of the backbone.\n",
        f"## {size}: one bundle with N tasks vs N fully fine-tuned models\n\nDisk = files on disk. Peak RSS = "
        "the highest resident memory of a fresh process that loads the model(s) and decodes a few tokens (loading "
        "has transient copies); RSS after load = what stays resident. The bundle rows for 2-4 tasks load the "
        "1-task bundle and hot-add the other adapter files.\n",
    ]
    for q in QUANTS:
        table = []
        for k in range(1, len(TASKS) + 1):
            row = {"n": k}
            for r in rows:
                if r["n_tasks"] == k and r["quant"] == q:
                    row.update({f"{r['kind']}_{m}": r[m] for m, _ in MEASURES})
            table.append(row)
        cols = [("n", "tasks")] + [
            (f"{kind}_{m}", f"{label} {h}")
            for kind, label in (("bundle", "bundle"), ("full", "N full"))
            for m, h in MEASURES
        ]
        parts.append(f"### {q}\n\n" + md_table(table, cols))
    return "\n".join(parts) + "\n![memory vs tasks](memory_vs_tasks.png)\n"


def plot(rows: list[dict], out: Path, size: str) -> Path:
    panels: dict[str, dict] = {"peak RSS (MB)": {}, "disk (MB)": {}}
    for q in QUANTS:
        for kind, name in (("bundle", f"one bundle {q}"), ("full", f"N full models {q}")):
            sel = sorted((r for r in rows if r["kind"] == kind and r["quant"] == q), key=lambda r: r["n_tasks"])
            panels["peak RSS (MB)"][name] = ([r["n_tasks"] for r in sel], [r["peak_rss_mb"] for r in sel])
            panels["disk (MB)"][name] = ([r["n_tasks"] for r in sel], [r["disk_mb"] for r in sel])
    return plots.lines(
        out / "memory_vs_tasks.png", {}, "number of tasks", "", f"Memory vs number of tasks ({size})", panels=panels
    )


def run(
    quick: bool = False,
    out: str | Path | None = None,
    threads: int | None = None,
    size: str | None = None,
    work: str | Path | None = None,
) -> Path:
    """Run the suite on one backbone (default: tiny with --quick, GPT-2 small otherwise)."""
    from tqdm.auto import tqdm

    threads = check_threads(threads)
    size = size or ("tiny" if quick else "gpt2-small")
    if size not in SIZES:
        raise ConfigError(f"--size: unknown model size {size!r}; expected one of {list(SIZES)}")
    report = Report(SUITE, threads, quick)
    repeats = 1 if quick else PROBE_REPEATS
    report.note(f"memory: median of {repeats} fresh processes per configuration")
    ws = Workspace(work)
    try:
        hf = backbone_dir(ws, size)
        ad = ws.get(f"{size}-footprint-adapters", lambda p: make_adapters(hf, p, {t: None for t in TASKS}))
        shares = task_shares(ad)
        for s in shares:
            report.add(
                f"[{size}] task {s['task']} (bottleneck {s['bottleneck']}): {s['extra_params']:,} extra parameters "
                f"= {s['extra_pct_of_backbone']:.2f}% of the backbone",
                kind="extra_params",
                size=size,
                **s,
            )
        rows: list[dict] = []
        with tqdm(total=2 * len(QUANTS) * len(TASKS), desc="footprint", unit="config") as bar:
            for q in QUANTS:
                rows += bundle_side(report, ws, hf, ad, size, q, threads, repeats, bar)
                rows += full_side(report, ws, size, q, threads, repeats, bar)
    finally:
        ws.close()
    summary(report, rows, size)
    dest = suite_dir(out, SUITE)
    dest.mkdir(parents=True, exist_ok=True)
    plot(rows, dest, size)
    return report.write(dest, markdown(size, shares, rows), {"size": size, "extra_params": shares})


def main(argv: list[str] | None = None) -> int:
    from .common import base_parser

    p = base_parser(SUITE)
    p.add_argument("--size", help="backbone: tiny, gpt2-small (default) or gpt2-medium")
    p.add_argument("--work", help="keep built models/bundles in this directory and reuse them (default: a temp dir)")
    a = p.parse_args(argv)
    run(a.quick, a.out, a.threads, a.size, a.work)
    return 0


if __name__ == "__main__":
    from .common import run_main

    sys.exit(run_main(main))
