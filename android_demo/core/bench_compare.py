"""Decode speed and task switch of the Java core vs the Python runtime on the same bundle, in the same run.

    .venv/bin/python android_demo/core/bench_compare.py BUNDLE [--tokens 32] [--reps 15] [--threads 1]
    .venv/bin/python android_demo/core/bench_compare.py --build gpt2-small --quant int8 --work DIR   # then BUNDLE

``--build SIZE`` makes a bundle of a real-size random-weight backbone with two untrained non-identity adapters
(``edgevlm.benchmarks.fixtures``, needs torch) under ``--work`` and prints its path.

Runs the Java harness (io.edgevlm.core.Bench, built by ``mvn -DskipTests package``) and the same protocol on
``edgevlm.runtime.Runtime``, alternately (java, python, java, python) so machine noise hits both, and prints
one JSON line per engine and round plus the medians. Not a test: figures go into android_demo/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgevlm.runtime import Runtime

CORE = Path(__file__).resolve().parent
PROMPT = "name[Aromi], food[Chinese], area[city centre], near[The Bakery]"


def python_round(bundle: str, a: str, b: str, tokens: int, reps: int, threads: int) -> dict:
    t0 = time.perf_counter()
    rt = Runtime.load(bundle, threads=threads)
    load_ms = (time.perf_counter() - t0) * 1e3

    def timed(task: str, n: int) -> float:
        t = time.perf_counter()
        rt.generate(PROMPT, task, max_new_tokens=n, min_new_tokens=n if n > 1 else 0)
        return (time.perf_counter() - t) * 1e3

    for _ in range(40):  # the same warm-up as the Java harness (JIT there)
        timed(a, tokens)
        timed(b, 1)
    many, one, same, switched = [], [], [], []
    for r in range(reps):
        many.append(timed(a, tokens))
        one.append(timed(a, 1))
        x, y = (a, b) if r % 2 == 0 else (b, a)
        timed(x, 1)
        same.append(timed(x, 1))
        timed(x, 1)
        switched.append(timed(y, 1))
    per_token = (statistics.median(many) - statistics.median(one)) / (tokens - 1)
    return {
        "engine": "python",
        "bundle": bundle,
        "threads": threads,
        "tokens": tokens,
        "reps": reps,
        "load_ms": round(load_ms, 1),
        "decode_ms_per_token": round(per_token, 4),
        "tokens_per_s": round(1e3 / per_token, 1),
        "one_token_call_ms": round(statistics.median(one), 3),
        "task_switch_ms": round(statistics.median(switched) - statistics.median(same), 4),
    }


def java_round(bundle: str, a: str, b: str, tokens: int, reps: int, threads: int) -> dict:
    jar = CORE / "target" / "edgevlm-core.jar"
    if not jar.is_file():
        raise SystemExit(f"{jar} missing: run mvn -q -B -f {CORE / 'pom.xml'} -DskipTests package")
    out = subprocess.run(
        ["java", "-cp", str(jar), "io.edgevlm.core.Bench", bundle, a, b, str(tokens), str(reps), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def build(size: str, quant: str, work: Path) -> Path:
    """A bundle of ``size`` (random weights) with untrained nlg + mt adapters, built once under ``work``."""
    from edgevlm.benchmarks import fixtures

    ws = fixtures.Workspace(work)
    bb = fixtures.backbone_dir(ws, size)
    ads = ws.get(f"{size}-adapters", lambda p: fixtures.make_adapters(bb, p, {"nlg": None, "mt": None}))
    return ws.get(f"{size}-{quant}", lambda p: fixtures.export(bb, [ads / "nlg", ads / "mt"], quant, p))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?")
    p.add_argument("--build", metavar="SIZE", help="build a random-weight bundle of this size (e.g. gpt2-small)")
    p.add_argument("--quant", default="int8", choices=["fp32", "int8", "int4"])
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgevlm-bench-work")
    p.add_argument("--tasks", nargs=2, default=["nlg", "mt"])
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    if a.build:
        print(build(a.build, a.quant, a.work))
        return 0
    if a.bundle is None:
        p.error("BUNDLE is required (or --build SIZE)")
    rows = []
    for _ in range(a.rounds):
        for fn in (java_round, python_round):
            row = fn(a.bundle, *a.tasks, a.tokens, a.reps, a.threads)
            rows.append(row)
            print(json.dumps(row), flush=True)
    for eng in ("java", "python"):
        mine = [r for r in rows if r["engine"] == eng]
        print(
            f"{eng}: decode {statistics.median(r['tokens_per_s'] for r in mine):.1f} tok/s, "
            f"task switch {statistics.median(r['task_switch_ms'] for r in mine):+.3f} ms, "
            f"1-token call {statistics.median(r['one_token_call_ms'] for r in mine):.2f} ms, "
            f"load {statistics.median(r['load_ms'] for r in mine):.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
