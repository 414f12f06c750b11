"""Footprint suite: disk and peak RSS of one bundle serving 1..5 tasks vs N separately fine-tuned models.

The bundle side is real: a bundle exported with the first k of the paper's
five tasks (their own bottlenecks), loaded by the runtime. The other side is
what full fine-tuning costs: one complete model per task, i.e. N bundles each
holding a whole backbone (``edgevlm train --full`` output exported with its
task), all N resident in one process. Every configuration's peak RSS is
measured in a fresh process (:mod:`.probe`).

    python -m edgevlm.benchmarks.footprint [--quick] [--size gpt2-small] [--out DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import plots
from edgevlm.errors import ConfigError

from .common import Report, check_threads, md_table, suite_dir
from .fixtures import SIZES, Workspace, backbone_dir, dir_size, export, make_adapters
from .probe import run_probe

SUITE = "footprint"
TASKS = ("nlg", "mt", "qa", "summarization", "dialogue")  # the paper's bottlenecks: 10, 300, 300, 100, 100
QUANTS = ("fp32", "int8")


def task_shares(adapter_root: Path) -> list[dict]:
    """Extra parameters per task (adapters + task embeddings) and their share of the backbone."""
    from edgevlm.config import AdapterMeta

    out = []
    for t in TASKS:
        m = AdapterMeta.load(adapter_root / t)
        out.append({"task": t, "bottleneck": m.task.bottleneck, "extra_params": m.trainable_params,
                    "extra_pct_of_backbone": m.trainable_share})
    return out


def bundle_side(report: Report, ws: Workspace, hf: Path, ad: Path, size: str, q: str, threads: int, bar) -> list[dict]:
    """One bundle with the first k tasks, k = 1..5: disk and peak RSS."""
    rows = []
    for k in range(1, len(TASKS) + 1):
        bar.set_postfix_str(f"{size} {q} bundle with {k} task(s)")
        b = ws.get(f"{size}-bundle-{q}-{k}", lambda p: export(hf, [ad / t for t in TASKS[:k]], q, p))
        r = run_probe({"engines": [{"kind": "edgevlm", "fmt": q, "path": str(b), "task": TASKS[0]}], "threads": threads})
        rows.append(report.add(
            f"[{size}] one {q} bundle, {k} task(s): disk {dir_size(b) / 2**20:.1f} MB, peak RSS {r['peak_rss_mb']:.0f} MB",
            kind="bundle", size=size, quant=q, n_tasks=k, disk_mb=dir_size(b) / 2**20, peak_rss_mb=r["peak_rss_mb"],
            rss_after_load_mb=r["rss_after_load_mb"], rss_after_import_mb=r["rss_after_import_mb"], load_s=r["load_s"][0]))
        bar.update(1)
    return rows


def full_side(report: Report, ws: Workspace, hf: Path, size: str, q: str, threads: int, bar) -> list[dict]:
    """N fully fine-tuned models (N complete bundles, distinct files), N = 1..5, all loaded at once."""
    fa = ws.get(f"{size}-full-adapters", lambda p: make_adapters(hf, p, {t: None for t in TASKS}, full=True))
    copies = [ws.get(f"{size}-full-{q}-{t}", lambda p, t=t: export(hf, [fa / t], q, p)) for t in TASKS]
    rows = []
    for n in range(1, len(TASKS) + 1):
        bar.set_postfix_str(f"{size} {q}: {n} full model(s)")
        r = run_probe({"engines": [{"kind": "edgevlm", "fmt": q, "path": str(c), "task": t}
                                   for c, t in zip(copies[:n], TASKS)], "threads": threads})
        disk = sum(dir_size(c) for c in copies[:n]) / 2**20
        rows.append(report.add(
            f"[{size}] {n} full fine-tuned {q} model(s): disk {disk:.1f} MB, peak RSS {r['peak_rss_mb']:.0f} MB",
            kind="full", size=size, quant=q, n_tasks=n, disk_mb=disk, peak_rss_mb=r["peak_rss_mb"],
            rss_after_load_mb=r["rss_after_load_mb"], rss_after_import_mb=r["rss_after_import_mb"], load_s=sum(r["load_s"])))
        bar.update(1)
    return rows


def summary(report: Report, rows: list[dict], size: str) -> None:
    """The headline: what 5 tasks cost as one bundle vs 5 models."""
    for q in QUANTS:
        b = next(r for r in rows if r["kind"] == "bundle" and r["quant"] == q and r["n_tasks"] == len(TASKS))
        f = next(r for r in rows if r["kind"] == "full" and r["quant"] == q and r["n_tasks"] == len(TASKS))
        report.add(f"[{size}] {q}, 5 tasks: bundle {b['disk_mb']:.0f} MB disk / {b['peak_rss_mb']:.0f} MB RSS vs 5 full models "
                   f"{f['disk_mb']:.0f} MB / {f['peak_rss_mb']:.0f} MB ({f['disk_mb'] / b['disk_mb']:.2f}x disk, "
                   f"{f['peak_rss_mb'] / b['peak_rss_mb']:.2f}x RSS)", kind="summary", size=size, quant=q,
                   disk_ratio=f["disk_mb"] / b["disk_mb"], rss_ratio=f["peak_rss_mb"] / b["peak_rss_mb"])


def markdown(size: str, shares: list[dict], rows: list[dict]) -> str:
    total = sum(s["extra_pct_of_backbone"] for s in shares)
    table = []
    for k in range(1, len(TASKS) + 1):
        row = {"n": k}
        for r in rows:
            if r["n_tasks"] == k:
                row[f"{r['kind']}_{r['quant']}_disk"] = r["disk_mb"]
                row[f"{r['kind']}_{r['quant']}_rss"] = r["peak_rss_mb"]
        table.append(row)
    cols = [("n", "tasks")] + [(f"{kind}_{q}_{m}", f"{'bundle' if kind == 'bundle' else 'N full'} {q} {m} MB")
                               for q in QUANTS for kind in ("bundle", "full") for m in ("disk", "rss")]
    return (f"## {size}: extra parameters per task\n\n" + md_table(shares, [
        ("task", "task"), ("bottleneck", "bottleneck"), ("extra_params", "extra params"),
        ("extra_pct_of_backbone", "% of backbone")]) + f"\nAll five tasks together: {total:.2f}% of the backbone.\n\n"
            f"## {size}: one bundle with N tasks vs N fully fine-tuned models\n\nDisk = files on disk; RSS = peak "
            "resident memory of a fresh process that loads the model(s) and decodes a few tokens.\n\n"
            + md_table(table, cols) + "\n![memory vs tasks](memory_vs_tasks.png)\n")


def plot(rows: list[dict], out: Path, size: str) -> Path:
    panels: dict[str, dict] = {"peak RSS (MB)": {}, "disk (MB)": {}}
    for q in QUANTS:
        for kind, name in (("bundle", f"one bundle {q}"), ("full", f"N full models {q}")):
            sel = sorted((r for r in rows if r["kind"] == kind and r["quant"] == q), key=lambda r: r["n_tasks"])
            panels["peak RSS (MB)"][name] = ([r["n_tasks"] for r in sel], [r["peak_rss_mb"] for r in sel])
            panels["disk (MB)"][name] = ([r["n_tasks"] for r in sel], [r["disk_mb"] for r in sel])
    return plots.lines(out / "memory_vs_tasks.png", {}, "number of tasks", "", f"Memory vs number of tasks ({size})",
                       panels=panels)


def run(quick: bool = False, out: str | Path | None = None, threads: int | None = None, size: str | None = None,
        work: str | Path | None = None) -> Path:
    """Run the suite on one backbone (default: tiny with --quick, GPT-2 small otherwise)."""
    from tqdm.auto import tqdm

    threads = check_threads(threads)
    size = size or ("tiny" if quick else "gpt2-small")
    if size not in SIZES:
        raise ConfigError(f"--size: unknown model size {size!r}; expected one of {list(SIZES)}")
    report = Report(SUITE, threads, quick)
    ws = Workspace(work)
    try:
        hf = backbone_dir(ws, size)
        ad = ws.get(f"{size}-footprint-adapters", lambda p: make_adapters(hf, p, {t: None for t in TASKS}))
        shares = task_shares(ad)
        for s in shares:
            report.add(f"[{size}] task {s['task']} (bottleneck {s['bottleneck']}): {s['extra_params']:,} extra parameters "
                       f"= {s['extra_pct_of_backbone']:.2f}% of the backbone", kind="extra_params", size=size, **s)
        rows: list[dict] = []
        with tqdm(total=2 * len(QUANTS) * len(TASKS), desc="footprint", unit="config") as bar:
            for q in QUANTS:
                rows += bundle_side(report, ws, hf, ad, size, q, threads, bar)
                rows += full_side(report, ws, hf, size, q, threads, bar)
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
