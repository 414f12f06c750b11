"""Latency suite: cold load, prefill, decode speed, adapter overhead and task switch, against PyTorch and optimum.

For each model size every engine runs in its own worker process
(:mod:`.worker`; in one shared process they slow each other down) and they
are timed *interleaved* (each repetition runs every engine once, in rotating
order, one at a time) so that noise from other work on the machine hits all
of them alike;
figures are medians over repetitions and ratios within one run. Decode speed
is (time for N tokens - time for 1 token) / (N - 1), prefill the time to the
first token. Adapter overhead is a separate A/B on one runtime (the task's
bottleneck-100 adapter vs ``task=None``, alternating order); task switch
compares a call right after another task's call with one after the same
task's. Memory bandwidth (numpy sum over 512 MB) is measured before and
after, and each engine's bytes of weights read per token give its bound.
Cold load and peak RSS come from a fresh process per configuration
(:mod:`.probe`); the runtime's decode step is profiled (:mod:`.profile`).

    python -m edgevlm.benchmarks.latency [--quick] [--sizes tiny,gpt2-small,smollm2-135m] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgevlm.core.errors import ConfigError

from . import ortgenai, peers
from .bandwidth import bound, measure_bandwidth
from .common import Report, check_threads, median, spread, suite_dir
from .engines import SPIN, Engine, optimum_export
from .fixtures import Workspace, backbone_dir, export, make_adapters
from .latency_report import OTHER_TASK, TASK, markdown, plot
from .probe import run_probe
from .profile import profile
from .stream import stream_record
from .worker import Worker

SUITE = "latency"
QUANTS = ("fp32", "int8", "int4")
PAUSE_S = 0.02  # let the previous engine's spinning worker threads go idle


@dataclass(frozen=True)
class Plan:
    """How much to measure per model size."""

    reps: int
    new_tokens: int
    switch_pairs: int  # 0: skip (a 1-token call of a big model is too slow to resolve a sub-millisecond switch)
    overhead_pairs: int  # task vs task=None A/B pairs per format (0: skip)
    prompts: tuple[int, int] = (32, 128)


PLANS = {
    "tiny": Plan(7, 64, 40, 15),
    "gpt2-small": Plan(5, 32, 40, 8),
    "gpt2-medium": Plan(3, 16, 0, 0),
    "smollm2-135m": Plan(3, 128, 0, 4),  # the real model (issue 13's setting: 32-token prompt, 128 new tokens)
}
DEFAULT_SIZES = ("tiny", "gpt2-small", "gpt2-medium")
QUICK_PLAN = Plan(2, 8, 5, 2)


def build_engines(ws: Workspace, size: str, threads: int, pbar) -> list[Engine]:
    """Bundles (fp32/int8/int4, two tasks), the optimum exports (fp32/int8) and the HF directory for ``size``."""
    hf = backbone_dir(ws, size)
    ad = ws.get(f"{size}-latency-adapters", lambda p: make_adapters(hf, p, {TASK: 100, OTHER_TASK: 100}))
    engines, bundles = [], {}
    for q in QUANTS:
        pbar.set_postfix_str(f"{size}: export {q} bundle")
        bundles[q] = ws.get(f"{size}-latency-bundle-{q}", lambda p, q=q: export(hf, [ad / TASK, ad / OTHER_TASK], q, p))
        engines.append(Engine("edgevlm", q, bundles[q], threads, TASK))
    if threads > 1:  # the quantized modes with spinning threads too, as the peers ship theirs
        engines += [Engine("edgevlm", q + SPIN, bundles[q], threads, TASK) for q in ("int8", "int4")]
    for q in ("fp32", "int8"):
        pbar.set_postfix_str(f"{size}: optimum export {q}")
        engines.append(
            Engine("optimum", q, ws.get(f"{size}-optimum-{q}", lambda p, q=q: optimum_export(hf, p, q)), threads)
        )
    engines.append(Engine("pytorch", "fp32", hf, threads))
    return engines


def cold_start(report: Report, size: str, engines: list[Engine], threads: int, repeats: int) -> dict[str, dict]:
    """Import + load seconds and peak RSS, each configuration in fresh processes (median of ``repeats``)."""
    out = {}
    for e in engines:
        r = run_probe(
            {
                "engines": [{"kind": e.kind, "fmt": e.fmt, "path": str(e.path), "task": e.task}],
                "threads": threads,
                "gen_tokens": 4,
            },
            repeats,
        )
        out[e.label] = r
        report.add(
            f"[{size}] {e.label}: cold load {r['load_s'][0] * 1e3:.0f} ms (+ imports {r['import_s'] * 1e3:.0f} ms), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB",
            kind="cold_start",
            size=size,
            engine=e.label,
            load_ms=r["load_s"][0] * 1e3,
            import_ms=r["import_s"] * 1e3,
            peak_rss_mb=r["peak_rss_mb"],
            rss_after_load_mb=r["rss_after_load_mb"],
        )
    return out


def adapter_overhead(report: Report, size: str, w: Worker, plan: Plan) -> dict:
    """Whole-call time with the task's adapter vs ``task=None`` on the same runtime, A/B pairs in alternating order."""
    n, p = plan.new_tokens, plan.prompts[0]
    times: dict[str | None, list[float]] = {TASK: [], None: []}
    for i in range(plan.overhead_pairs):
        for task in (TASK, None) if i % 2 == 0 else (None, TASK):
            time.sleep(PAUSE_S)
            times[task].append(w.generate(p, n, task))
    ratio = [a / b - 1 for a, b in zip(times[TASK], times[None])]
    ov = 100 * median(ratio)
    return report.add(
        f"[{size}] edgevlm {w.fmt}: adapter overhead (bottleneck 100 vs task=None) {ov:+.1f}% per "
        f"{n}-token call (median of {plan.overhead_pairs} A/B pairs; "
        f"{median(times[TASK]) * 1e3:.1f} vs {median(times[None]) * 1e3:.1f} ms)",
        kind="adapter_overhead",
        size=size,
        fmt=w.fmt,
        overhead_pct=ov,
        per_pair_pct=[100 * x for x in ratio],
        with_task_ms=median(times[TASK]) * 1e3,
        no_task_ms=median(times[None]) * 1e3,
    )


