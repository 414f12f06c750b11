"""Tables and the plot of the latency suite (markdown for benchmarks/results; docs/results.md has its own)."""

from __future__ import annotations

from pathlib import Path

from . import plots
from .common import md_table

TASK, OTHER_TASK = "summarization", "dialogue"  # both bottleneck 100

COLUMNS = [
    ("engine", "engine"),
    ("decode_ms_per_token", "decode ms/token"),
    ("tokens_per_s", "tokens/s"),
    ("x_optimum_fp32", "x optimum fp32"),
    ("x_pytorch_fp32", "x PyTorch"),
    ("bound_tokens_per_s", "bound tokens/s"),
    ("fraction_of_bound", "fraction of bound"),
    ("fraction_of_threads_bound", "fraction of n-thread bound"),
    ("fraction_of_stream_bound", "fraction of STREAM bound"),
    ("prefill_short_ms", "prefill 32 ms"),
    ("prefill_long_ms", "prefill 128 ms"),
    ("adapter_overhead_pct", "adapter overhead %"),
    ("decode_cpu_ms_per_token", "CPU ms/token"),
    ("cold_load_ms", "cold load ms"),
    ("peak_rss_mb", "peak RSS MB"),
    ("weight_mb_per_token", "weights MB/token"),
]


PROFILE_COLUMNS = [
    ("engine", "engine"),
    ("decode_ms_per_token", "ms/token (profiled)"),
    ("python_ms_per_token", "Python ms"),
    ("ort_call_overhead_ms_per_token", "ORT call ms"),
    ("ort_framework_ms_per_token", "ORT framework ms"),
    ("kernels_ms_per_token", "kernels ms"),
    ("top_ops", "top kernels (ms/token)"),
]


PEER_COLUMNS = [
    ("engine", "edgevlm"),
    ("peer", "peer"),
    ("what", "compared"),
    ("decode_x", "decode speed x"),
    ("prefill_short_x", "prefill short x"),
    ("prefill_long_x", "prefill long x"),
    ("target_x", "target x (issue 25)"),
    ("verdict", "target"),
]


def peer_table(records: list[dict], size: str) -> str:
    rows = [r for r in records if r.get("kind") == "peer_ratio" and r["size"] == size]
    if not rows:
        return ""
    rows = [{**r, "verdict": _verdict(r)} for r in rows]
    head = (
        "\nAgainst the peers (llama.cpp, onnxruntime-genai), same run (> 1: edgevlm faster; edgevlm runs with its "
        'task active; a peer "with its LoRA" runs a rank-8 q/v LoRA, `+lora`):\n\n'
    )
    return head + md_table(rows, PEER_COLUMNS)


def _verdict(r: dict) -> str | None:
    return None if r.get("target_x") is None else "met" if r["target_met"] else "missed"


def profile_table(records: list[dict], size: str) -> str:
    prof = [
        {**r, "top_ops": ", ".join(f"{op} {ms:.2f}" for op, ms in list(r["ops_ms_per_token"].items())[:4])}
        for r in records
        if r.get("kind") == "profile" and r["size"] == size
    ]
    if not prof:
        return ""
    return (
        "\nWhere a decoded token's time goes in the runtime (ORT profiler on, which adds some overhead; "
        "`python -m edgevlm.benchmarks.profile BUNDLE`):\n\n" + md_table(prof, PROFILE_COLUMNS)
    )


def markdown(rows: list[dict], plan_of: dict, records: list[dict]) -> str:
    parts = []
    for size in dict.fromkeys(r["size"] for r in rows):
        p = plan_of[size]
        sub = [r for r in rows if r["size"] == size and "tokens_per_s" in r]
        sw = next((r for r in rows if r["size"] == size and r["engine"] == "task switch"), None)
        switch = (
            f"Task switch (edgevlm fp32): {sw['switch_ms']:+.3f} ms."
            if sw
            else "Task switch: measured on the smaller sizes."
        )
        parts.append(
            f"## {size}\n\nBatch 1, greedy, exactly {p.new_tokens} new tokens after a {p.prompts[0]}-token prompt; "
            f"median of {p.reps} interleaved repetitions, each engine in its own process. {switch} Bound = bytes "
            "of weights read per token / bandwidth of one numpy sum (the n-thread bound: n sums at once).\n\n"
            + md_table(sub, COLUMNS)
            + peer_table(records, size)
            + profile_table(records, size)
        )
    return "\n".join(parts) + "\n![tokens/s](tokens_per_s.png)\n"


def plot(rows: list[dict], out: Path) -> Path:
    groups = {}
    for r in rows:
        if "tokens_per_s" in r:
            groups.setdefault(r["size"], []).append(
                (r["engine"].replace(f" task={TASK}", ""), r["tokens_per_s"], r["bound_tokens_per_s"])
            )
    return plots.bars_with_bounds(
        out / "tokens_per_s.png", groups, "decode tokens/s (log)", "Decode speed per engine and format"
    )
