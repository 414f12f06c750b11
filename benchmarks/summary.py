"""docs/results.md and README.md's headline table, generated from the committed result JSONs.

    python -m edgevlm.benchmarks.summary [--results benchmarks/results] [--docs docs] [--readme README.md]
    edgevlm bench --summary

Writes ``docs/results.md``: per suite the machine, the command, the tables with ratios and the fraction of the
bandwidth bound, the plots and a verdict against each target, then the peers, serving and real-backbone quality
runs (:mod:`.summary_sections`) and an index of ``experiments/``. ``<results>/notes.md`` (written by hand:
interpretation, caveats) is appended when present. The README's table between its ``headline`` markers is
rewritten from the same files, so every figure in it comes from a result file. ``tests/test_summary.py``
checks that regenerating gives the committed files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from edgevlm.core.config import atomic_write_text

from .common import RESULTS_DIR, fmt, md_table

REPO = RESULTS_DIR.parents[1]
DOCS = REPO / "docs"
TARGET_X_OPTIMUM = 2.0
TARGET_OVERHEAD_PCT = 5.0
TARGET_SWITCH_MS = 1.0


def load(results: Path, suite: str) -> dict | None:
    path = results / suite / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def provenance(doc: dict, suite: str, link: str) -> str:
    m = doc["machine"]
    return (
        f"*{suite}: `{doc['command']}` on {m['cpu_model']} ({m['logical_cores']} cores, "
        f"{m['threads_used']} threads used, "
        f"load average {m['load_avg_at_start'][0]} at start, {m['load_avg_at_end'][0]} at end), {doc['started_utc']}, "
        f"{doc['duration_s'] / 60:.1f} min; full data: [results.json]({link}{suite}/results.json), "
        f"[table]({link}{suite}/results.md).*\n"
    )


def footprint(doc: dict, link: str) -> str:
    recs = doc["records"]
    shares = doc["extra_params"]
    size = doc["size"]
    rows = [r for r in recs if r.get("kind") == "summary"]
    table = [
        {
            "quant": r["quant"],
            **{
                f"{k}_{m}": next(
                    x[m] for x in recs if x.get("kind") == k and x["quant"] == r["quant"] and x["n_tasks"] == 5
                )
                for k in ("bundle", "full")
                for m in ("disk_mb", "peak_rss_mb")
            },
            "disk_ratio": r["disk_ratio"],
            "rss_ratio": r["rss_ratio"],
        }
        for r in rows
    ]
    pct = ", ".join(f"{s['task']} {s['extra_pct_of_backbone']:.2f}%" for s in shares)
    mean = sum(s["extra_pct_of_backbone"] for s in shares) / len(shares)
    return (
        "## Footprint: one bundle for five tasks vs five fine-tuned models\n\n"
        + provenance(doc, "footprint", link)
        + f"\nExtra parameters per task on {size} (adapters + task embeddings, the paper's bottlenecks): {pct}; "
        f"mean {mean:.2f}% per task (the paper's claim: 2-3%).\n\n"
        + md_table(
            table,
            [
                ("quant", "format"),
                ("bundle_disk_mb", "bundle disk MB"),
                ("bundle_peak_rss_mb", "bundle peak RSS MB"),
                ("full_disk_mb", "5 full models disk MB"),
                ("full_peak_rss_mb", "5 full models peak RSS MB"),
                ("disk_ratio", "disk ratio"),
                ("rss_ratio", "RSS ratio"),
            ],
        )
        + f"\n![memory vs number of tasks]({link}footprint/memory_vs_tasks.png)\n"
    )


def latency(doc: dict, link: str) -> str:
    rows = [r for r in doc["rows"] if "tokens_per_s" in r]
    recs = doc["records"]
    parts = ["## Latency: decode speed against PyTorch and optimum, same run\n\n" + provenance(doc, "latency", link)]
    for size in dict.fromkeys(r["size"] for r in rows):
        sub = [r for r in rows if r["size"] == size]
        bw = next(r for r in recs if r.get("kind") == "bandwidth" and r["size"] == size)
        plan = doc["plans"][size]
        parts.append(
            f"\n**{size}** (batch 1, greedy, {plan['new_tokens']} new tokens after a {plan['prompts'][0]}-token "
            f"prompt, median of {plan['reps']} interleaved repetitions; memory bandwidth {bw['gb_per_s']:.1f} GB/s "
            f"for one numpy sum, {bw.get('gb_per_s_threads', bw['gb_per_s']):.1f} GB/s for "
            f"{bw.get('threads', 1)} at once):\n\n"
            + md_table(
                sub,
                [
                    ("engine", "engine"),
                    ("tokens_per_s", "tokens/s"),
                    ("x_optimum_fp32", "x optimum fp32"),
                    ("x_pytorch_fp32", "x PyTorch"),
                    ("fraction_of_bound", "fraction of bound"),
                    ("fraction_of_threads_bound", "fraction of n-thread bound"),
                    ("prefill_short_ms", "prefill 32 ms"),
                    ("prefill_long_ms", "prefill 128 ms"),
                    ("cold_load_ms", "cold load ms"),
                    ("peak_rss_mb", "peak RSS MB"),
                    ("adapter_overhead_pct", "adapter overhead %"),
                ],
            )
        )
        parts.append(verdicts(size, sub, recs))
    return "\n".join(parts) + f"\n![tokens/s per engine and format]({link}latency/tokens_per_s.png)\n"


def verdicts(size: str, rows: list[dict], recs: list[dict]) -> str:
    out = []
    best = max((r for r in rows if r["kind_"] == "edgevlm"), key=lambda r: r["tokens_per_s"])
    if best.get("x_optimum_fp32"):
        ok = "met" if best["x_optimum_fp32"] >= TARGET_X_OPTIMUM else "NOT met"
        out.append(
            f"best runtime format {best['fmt']}: {best['x_optimum_fp32']:.2f}x optimum fp32 tokens/s "
            f"(target >= {TARGET_X_OPTIMUM}x: {ok}), {100 * best['fraction_of_bound']:.0f}% of its bandwidth bound"
        )
    for r in (x for x in recs if x.get("kind") == "adapter_overhead" and x["size"] == size):
        ok = "met" if r["overhead_pct"] <= TARGET_OVERHEAD_PCT else "NOT met"
        out.append(
            f"adapter overhead {r['fmt']}: {r['overhead_pct']:+.1f}% (target <= {TARGET_OVERHEAD_PCT:.0f}%: {ok})"
        )
    for r in (x for x in recs if x.get("kind") == "task_switch" and x["size"] == size):
        ok = "met" if r["switch_ms"] < TARGET_SWITCH_MS else "NOT met"
        out.append(f"task switch {fmt(r['switch_ms'])} ms (target < {TARGET_SWITCH_MS:.0f} ms: {ok})")
    return "\n" + "".join(f"- {line}\n" for line in out)


def quality(doc: dict, link: str) -> str:
    recs = [r for r in doc["records"] if r.get("kind") == "score"]
    parts = [
        "## Quality: adapters vs full fine-tuning, quantized bundles vs fp32\n\n" + provenance(doc, "quality", link)
    ]
    e2e = [r for r in recs if r["dataset"] == "e2e"]
    if e2e:
        parts.append(
            "\nE2E NLG, held-out MRs (tiny backbone):\n\n"
            + md_table(
                e2e,
                [
                    ("system", "system"),
                    ("bleu", "BLEU"),
                    ("rougeL", "ROUGE-L"),
                    ("trainable_pct", "trainable %"),
                    ("same_output_as_fp32_pct", "outputs = fp32 bundle %"),
                    ("n", "MRs"),
                ],
            )
            + f"\n![E2E]({link}quality/e2e.png)\n"
        )
    else:
        parts.append("\nE2E skipped (data absent).\n")
    mini = [r for r in recs if r["dataset"] == "mini"]
    if mini:
        from edgevlm.train.tasks import BUILTIN_TASKS

        table: dict[str, dict] = {}
        for r in mini:
            metric = BUILTIN_TASKS[r["task"]].metric
            table.setdefault(r["task"], {"task": r["task"], "metric": metric})[r["system"]] = r[metric]
        systems = list(dict.fromkeys(r["system"] for r in mini))
        parts.append(
            "\nBuilt-in mini tasks, each task's metric:\n\n"
            + md_table(list(table.values()), [("task", "task"), ("metric", "metric")] + [(s, s) for s in systems])
            + f"\n![mini tasks]({link}quality/mini.png)\n"
        )
    return "\n".join(parts)


def link_to(results: Path, out: Path) -> str:
    """``results`` as a relative link from the folder of ``out`` (ending in /)."""
    return Path(os.path.relpath(results.resolve(), out.resolve().parent)).as_posix() + "/"


def render(results: Path, out: Path) -> str:
    """The whole of docs/results.md for the result files under ``results``."""
    from . import summary_quality as sq
    from . import summary_sections as ss

    link = link_to(results, out)
    parts = [
        "<!-- generated by `python -m edgevlm.benchmarks.summary` from the result JSONs: do not edit by hand -->\n"
        "# Results\n\nMeasured by `edgevlm bench` (code in `benchmarks/`); every number below comes from the "
        "JSON it links, with the machine, library versions and exact command. The machine is a shared 2-core VM: "
        "engines are compared within one run (interleaved repetitions, medians), so read the ratios, not the "
        "absolute times.\n",
        ss.headline(results, link),
    ]
    for suite, section in (("footprint", footprint), ("latency", latency), ("quality", quality)):
        doc = load(results, suite)
        if doc is not None:
            parts.append(section(doc, link))
    parts += [
        ss.peers(results, link),
        ss.serving(results, link),
        ss.soak(results, link),
        ss.quality_real(results, link),
        sq.quality_gate(results, link),
        sq.curves(results, link),
        sq.train_speed(results, link),
    ]
    parts.append(ss.experiments(REPO / "experiments", link_to(REPO / "experiments", out)))
    notes = results / "notes.md"
    if notes.is_file():
        parts.append(notes.read_text())
    return "\n".join(p for p in parts if p)


def write(results: Path = RESULTS_DIR, out: Path = DOCS / "results.md", readme: Path | None = None) -> Path:
    """Write ``out`` (docs/results.md) and, when given, README.md's headline table, from ``results``."""
    from .summary_sections import splice_headline

    atomic_write_text(out, render(results, out))
    if readme is not None:
        atomic_write_text(readme, splice_headline(readme.read_text(), results, link_to(results, readme)))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgevlm.benchmarks.summary", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS_DIR), help="results root (default benchmarks/results)")
    ap.add_argument("--docs", default=str(DOCS), help="where results.md goes (default docs/)")
    ap.add_argument("--readme", default=str(REPO / "README.md"), help="README whose headline table is rewritten")
    a = ap.parse_args(argv)
    readme = Path(a.readme)
    out = write(Path(a.results), Path(a.docs) / "results.md", readme if readme.is_file() else None)
    print(f"wrote {out}" + (f" and the headline table of {readme}" if readme.is_file() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
