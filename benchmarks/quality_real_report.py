"""Results of the real-backbone quality suite: JSON, markdown and plots under ``quality/<backbone>/``.

The tiny backbone's results stay in ``quality/`` itself; each real backbone gets
a subfolder (``quality/smollm2/``), one results set per profile
(``results.json`` for the 3-hour CPU plan, ``results-<profile>.json`` otherwise).
"""

from __future__ import annotations

from pathlib import Path

from . import plots
from . import quality_plan as qp
from .common import Report, md_table, suite_dir

SHORT = {"smollm2-135m": "smollm2"}
METRICS = {  # task -> the columns shown (the first is the task's primary metric)
    "nlg": ("bleu", "rougeL", "e2e_bleu", "e2e_nist", "e2e_meteor", "e2e_rougeL", "e2e_cider"),
    "mt": ("bleu",),
    "summarization": ("rouge1", "rouge2", "rougeL"),
    "dialogue": ("f1", "perplexity"),
}
HEADERS = {  # the E2E challenge's own scoring (edgevlm.train.e2e_metrics), beside sacrebleu's BLEU
    "e2e_bleu": "E2E BLEU",
    "e2e_nist": "E2E NIST",
    "e2e_meteor": "E2E METEOR*",
    "e2e_rougeL": "E2E ROUGE-L",
    "e2e_cider": "E2E CIDEr",
}
E2E_NOTE = (
    "E2E columns: the E2E NLG Challenge's metrics computed as its official script (tuetschek/e2e-metrics) "
    "does, so they sit beside the challenge's table (TGen baseline on the test set: BLEU 65.93, NIST 8.61, "
    "METEOR 44.83, ROUGE-L 68.50, CIDEr 2.23); BLEU and ROUGE-L differ from the first two columns "
    "(sacrebleu, rouge-score) in casing and tokenisation. *METEOR: exact and stem modules only, no "
    "function-word weighting (docs/metrics.md). Scored on held-out dev MRs, not the challenge's test set.\n"
)
NAMES = {
    "untrained": "untrained adapter (PyTorch)",
    "adapter": "adapter (PyTorch)",
    "adapter-mean": "adapter, task tokens from the table's mean (PyTorch)",
    "full": "full fine-tuning (PyTorch)",
    "distilled": "adapter distilled from full (PyTorch)",
    "bundle-fp32": "fp32 bundle (runtime)",
    "bundle-int8": "int8 bundle (runtime)",
    "bundle-int4": "int4 bundle (runtime)",
}
METHODS = {"lora": "LoRA, parameters matched to the adapter", "lora-qv8": "LoRA rank 8 on q/v"}


def label(system: str) -> str:
    """A row's name: ``lora-qv8-bundle-int4`` -> "LoRA rank 8 on q/v: int4 bundle (runtime)"."""
    if system in NAMES:
        return NAMES[system]
    head, _, q = system.rpartition("-bundle-")
    if head.startswith("adapter-"):  # adapter-int4-bundle-int4
        return f"adapter trained for {head.split('-', 1)[1]}: {q} bundle (runtime)"
    return f"{METHODS.get(head, head)}: {q} bundle (runtime)" if head else system


def default_work(backbone: str) -> Path:
    """Where trained models, bundles and cell results are kept between runs (resumable by default)."""
    from edgevlm.train.tiny import cache_dir

    return cache_dir() / "bench-quality" / SHORT.get(backbone, Path(backbone).name)


def results_dir(out: str | Path | None, backbone: str) -> Path:
    return suite_dir(out, "quality") / SHORT.get(backbone, Path(backbone).name)