def time_engines(workers: list[Worker], plan: Plan, pbar) -> dict[str, dict[str, list[float]]]:
    """Interleaved repetitions: TTFT at both prompt lengths and an exact-length generation per engine."""
    short, long_ = plan.prompts
    for w in workers:  # warm-up: allocations, kernels, caches
        w.generate(short, 2)
        w.generate(long_, 1)
    keys = ("ttft_short", "ttft_long", "gen")
    t: dict[str, dict[str, list[float]]] = {
        w.label: {k: [] for k in keys + tuple(f"{k}_cpu" for k in keys)} for w in workers
    }
    for rep in range(plan.reps):
        for w in workers[rep % len(workers) :] + workers[: rep % len(workers)]:
            for key, prompt, n in zip(keys, (short, long_, short), (1, 1, plan.new_tokens)):
                time.sleep(PAUSE_S)
                t[w.label][key].append(w.generate(prompt, n))
                t[w.label][f"{key}_cpu"].append(w.last_cpu_s)
            pbar.update(1)
    return t


def decode_stats(t: dict[str, list[float]], n: int) -> dict[str, float]:
    """Per-repetition decode time per token (generation minus time to first token), then the median."""
    per_tok = [(g - f) / (n - 1) for g, f in zip(t["gen"], t["ttft_short"])]
    cpu_tok = [(g - f) / (n - 1) for g, f in zip(t["gen_cpu"], t["ttft_short_cpu"])]
    ms = median(per_tok) * 1e3
    return {
        "decode_ms_per_token": ms,
        "tokens_per_s": 1e3 / ms,
        "decode_spread_ms": spread([x * 1e3 for x in per_tok]),
        "decode_cpu_ms_per_token": median(cpu_tok) * 1e3,
        "prefill_short_ms": median(t["ttft_short"]) * 1e3,
        "prefill_long_ms": median(t["ttft_long"]) * 1e3,
    }


def task_switch(report: Report, size: str, w: Worker, pairs: int) -> dict:
    """Time of a 1-token call right after a call with another task vs after one with the same task."""
    same, switched = [], []
    for i in range(pairs):
        a, b = (TASK, OTHER_TASK) if i % 2 == 0 else (OTHER_TASK, TASK)
        for second, into in ((a, same), (b, switched)):
            w.generate(8, 1, a)
            into.append(w.generate(8, 1, second))
    cost = (median(switched) - median(same)) * 1e3
    return report.add(
        f"[{size}] {w.label}: task switch {cost:+.3f} ms (call after a switch {median(switched) * 1e3:.2f} ms, "
        f"same task {median(same) * 1e3:.2f} ms; {pairs} pairs)",
        kind="task_switch",
        size=size,
        engine=w.label,
        switch_ms=cost,
        after_switch_ms=median(switched) * 1e3,
        same_task_ms=median(same) * 1e3,
        pairs=pairs,
    )


