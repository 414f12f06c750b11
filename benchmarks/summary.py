"""The README "Results" section, generated from the committed ``results.json`` files.

    python -m edgevlm.benchmarks.summary [--results benchmarks/results]

Writes ``<results>/README_results.md``: per suite the machine, the command,
the headline tables with ratios and the fraction of the bandwidth bound, the
plots, and a verdict against each target. ``<results>/notes.md`` (written
by hand: interpretation, caveats) is appended when present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgevlm.core.config import atomic_write_text

from .common import RESULTS_DIR, fmt, md_table

LINK = "benchmarks/results/"  # links are written for README.md at the repository root
TARGET_X_OPTIMUM = 2.0
TARGET_OVERHEAD_PCT = 5.0
TARGET_SWITCH_MS = 1.0


def load(results: Path, suite: str) -> dict | None:
    path = results / suite / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def provenance(doc: dict, suite: str) -> str:
    m = doc["machine"]
    return (
        f"*{suite}: `{doc['command']}` on {m['cpu_model']} ({m['logical_cores']} cores, "
        f"{m['threads_used']} threads used, "
        f"load average {m['load_avg_at_start'][0]} at start, {m['load_avg_at_end'][0]} at end), {doc['started_utc']}, "
        f"{doc['duration_s'] / 60:.1f} min; full data: [results.json]({LINK}{suite}/results.json), "
        f"[table]({LINK}{suite}/results.md).*\n"
    )


def footprint(doc: dict) -> str:
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
        "### Footprint: one bundle for five tasks vs five fine-tuned models\n\n"
        + provenance(doc, "footprint")
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
        + f"\n![memory vs number of tasks]({LINK}footprint/memory_vs_tasks.png)\n"
    )


def latency(doc: dict) -> str:
    rows = [r for r in doc["rows"] if "tokens_per_s" in r]
    recs = doc["records"]
    parts = ["### Latency: decode speed against PyTorch and optimum, same run\n\n" + provenance(doc, "latency")]
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
    return "\n".join(parts) + f"\n![tokens/s per engine and format]({LINK}latency/tokens_per_s.png)\n"


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


def quality(doc: dict) -> str:
    recs = [r for r in doc["records"] if r.get("kind") == "score"]
    parts = ["### Quality: adapters vs full fine-tuning, quantized bundles vs fp32\n\n" + provenance(doc, "quality")]
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
            + f"\n![E2E]({LINK}quality/e2e.png)\n"
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
            + f"\n![mini tasks]({LINK}quality/mini.png)\n"
        )
    return "\n".join(parts)


def write(results: Path = RESULTS_DIR) -> Path:
    """Build ``README_results.md`` from whatever suites have results."""
    parts = [
        "<!-- generated by `python -m edgevlm.benchmarks.summary`; links are relative to the repository root -->\n"
        "## Results\n\nMeasured by `edgevlm bench` (code in `benchmarks/`); every number below comes from the "
        "JSON next to it, with the machine, library versions and exact command. The machine is a shared 2-core VM: "
        "engines are compared within one run (interleaved repetitions, medians), so read the ratios, not the "
        "absolute times.\n"
    ]
    for suite, render in (("footprint", footprint), ("latency", latency), ("quality", quality)):
        doc = load(results, suite)
        if doc is not None:
            parts.append(render(doc))
    notes = results / "notes.md"
    if notes.is_file():
        parts.append(notes.read_text())
    out = results / "README_results.md"
    atomic_write_text(out, "\n".join(parts))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgevlm.benchmarks.summary", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS_DIR), help="results root (default benchmarks/results)")
    a = ap.parse_args(argv)
    print(f"wrote {write(Path(a.results))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