def task_table(task: str, rows: list[dict]) -> str:
    cols = [("system", "system")] + [
        (m, HEADERS.get(m) or (m if m == "perplexity" else m.replace("rouge", "ROUGE-").upper())) for m in METRICS[task]
    ]
    cols += [("trainable_pct", "trainable %"), ("same_output_as_fp32_pct", "outputs = fp32 bundle %"), ("n", "sources")]
    cols += [("seconds", "cell s")]
    shown = [{**r, "system": label(r["system"])} for r in rows]
    note = f"\n{E2E_NOTE}" if any(m in HEADERS for m in METRICS[task]) else ""
    return (
        f"## {task} ({qp.DATA[task][0].split(':')[0].split('/')[0]}, held-out sources)\n\n"
        + md_table(shown, cols)
        + note
    )


def markdown(rows: list[dict], p: qp.Profile, backbone: str, png: str) -> str:
    if p.budgets:
        from . import quality_curves as qc

        head = f"Backbone {backbone}; plan {p.name!r} ({p.label}): every system trained from scratch per budget "
        head += f"(batch {p.batch_size}, adapters lr {p.lr_adapter:g}, --full lr {p.lr_full:g}), PyTorch decoding.\n"
        body = [qc.markdown(t, [r for r in rows if r["task"] == t], METRICS[t][0]) for t in p.tasks]
        return "\n".join([head, *body, f"![curves]({png})\n"])
    parts = [
        f"Backbone {backbone}; plan {p.name!r} ({p.label}): {p.steps} steps x batch {p.batch_size} per trained "
        f"system, adapters at lr {p.lr_adapter:g}"
        + (f", --full at lr {p.lr_full:g}" if p.full else "")
        + (f", LoRA at lr {p.lr_lora:g} (scored through its bundles)" if p.lora else "")
        + "; untrained = a fresh (identity) adapter, task tokens at their initial embedding (the mean of their "
        "names' word embeddings).\n"
    ]
    for t in p.tasks:
        parts.append(task_table(t, [r for r in rows if r["task"] == t]))
    parts.append(f"![quality]({png})\n")
    return "\n".join(parts)


def plot(rows: list[dict], p: qp.Profile, path: Path) -> None:
    if p.budgets:
        from . import quality_curves as qc

        qc.plot(rows, list(p.tasks), METRICS, path, p.label)
        return
    systems = list(dict.fromkeys(r["system"] for r in rows))
    series = {
        label(s): [next((r[METRICS[t][0]] for r in rows if r["task"] == t and r["system"] == s), 0.0) for t in p.tasks]
        for s in systems
    }
    cats = [f"{t} ({METRICS[t][0]})" for t in p.tasks]
    plots.grouped_bars(path, cats, series, "score", f"Quality on held-out data ({p.label})")


def write(report: Report, rows: list[dict], p: qp.Profile, backbone: str, dest: Path) -> Path:
    """Records, markdown and plot for one profile; returns ``dest``."""
    for r in rows:
        m = METRICS[r["task"]]
        same = r.get("same_output_as_fp32_pct")
        report.add(
            f"[{r['task']}] {label(r['system'])}: "
            + ", ".join(f"{k} {r[k]:.2f}" for k in m if r.get(k) is not None)
            + (f", {same:.0f}% outputs identical to fp32" if same is not None else ""),
            kind="score",
            dataset=r["task"],
            backbone=backbone,
            profile=p.name,
            **{k: v for k, v in r.items() if k != "predictions"},
        )
    stem = "results" if p.name == "cpu" else f"results-{p.name}"
    png = f"{stem}.png"
    dest.mkdir(parents=True, exist_ok=True)
    plot(rows, p, dest / png)
    extra = {"plan": {"profile": p.name, "label": p.label, "steps": p.steps, "batch_size": p.batch_size}}
    extra["plan"]["tasks"] = {t: vars(tp) for t, tp in p.tasks.items()}
    tmp = dest / f".{stem}"
    report.write(tmp, markdown(rows, p, backbone, png), extra)
    for ext in ("json", "md"):
        (tmp / f"results.{ext}").replace(dest / f"{stem}.{ext}")
    tmp.rmdir()
    return dest