def measure_size(report: Report, ws: Workspace, size: str, plan: Plan, threads: int, pbar, quick: bool) -> list[dict]:
    """Everything for one model size; returns the per-engine rows. ``quick`` probes cold starts of edgevlm only."""
    engines = build_engines(ws, size, threads, pbar)
    if not quick:
        engines += peers.all_engines(ws, size, backbone_dir(ws, size), threads, pbar)
    pbar.set_postfix_str(f"{size}: cold starts")
    cold = cold_start(
        report, size, [e for e in engines if e.kind == "edgevlm" or not quick], threads, 1 if quick else 3
    )
    bw = bandwidths(threads)
    pbar.set_postfix_str(f"{size}: loading")
    workers = [Worker(e.kind, e.fmt, e.path, threads, e.task) for e in engines]
    try:
        pbar.set_postfix_str(f"{size}: timing")
        t = time_engines(workers, plan, pbar)
        switch = task_switch(report, size, workers[0], plan.switch_pairs) if plan.switch_pairs else None
        pbar.set_postfix_str(f"{size}: adapter overhead")
        overhead = {
            w.fmt: adapter_overhead(report, size, w, plan)
            for w in workers
            if w.kind == "edgevlm" and SPIN not in w.fmt and plan.overhead_pairs
        }
        weights = {w.label: w.call(op="weight_bytes")["bytes_per_token"] for w in workers}
    finally:
        for w in workers:
            w.close()
    after = bandwidths(threads)
    gbps = {k: median([bw[k], after[k]]) for k in bw}
    report.add(
        f"[{size}] memory bandwidth {gbps[1]:.2f} GB/s (numpy sum over 512 MB; "
        f"before/after {bw[1]:.2f}/{after[1]:.2f}); "
        f"{threads} threads summing at once: {gbps[threads]:.2f} GB/s",
        kind="bandwidth",
        size=size,
        gb_per_s=gbps[1],
        gb_per_s_threads=gbps[threads],
        threads=threads,
        before=bw,
        after=after,
    )
    gbps["stream"] = stream_record(report, size, threads)
    rows = [engine_row(report, size, e, t[e.label], plan, gbps, weights[e.label], cold) for e in engines]
    ratios(report, size, rows)
    peers.peer_ratios(report, size, rows)
    for r in rows:
        if r["kind_"] == "edgevlm" and r["fmt"] in overhead:
            r["adapter_overhead_pct"] = overhead[r["fmt"]]["overhead_pct"]
    pbar.set_postfix_str(f"{size}: profiles")
    for e in engines:
        if e.kind == "edgevlm" and SPIN not in e.fmt:
            where_time_goes(report, size, e, plan, threads)
    if switch:
        rows.append({"size": size, "engine": "task switch", "switch_ms": switch["switch_ms"]})
    return rows


def where_time_goes(report: Report, size: str, e: Engine, plan: Plan, threads: int) -> dict:
    """The runtime's decode step split into Python / ORT overhead / kernels by op type (:mod:`.profile`)."""
    p = profile(e.path, e.task, plan.new_tokens, plan.prompts[0], threads)
    top = ", ".join(f"{op} {ms:.2f}" for op, ms in list(p["ops_ms_per_token"].items())[:4])
    return report.add(
        f"[{size}] profile {e.label}: {p['decode_ms_per_token']:.2f} ms/token = Python {p['python_ms_per_token']:.2f} "
        f"+ ORT call {p['ort_call_overhead_ms_per_token']:.2f} + ORT framework {p['ort_framework_ms_per_token']:.2f} "
        f"+ kernels {p['kernels_ms_per_token']:.2f} ms (top kernels, ms: {top}; ORT profiler on)",
        kind="profile",
        size=size,
        engine=e.label,
        **p,
    )


def bandwidths(threads: int) -> dict[int, float]:
    """GB/s of one numpy sum (the specified measure) and of ``threads`` sums at once."""
    return {n: measure_bandwidth(threads=n)["gb_per_s"] for n in sorted({1, threads})}


