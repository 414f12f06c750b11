"""Where a decoded token's time goes in the runtime: Python loop, ONNX Runtime overhead, each operator type.

    python -m edgevlm.benchmarks.profile BUNDLE [--task NAME] [--tokens 32] [--threads 2] [--rounds 3]

Runs ``Runtime.generate_tokens`` ``--rounds`` times with ORT's profiler on (a
profiling session swapped into the runtime's decoder) and a timer around every
graph run, then splits the decode steps' wall time into: Python work between
runs (wall minus the time inside ``run``: the decode loop, text, bindings),
ORT framework work inside a run (feeds, allocations, outputs), and kernel time
per operator type. Prefill and warm-up runs are excluded. Profiling itself
adds a little per-node overhead, so treat shares, not absolute times, as the
result; the Python time is a median over the calls because a busy machine
makes it jump.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from edgevlm.core.errors import ConfigError


class TimedSession:
    """Delegates to an ``InferenceSession``; records the wall time of each ``run``."""

    def __init__(self, session):
        self._s = session
        self.runs: list[float] = []

    def run(self, *a, **k):
        t0 = time.perf_counter()
        out = self._s.run(*a, **k)
        self.runs.append(time.perf_counter() - t0)
        return out

    def run_with_iobinding(self, *a, **k):  # the runtime's shared-cache path
        t0 = time.perf_counter()
        self._s.run_with_iobinding(*a, **k)
        self.runs.append(time.perf_counter() - t0)

    def __getattr__(self, name):
        return getattr(self._s, name)


def profiling_runtime(bundle: Path, threads: int | None, prefix: str):
    """A loaded Runtime whose decoder runs a profiling session of the same graph (same options otherwise)."""
    import onnxruntime as ort

    from edgevlm.runtime import Runtime
    from edgevlm.runtime.session import session_options

    rt = Runtime.load(bundle, threads=threads)
    dec = rt.steps  # every graph run of the runtime goes through its session
    so = session_options(threads)
    so.enable_profiling = True
    so.profile_file_prefix = prefix
    sess = ort.InferenceSession(str(bundle / rt.manifest.backbone.file), so, providers=["CPUExecutionProvider"])
    dec.session = TimedSession(sess)
    return rt, sess, dec.session


def split_runs(events: list[dict]) -> list[tuple[float, float, dict[str, float]]]:
    """(start_us, duration_us, {op_type: kernel_us}) per ``model_run``, in order."""
    runs = sorted((e["ts"], e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    per = [defaultdict(float) for _ in runs]
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        for i, (ts, dur) in enumerate(runs):
            if ts <= e["ts"] <= ts + dur:
                per[i][e.get("args", {}).get("op_name", "?")] += e["dur"]
                break
    return [(ts, dur, dict(p)) for (ts, dur), p in zip(runs, per)]


FIRST_TASK = ""


def timed_calls(rt, timed: TimedSession, prompt: list[int], task, tokens: int, rounds: int) -> list[dict]:
    """``rounds`` decodes of ``tokens`` tokens: per call its runs' indices into ``timed.runs`` (prefill first),
    its wall time and its Python time per decode step (wall minus the time inside the graph runs)."""
    calls = []
    for _ in range(rounds):
        first = len(timed.runs)
        t0 = time.perf_counter()
        rt.generate_tokens(prompt, task=task, max_new_tokens=tokens, min_new_tokens=tokens)
        wall = time.perf_counter() - t0
        runs = timed.runs[first:]
        steps = len(runs) - 1
        calls.append(
            {"runs": range(first, first + len(runs)), "steps": steps, "wall": wall,
             "python_ms": (wall - sum(runs)) * 1e3 / steps, "step_ms": (wall - runs[0]) * 1e3 / steps}
        )  # fmt: skip
    return calls


def kernel_split(runs: list, calls: list[dict], skip: int) -> tuple[float, float, dict[str, float], float]:
    """Over every call's decode runs (prefills left out): (model_run ms, kernel ms, {op: ms}, prefill ms), each per
    decode step (the prefill: per call)."""
    decode = [runs[i - skip] for c in calls for i in list(c["runs"])[1:]]
    steps = len(decode)
    kernels: dict[str, float] = defaultdict(float)
    for _, _, ops in decode:
        for op, us in ops.items():
            kernels[op] += us
    prefill = statistics.median(runs[c["runs"][0] - skip][1] for c in calls) / 1e3
    ops = dict(sorted(((k, v / 1e3 / steps) for k, v in kernels.items()), key=lambda kv: -kv[1]))
    return sum(d for _, d, _ in decode) / 1e3 / steps, sum(kernels.values()) / 1e3 / steps, ops, prefill


def measure(bundle: Path, task, tokens: int, prompt_tokens: int, threads: int | None, rounds: int) -> tuple:
    """A warm-up and ``rounds`` timed calls on a profiling runtime -> (runtime, task, timed session, calls, ORT
    profiler events, runs before the first call)."""
    from .engines import Engine

    with tempfile.TemporaryDirectory(prefix="edgevlm-profile-") as tmp:
        rt, sess, timed = profiling_runtime(bundle, threads, str(Path(tmp) / "ort"))
        task = next(iter(rt.tasks), None) if task == FIRST_TASK else task
        eng = Engine("edgevlm", rt.manifest.backbone.quantization, bundle, threads or 1, task)
        eng.model, eng.tokenizer = rt, rt.tokenizer
        prompt = eng.prompt(prompt_tokens)
        rt.generate_tokens(prompt, task=task, max_new_tokens=4, min_new_tokens=4)  # warm-up
        skip = len(timed.runs)
        calls = timed_calls(rt, timed, prompt, task, tokens, rounds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    return rt, task, timed, calls, events, skip


def profile(
    bundle: str | Path,
    task: str | None = FIRST_TASK,
    tokens: int = 32,
    prompt_tokens: int = 32,
    threads: int | None = None,
    rounds: int = 3,
) -> dict:
    """Per-token decode time split into python / ORT framework / kernels (by op type), in ms; the Python time
    (wall minus the time inside the graph runs) is the median over ``rounds`` calls, the rest their mean.

    ``task``: a task name, None for the plain backbone, or FIRST_TASK for the bundle's first task.
    """
    bundle = Path(bundle)
    rt, task, timed, calls, events, skip = measure(bundle, task, tokens, prompt_tokens, threads, rounds)
    model_run_ms, kernel_ms, ops, prefill_ms = kernel_split(split_runs(events)[skip:], calls, skip)
    run_wall = sum(timed.runs[i] for c in calls for i in list(c["runs"])[1:]) * 1e3 / sum(c["steps"] for c in calls)
    step_ms = statistics.median(c["step_ms"] for c in calls)
    return {
        "bundle": str(bundle),
        "quantization": rt.manifest.backbone.quantization,
        "task": task,
        "threads": threads,
        "loop": "bound-shared" if rt.steps.shared else "bound-concat",  # batch-1 greedy: bound buffers, cache mode
        "decode_steps": calls[0]["steps"],
        "rounds": rounds,
        "prefill_ms": prefill_ms,
        "decode_ms_per_token": step_ms,
        "python_ms_per_token": statistics.median(c["python_ms"] for c in calls),
        "python_ms_per_token_rounds": [c["python_ms"] for c in calls],
        "ort_call_overhead_ms_per_token": run_wall - model_run_ms,
        "ort_framework_ms_per_token": model_run_ms - kernel_ms,
        "kernels_ms_per_token": kernel_ms,
        "ops_ms_per_token": ops,
    }


def render(p: dict) -> str:
    total = p["decode_ms_per_token"]
    lines = [
        f"{p['bundle']} ({p['quantization']}, task={p['task']}, threads={p['threads']}): "
        f"{total:.2f} ms per decoded token over {p['decode_steps']} steps, median of {p['rounds']} calls "
        f"(prefill {p['prefill_ms']:.1f} ms; loop: {p['loop']})"
    ]
    for key, label in (
        ("python_ms_per_token", "Python between runs"),
        ("ort_call_overhead_ms_per_token", "ORT run() call (feeds/fetches)"),
        ("ort_framework_ms_per_token", "ORT inside model_run, outside kernels"),
        ("kernels_ms_per_token", "kernels"),
    ):
        lines.append(f"  {label:40s} {p[key]:8.3f} ms  {100 * p[key] / total:5.1f}%")
    for op, ms in list(p["ops_ms_per_token"].items())[:12]:
        lines.append(f"    {op:38s} {ms:8.3f} ms  {100 * ms / total:5.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgevlm.benchmarks.profile", description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--task", help="task to decode with (default: the bundle's first)")
    ap.add_argument("--no-task", action="store_true", help="decode with the plain backbone (task=None)")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--rounds", type=int, default=3, help="decode calls measured (Python time: their median)")
    ap.add_argument("--json", help="also write the profile as JSON here")
    a = ap.parse_args(argv)
    if a.tokens < 2:
        raise ConfigError(f"--tokens must be at least 2, got {a.tokens}")
    if a.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {a.rounds}")
    task = None if a.no_task else (a.task or FIRST_TASK)
    p = profile(a.bundle, task, a.tokens, a.prompt_tokens, a.threads, a.rounds)
    print(render(p))
    if a.json:
        Path(a.json).write_text(json.dumps(p, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from .common import run_main

    sys.exit(run_main(main))
