"""Where a decoded token's time goes in the runtime: Python loop, ONNX Runtime overhead, each operator type.

    python -m edgevlm.benchmarks.profile BUNDLE [--task NAME] [--tokens 32] [--threads 2]

Runs ``Runtime.generate_tokens`` with ORT's profiler on (a profiling session
swapped into the runtime's decoder) and a timer around every graph run, then
splits the decode steps' wall time into: Python work between runs, ORT
framework work inside a run (feeds, allocations, outputs), and kernel time
per operator type. Prefill and warm-up runs are excluded. Profiling itself
adds a little per-node overhead, so treat shares, not absolute times, as the
result.
"""

from __future__ import annotations

import json
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


def profile(
    bundle: str | Path,
    task: str | None = FIRST_TASK,
    tokens: int = 32,
    prompt_tokens: int = 32,
    threads: int | None = None,
) -> dict:
    """Per-token decode time split into python / ORT framework / kernels (by op type), in ms.

    ``task``: a task name, None for the plain backbone, or FIRST_TASK for the bundle's first task.
    """
    from .engines import Engine

    bundle = Path(bundle)
    with tempfile.TemporaryDirectory(prefix="edgevlm-profile-") as tmp:
        rt, sess, timed = profiling_runtime(bundle, threads, str(Path(tmp) / "ort"))
        task = next(iter(rt.tasks), None) if task == FIRST_TASK else task
        eng = Engine("edgevlm", rt.manifest.backbone.quantization, bundle, threads or 1, task)
        eng.model, eng.tokenizer = rt, rt.tokenizer
        prompt = eng.prompt(prompt_tokens)
        rt.generate_tokens(prompt, task=task, max_new_tokens=4, min_new_tokens=4)  # warm-up
        skip = len(timed.runs)
        t0 = time.perf_counter()
        rt.generate_tokens(prompt, task=task, max_new_tokens=tokens, min_new_tokens=tokens)
        wall = time.perf_counter() - t0
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = split_runs(events)[skip:]
    decode, prefill = runs[1:], runs[0]
    steps = len(decode)
    run_wall = sum(timed.runs[skip + 1 :])
    kernels: dict[str, float] = defaultdict(float)
    for _, _, ops in decode:
        for op, us in ops.items():
            kernels[op] += us
    kernel_ms = sum(kernels.values()) / 1e3 / steps
    model_run_ms = sum(d for _, d, _ in decode) / 1e3 / steps
    step_ms = (wall * 1e3 - timed.runs[skip] * 1e3) / steps
    return {
        "bundle": str(bundle),
        "quantization": rt.manifest.backbone.quantization,
        "task": task,
        "threads": threads,
        "decode_steps": steps,
        "prefill_ms": prefill[1] / 1e3,
        "decode_ms_per_token": step_ms,
        "python_ms_per_token": step_ms - run_wall * 1e3 / steps,
        "ort_call_overhead_ms_per_token": run_wall * 1e3 / steps - model_run_ms,
        "ort_framework_ms_per_token": model_run_ms - kernel_ms,
        "kernels_ms_per_token": kernel_ms,
        "ops_ms_per_token": dict(sorted(((k, v / 1e3 / steps) for k, v in kernels.items()), key=lambda kv: -kv[1])),
    }


def render(p: dict) -> str:
    total = p["decode_ms_per_token"]
    lines = [
        f"{p['bundle']} ({p['quantization']}, task={p['task']}, threads={p['threads']}): "
        f"{total:.2f} ms per decoded token over {p['decode_steps']} steps (prefill {p['prefill_ms']:.1f} ms)"
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
    ap.add_argument("--json", help="also write the profile as JSON here")
    a = ap.parse_args(argv)
    if a.tokens < 2:
        raise ConfigError(f"--tokens must be at least 2, got {a.tokens}")
    p = profile(a.bundle, None if a.no_task else (a.task or FIRST_TASK), a.tokens, a.prompt_tokens, a.threads)
    print(render(p))
    if a.json:
        Path(a.json).write_text(json.dumps(p, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from .common import run_main

    sys.exit(run_main(main))