def engine_row(report: Report, size: str, e: Engine, t: dict, plan: Plan, gbps: dict, wb: int, cold: dict) -> dict:
    d = decode_stats(t, plan.new_tokens)
    b, bt = bound(gbps[1], wb), bound(gbps[e.threads], wb)
    c = cold.get(e.label, {})
    row = {
        "size": size,
        "engine": e.label,
        "kind_": e.kind,
        "fmt": e.fmt,
        "task": e.task,
        **d,
        "weight_mb_per_token": wb / 2**20,
        "bound_tokens_per_s": b,
        "fraction_of_bound": d["tokens_per_s"] / b,
        "bound_threads_tokens_per_s": bt,
        "fraction_of_threads_bound": d["tokens_per_s"] / bt,
        "fraction_of_stream_bound": d["tokens_per_s"] / bound(gbps["stream"], wb),
        "cold_load_ms": c["load_s"][0] * 1e3 if c else None,
        "peak_rss_mb": c.get("peak_rss_mb"),
    }
    report.add(
        f"[{size}] {e.label}: decode {d['decode_ms_per_token']:.2f} ms/token = {d['tokens_per_s']:.1f} tokens/s "
        f"({100 * row['fraction_of_bound']:.0f}% of the {b:.1f} tokens/s bandwidth bound, "
        f"{100 * row['fraction_of_threads_bound']:.0f}% of the {e.threads}-thread one; {wb / 2**20:.1f} MB/token); "
        f"prefill {plan.prompts[0]} tokens {d['prefill_short_ms']:.1f} ms, "
        f"{plan.prompts[1]} tokens {d['prefill_long_ms']:.1f} ms",
        kind="engine",
        **row,
    )
    return row


def ratios(report: Report, size: str, rows: list[dict]) -> None:
    """Decode speed of every engine relative to optimum fp32 and PyTorch fp32 (same run)."""
    by = {r["engine"]: r for r in rows}
    for r in rows:
        for ref in ("optimum fp32", "pytorch fp32"):
            if ref in by:
                r[f"x_{ref.replace(' ', '_')}"] = r["tokens_per_s"] / by[ref]["tokens_per_s"]
    best = max((r for r in rows if r["kind_"] == "edgevlm"), key=lambda r: r["tokens_per_s"])
    if "optimum fp32" in by and "pytorch fp32" in by:
        report.add(
            f"[{size}] best edgevlm ({best['engine']}) = {best['x_optimum_fp32']:.2f}x optimum fp32, "
            f"{best['x_pytorch_fp32']:.2f}x PyTorch fp32 decode tokens/s",
            kind="ratio",
            size=size,
            engine=best["engine"],
            x_optimum_fp32=best["x_optimum_fp32"],
            x_pytorch_fp32=best["x_pytorch_fp32"],
        )


def run(
    quick: bool = False,
    out: str | Path | None = None,
    threads: int | None = None,
    sizes: list[str] | None = None,
    work: str | Path | None = None,
) -> Path:
    """Run the suite; returns the results directory."""
    from tqdm.auto import tqdm

    threads = check_threads(threads)
    sizes = sizes or (["tiny"] if quick else list(DEFAULT_SIZES))
    unknown = [s for s in sizes if s not in PLANS]
    if unknown:
        raise ConfigError(f"--sizes: unknown model size(s) {unknown}; expected some of {list(PLANS)}")
    plan_of = {s: QUICK_PLAN if quick else PLANS[s] for s in sizes}
    report = Report(SUITE, threads, quick)
    if quick:
        report.note("quick: PyTorch and optimum cold starts (seconds of torch imports) are not probed; no peers")
    else:
        for why in (peers.unavailable(), ortgenai.unavailable()):
            if why:
                report.note(why)
    ws = Workspace(work)
    rows: list[dict] = []
    try:
        with tqdm(total=sum(p.reps * (len(QUANTS) + 3) for p in plan_of.values()), desc="latency", unit="rep") as pbar:
            for size in sizes:
                rows += measure_size(report, ws, size, plan_of[size], threads, pbar, quick)
    finally:
        ws.close()
    dest = suite_dir(out, SUITE)
    dest.mkdir(parents=True, exist_ok=True)
    plot(rows, dest)
    return report.write(
        dest, markdown(rows, plan_of, report.records), {"plans": {s: vars(p) for s, p in plan_of.items()}, "rows": rows}
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sizes",
        help="comma-separated model sizes (tiny,gpt2-small,gpt2-medium,smollm2-135m; default the first three, "
        "--quick: tiny)",
    )
    p.add_argument("--work", help="keep built models/bundles in this directory and reuse them (default: a temp dir)")


def main(argv: list[str] | None = None) -> int:
    from .common import base_parser

    p = base_parser(SUITE)
    add_arguments(p)
    a = p.parse_args(argv)
    run(a.quick, a.out, a.threads, a.sizes.split(",") if a.sizes else None, a.work)
    return 0


if __name__ == "__main__":
    from .common import run_main

    sys.exit(run_main(main))
