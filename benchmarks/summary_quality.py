"""docs/results.md sections of the SmolLM2 quality plans beyond the cpu one (:mod:`.summary`): the quality gate of
int4-trained adapters with the LoRA comparison (``--profile gate``), the learning curves (``--profile curves``)
and the CPU training speed (``experiments/train_step/real_step.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from .common import md_table
from .summary_sections import REAL_METRIC, machine

GATE = "quality/smollm2/results-gate.json"
EXACT = "quality/smollm2/exact-int4-gate.jsonl"  # the old exact int4 recipe's bundles of the gate's adapters
CURVES = "quality/smollm2/results-curves.json"
TRAIN_SPEED = "train_speed/smollm2-nlg.jsonl"
GATE_ROWS = (  # (system in the gate's records, row name)
    ("adapter", "adapter, fp32-trained (PyTorch)"),
    ("bundle-fp32", "adapter, fp32-trained: fp32 bundle"),
    ("bundle-int4", "adapter, fp32-trained: int4 bundle"),
    ("exact-int4", "adapter, fp32-trained: previous exact int4 bundle (Q4_1 float zero points)"),
    ("adapter-int4-bundle-int4", "adapter, int4-trained: int4 bundle"),
    ("lora-bundle-fp32", "LoRA, parameters matched: fp32 bundle"),
    ("lora-bundle-int4", "LoRA, parameters matched: int4 bundle"),
    ("lora-qv8-bundle-fp32", "LoRA rank 8 q/v: fp32 bundle"),
    ("lora-qv8-bundle-int4", "LoRA rank 8 q/v: int4 bundle"),
)


def _json(results: Path, rel: str):
    path = results / rel
    if not path.is_file():
        return None
    text = path.read_text()
    return [json.loads(x) for x in text.splitlines() if x.strip()] if rel.endswith(".jsonl") else json.loads(text)


def gate_rows(doc: dict, exact: list[dict]) -> list[dict]:
    """One row per task: each system's primary metric, and the gate's verdict."""
    recs = [r for r in doc["records"] if r.get("kind") == "score"]
    rows = []
    for task in dict.fromkeys(r["task"] for r in recs):
        m = REAL_METRIC[task]
        got = {r["system"]: r for r in recs if r["task"] == task}
        got.update(("exact-int4", e) for e in exact if e["task"] == task)
        for system, name in GATE_ROWS:
            if system in got:
                r = got[system]
                rows.append({"task": f"{task} ({m}, {r['n']} sources)", "system": name, "score": r[m],
                             "share": r.get("trainable_pct"), "same": r.get("same_output_as_fp32_pct")})  # fmt: skip
        rows.append({"task": task, "system": "**gate**", "score": None, "verdict": verdict(got, m)})
    return rows


def verdict(got: dict, m: str) -> str:
    """int4-trained int4 bundle within 0.5 of the fp32-trained fp32 bundle, and not below the exact int4."""
    if "adapter-int4-bundle-int4" not in got or "bundle-fp32" not in got:
        return "not measured"
    q, ref = got["adapter-int4-bundle-int4"][m], got["bundle-fp32"][m]
    text = f"int4-trained int4 {q:.2f} vs fp32 {ref:.2f}: {q - ref:+.2f} ({'met' if q >= ref - 0.5 else 'missed'})"
    if "exact-int4" in got:
        e = got["exact-int4"][m]
        text += f"; vs previous exact int4 {e:.2f}: {q - e:+.2f} ({'met' if q >= e else 'missed'})"
    return text


def quality_gate(results: Path, link: str) -> str:
    doc = _json(results, GATE)
    if doc is None:
        return ""
    exact = _json(results, EXACT) or []
    rows = gate_rows(doc, exact)
    table = md_table(
        [r for r in rows if r["score"] is not None],
        [("task", "task (metric, held-out sources)"), ("system", "system"), ("score", "score"),
         ("share", "trainable % of backbone"), ("same", "outputs = own fp32 bundle %")],
    )  # fmt: skip
    verdicts = "\n".join(f"- {r['task']}: {r['verdict']}" for r in rows if r["score"] is None)
    p = doc["plan"]
    return (
        "## Quality gate: int4-trained adapters, and LoRA beside the adapter (SmolLM2-135M)\n\n"
        f"*{machine(doc)}; [results]({link}{GATE}), [table]({link}{GATE.replace('.json', '.md')}), previous exact "
        f"int4 recipe: [{EXACT.rsplit('/', 1)[1]}]({link}{EXACT}).* Plan `{p['profile']}`: {p['steps']} steps x "
        f"batch {p['batch_size']}, every system on the same batches; LoRA rows are decoded through their bundles "
        "(the fp32 bundle is exact against peft).\n\n" + table + "\n\nGate (issue 25: within 0.5 of the fp32 "
        "bundle of an fp32-trained adapter, and not below the previous exact int4):\n\n" + verdicts + "\n"
    )


def curves(results: Path, link: str) -> str:
    from . import quality_curves as qc

    doc = _json(results, CURVES)
    if doc is None:
        return ""
    recs = [r for r in doc["records"] if r.get("kind") == "score"]
    body = []
    for task in dict.fromkeys(r["task"] for r in recs):
        rows = [{**r, "curve": r["system"].split("@")[0]} for r in recs if r["task"] == task]
        body.append(qc.markdown(task, rows, REAL_METRIC[task]).replace("## ", "### ", 1))
    png = CURVES.replace(".json", ".png")
    return (
        "## Learning curves: adapter vs full fine-tuning (SmolLM2-135M)\n\n"
        f"*{machine(doc)}; [results]({link}{CURVES}).*\n\n" + "\n".join(body) + f"\n![curves]({link}{png})\n"
    )


def train_speed(results: Path, link: str) -> str:
    recs = _json(results, TRAIN_SPEED)
    if not recs:
        return ""
    base = next((r for r in recs if r["config"] == "before"), recs[0])
    rows = [{**r, "speedup": r["examples_per_cpu_s"] / base["examples_per_cpu_s"],
             "loss": f"{r['valid_loss'][-1]:.4f}"} for r in recs]  # fmt: skip
    cols = [("config", "configuration"), ("precision", "precision"), ("grouped", "length-grouped"),
            ("examples_per_s", "examples/s (wall)"), ("examples_per_cpu_s", "examples per CPU-s"),
            ("speedup", "x before (CPU s)"), ("loss", "final validation loss"), ("bleu", "held-out BLEU"),
            ("load_avg", "load average at end")]  # fmt: skip
    first = recs[0]
    return (
        "## Training speed on the CPU (SmolLM2-135M adapter, E2E)\n\n"
        f"*`{first.get('command', 'python experiments/train_step/real_step.py')}` on {first.get('cpu', '?')} "
        f"(2 cores, shared); [records]({link}{TRAIN_SPEED}). {first['steps']} steps x batch "
        f"{first['batch']}, each configuration in its own process; CPU time is the load-robust measure.*\n\n"
        + md_table(rows, cols)
    )
