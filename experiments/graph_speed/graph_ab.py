"""Decode-step time of several bundles' graphs, interleaved in ONE process: paired A/B ratios for graph changes.

    python experiments/graph_speed/graph_ab.py --bundle before=B0 --bundle after=B1 [--threads-list 1,2]
        [--prompt 32] [--steps 8] [--rounds 30] [--out DIR]

Every bundle gets one ONNX Runtime session per thread count (the runtime's options: no spinning), the same
prompt prefilled once. A round runs, for every (thread count, bundle) in rotating order, ``steps`` cached decode
steps from that prefill (context ``prompt`` .. ``prompt + steps``) and records the wall and the process CPU time
per step. Per configuration: medians over rounds; per bundle and thread count: the median over rounds of its
wall time / the first bundle's wall time in the same round (the pair runs within a second, so load changes on a
shared machine mostly cancel). Graph runs only: no tokenizer or Python decoding loop.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgevlm.benchmarks.common import Report, base_parser, md_table, median, run_main, suite_dir
from edgevlm.core.errors import ConfigError

try:  # python -m experiments.graph_speed.graph_ab from the repository root
    from experiments.graph_speed.decode_speed import _bundles
except ModuleNotFoundError:  # python experiments/graph_speed/graph_ab.py: this folder is sys.path[0]
    from decode_speed import _bundles

SUITE = "graph_ab"
RESULTS = Path(__file__).resolve().parent / "results"


class _Graph:
    """A bundle's backbone session and its prefilled cache."""

    def __init__(self, root: Path, threads: int, prompt: int):
        from edgevlm.core import bundle
        from edgevlm.export import verify
        from edgevlm.runtime.session import open_session

        self.m = bundle.load_manifest(root, verify=False)
        self.sess, self.verify = open_session(root / self.m.backbone.file, threads), verify
        ids = np.random.default_rng(0).integers(10, self.m.backbone.vocab_size, (1, prompt))
        logits, self.past = verify.step(self.sess, ids, np.ones_like(ids), verify.empty_past(self.m.backbone))
        self.first = logits[:, -1:].argmax(-1)

    def decode(self, steps: int) -> tuple[float, float]:
        """(wall s, CPU s) per step over ``steps`` greedy cached steps from the prefill."""
        tok, past, n = self.first, self.past, past_len(self.past)
        w0, c0 = time.perf_counter(), time.process_time()
        for k in range(steps):
            logits, past = self.verify.step(self.sess, tok, np.ones((1, n + k + 1), np.int64), past)
            tok = logits[:, -1:].argmax(-1)
        return (time.perf_counter() - w0) / steps, (time.process_time() - c0) / steps


def past_len(past: list[np.ndarray]) -> int:
    return int(past[0].shape[2])


def measure(bundles: dict[str, Path], threads: list[int], prompt: int, steps: int, rounds: int) -> list[dict]:
    keys = [(t, label) for t in threads for label in bundles]
    graphs = {k: _Graph(bundles[k[1]], k[0], prompt) for k in keys}
    wall: dict = {k: [] for k in keys}
    cpu: dict = {k: [] for k in keys}
    for g in graphs.values():
        g.decode(2)  # warm-up
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            w, c = graphs[k].decode(steps)
            wall[k].append(w)
            cpu[k].append(c)
    first = next(iter(bundles))
    return [_row(k, wall[k], cpu[k], wall[(k[0], first)]) for k in keys]


def _row(key: tuple[int, str], wall: list[float], cpu: list[float], ref: list[float]) -> dict:
    return {
        "bundle": key[1],
        "threads": key[0],
        "step_ms": round(1e3 * median(wall), 2),
        "best_step_ms": round(1e3 * min(wall), 2),
        "cpu_ms": round(1e3 * median(cpu), 2),
        "ratio_to_first": round(median([w / r for w, r in zip(wall, ref)]), 3),
        "rounds_ms": [round(1e3 * w, 2) for w in wall],
    }


def main(argv=None) -> int:
    p = base_parser(SUITE, prog=f"python experiments/graph_speed/{SUITE}.py", results=RESULTS)
    p.add_argument("--bundle", action="append", default=[], help="LABEL=BUNDLE_DIR (repeatable; the first is A)")
    p.add_argument("--threads-list", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=30)
    a = p.parse_args(argv)
    bundles = _bundles(a.bundle)
    if len(bundles) < 2 or a.steps < 1 or a.rounds < 1:
        raise ConfigError("--bundle: give at least two LABEL=BUNDLE_DIR; --steps and --rounds at least 1")
    threads = [int(t) for t in a.threads_list.split(",")]
    report = Report(SUITE, max(threads), False)
    for r in measure(bundles, threads, a.prompt, a.steps, a.rounds):
        line = f"{r['bundle']} {r['threads']}t: {r['step_ms']} ms/step (cpu {r['cpu_ms']}), x{r['ratio_to_first']}"
        report.add(line, **r)
    cols = [("bundle", "bundle"), ("threads", "threads"), ("step_ms", "step ms"), ("best_step_ms", "best ms")]
    cols += [("cpu_ms", "CPU ms"), ("ratio_to_first", "time / first")]
    out = report.write(suite_dir(a.out or RESULTS, SUITE), md_table(report.records, cols))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
