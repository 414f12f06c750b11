"""Cold start and peak memory of engine configurations, each measured in a fresh process.

``python -m edgevlm.benchmarks.probe SPEC_JSON`` imports the engines' libraries,
loads every engine listed (N of them = N models resident at once), decodes a
few tokens with each, and prints ``PROBE_JSON {...}``: import and load seconds
and the process's peak RSS (``VmHWM``, which a fresh ``exec`` resets, unlike
``ru_maxrss``). :func:`run_probe` is the parent side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgevlm.core.errors import EdgeVLMError

MARK = "PROBE_JSON "


def vm_kb(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmHWM, VmRSS) in kB; 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _import(kinds: set[str]) -> None:
    if kinds == {"ortgenai"}:  # its own environment (no edgevlm runtime there)
        import onnxruntime_genai  # noqa: F401

        return
    import edgevlm.runtime  # noqa: F401  (the bundle engine)

    if "pytorch" in kinds or "optimum" in kinds:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    if "optimum" in kinds:
        import optimum.onnxruntime  # noqa: F401
    if "llamacpp" in kinds:
        import llama_cpp  # noqa: F401


def probe(spec: dict) -> dict:
    """Run one spec in this process: {"engines": [{kind, fmt, path, task}], "threads", "gen_tokens", "add_tasks"}."""
    from .peers import make_engine as Engine

    t0 = time.perf_counter()
    _import({e["kind"] for e in spec["engines"]})
    import_s = time.perf_counter() - t0
    rss_imported = vm_kb("VmRSS")
    engines = [Engine(e["kind"], e["fmt"], Path(e["path"]), spec["threads"], e.get("task")) for e in spec["engines"]]
    loads = []
    for eng in engines:
        t = time.perf_counter()
        eng.load()
        for adapter in spec.get("add_tasks", []):
            eng.model.add_task(adapter)
        loads.append(time.perf_counter() - t)
    rss_loaded = vm_kb("VmRSS")
    first = []
    for eng in engines:
        prompt = eng.prompt(spec.get("prompt_tokens", 16))
        t = time.perf_counter()
        eng.generate(prompt, spec.get("gen_tokens", 4))
        first.append(time.perf_counter() - t)
    return {
        "import_s": import_s,
        "load_s": loads,
        "first_generate_s": first,
        "rss_after_import_mb": rss_imported / 1024,
        "rss_after_load_mb": rss_loaded / 1024,
        "peak_rss_mb": vm_kb("VmHWM") / 1024,
        "torch_imported": "torch" in sys.modules,
    }


def run_probe(spec: dict, repeats: int = 1, timeout: float = 900) -> dict:
    """Run ``spec`` in ``repeats`` fresh Python processes; medians of the measurements (all runs under ``samples``).

    Peak RSS of one configuration varies between processes (ORT's load-time allocations), hence repeats.
    """
    runs = [_run_once(spec, timeout) for _ in range(repeats)]
    out = {k: _median([r[k] for r in runs]) for k in runs[0] if k != "torch_imported"}
    return {**out, "torch_imported": any(r["torch_imported"] for r in runs), "samples": runs}


def _median(values: list):
    from statistics import median

    if isinstance(values[0], list):
        return [median(col) for col in zip(*values)]
    return median(values)


def _run_once(spec: dict, timeout: float) -> dict:
    from .ortgenai import python_for

    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    kinds = {e["kind"] for e in spec["engines"]}
    python = python_for(kinds.pop() if len(kinds) == 1 else "")  # a peer's own environment, else this one
    proc = subprocess.run(
        [python, "-m", "edgevlm.benchmarks.probe", json.dumps(spec, default=str)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    raise EdgeVLMError(f"memory probe failed (exit {proc.returncode}): {' | '.join(tail)}")


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    argv = sys.argv[1:] if argv is None else argv
    print(MARK + json.dumps(probe(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
