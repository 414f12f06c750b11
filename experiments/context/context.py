"""Decode speed against context length: per-token time at a short and a long prompt, engines interleaved.

Each engine runs in its own worker (``edgevlm.benchmarks.worker``); one repetition times, for every context length C and
every engine in rotating order, an exact ``1 + n`` token generation and a 1-token one after a C-token
prompt; (difference) / n is the decode time per token at about C tokens of context. Medians of ``reps``.

    python experiments/context/context.py --engine edgevlm:int4:BUNDLE[:TASK] --engine llamacpp:Q4_0/passive:GGUF \
        [--contexts 32,960] [--new 16] [--reps 3] [--threads 2] [--busy N] [--out FILE.json]

``--busy N`` keeps N other processes computing (a pure-Python loop each, at normal priority) for the whole
measurement: the "busy machine" setting, where threads that spin waiting for work lose their cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from edgevlm.benchmarks.common import median
from edgevlm.benchmarks.worker import Worker
from edgevlm.core.config import atomic_write_text
from edgevlm.core.errors import ConfigError


def parse_engine(spec: str) -> tuple[str, str, str, str | None]:
    """``KIND:FMT:PATH[:TASK]`` -> (kind, fmt, path, task)."""
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise ConfigError(f"--engine {spec!r}: expected KIND:FMT:PATH[:TASK]")
    return parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None


def measure(engines: list[tuple], contexts: list[int], new: int, reps: int, threads: int) -> dict[str, dict]:
    """Engine label -> context -> median decode ms per token."""
    workers = [Worker(k, f, Path(p), threads, t) for k, f, p, t in engines]
    times: dict[str, dict[int, list[float]]] = {w.label: {c: [] for c in contexts} for w in workers}
    try:
        for w in workers:
            w.generate(contexts[-1], 2)  # warm-up at the longest context
        for rep in range(reps):
            for w in workers[rep % len(workers) :] + workers[: rep % len(workers)]:
                for c in contexts:
                    one = w.generate(c, 1)
                    times[w.label][c].append((w.generate(c, 1 + new) - one) / new)
    finally:
        for w in workers:
            w.close()
    return {k: {c: median(v) * 1e3 for c, v in per.items()} for k, per in times.items()}


@contextmanager
def busy(n: int):
    """``n`` background processes keeping a core each busy until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python experiments/context/context.py", description=__doc__.splitlines()[0])
    p.add_argument("--engine", action="append", required=True, help="KIND:FMT:PATH[:TASK] (repeatable)")
    p.add_argument("--contexts", default="32,960")
    p.add_argument("--new", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--busy", type=int, default=0, help="other processes kept computing meanwhile (default 0)")
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    contexts = [int(c) for c in a.contexts.split(",")]
    load0, t0 = os.getloadavg()[0], time.time()
    with busy(a.busy):
        res = measure([parse_engine(e) for e in a.engine], contexts, a.new, a.reps, a.threads)
    for label, per in res.items():
        ratio = per[contexts[-1]] / per[contexts[0]]
        cells = ", ".join(f"{c}: {ms:.2f} ms/token" for c, ms in per.items())
        print(f"{label}: {cells} ({ratio:.2f}x from {contexts[0]} to {contexts[-1]} tokens of context)")
    meta = {"argv": sys.argv, "busy": a.busy, "load_average": [load0, os.getloadavg()[0]], "seconds": time.time() - t0}
    if a.out:
        atomic_write_text(Path(a.out), json.dumps({**meta, "ms_per_token": res}, indent=2) + "\n")
    print(f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
