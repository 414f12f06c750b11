"""Decode tokens/s of given bundles at several thread counts: one worker process per (bundle, threads), timed
interleaved (each repetition runs every configuration once, in rotating order), medians reported.

Decode speed is (time for N new tokens - time for 1) / (N - 1) after a P-token prompt, as in the latency suite;
the load average at start and end and the command go into the results, since this machine is shared.

    python experiments/graph_speed/decode_speed.py --bundle fp32=B32 --bundle int4=B4 [--task nlg] [--threads 1,2]
        [--prompt 32] [--new 128] [--reps 3] [--out DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

from edgevlm.benchmarks.common import Report, base_parser, md_table, median, run_main, suite_dir
from edgevlm.benchmarks.worker import Worker
from edgevlm.core.errors import ConfigError

SUITE = "decode_speed"
RESULTS = Path(__file__).resolve().parent / "results"


def _bundles(specs: list[str]) -> dict[str, Path]:
    out = {}
    for s in specs:
        label, sep, path = s.partition("=")
        if not sep or not label or not Path(path).is_dir():
            raise ConfigError(f"--bundle {s!r}: expected LABEL=BUNDLE_DIR with an existing directory")
        out[label] = Path(path)
    return out


def measure(bundles: dict[str, Path], threads: list[int], task, prompt: int, new: int, reps: int) -> list[dict]:
    """Per (label, threads): the decode tokens/s of every repetition (rotating order), and their median."""
    keys = [(label, t) for t in threads for label in bundles]
    workers = {k: Worker("edgevlm", k[0], bundles[k[0]], k[1], task) for k in keys}
    rates: dict[tuple, list[float]] = {k: [] for k in keys}
    try:
        for w in workers.values():
            w.generate(prompt, 4)  # warm-up
        for r in range(reps):
            for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
                one = workers[k].generate(prompt, 1)
                many = workers[k].generate(prompt, new)
                rates[k].append((new - 1) / (many - one))
                time.sleep(0.05)
    finally:
        for w in workers.values():
            w.close()
    return [
        {"bundle": k[0], "threads": k[1], "tokens_per_s": median(v), "reps": [round(x, 2) for x in v]}
        for k, v in rates.items()
    ]


def main(argv=None) -> int:
    p = base_parser(SUITE, prog=f"python experiments/graph_speed/{SUITE}.py", results=RESULTS)
    p.add_argument("--bundle", action="append", default=[], help="LABEL=BUNDLE_DIR (repeatable)")
    p.add_argument("--task", help="task to run (default: the plain backbone)")
    p.add_argument("--threads-list", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args(argv)
    bundles = _bundles(a.bundle)
    if not bundles:
        raise ConfigError("--bundle: give at least one LABEL=BUNDLE_DIR")
    threads = [int(t) for t in a.threads_list.split(",")]
    report = Report(SUITE, max(threads), False)
    rows = measure(bundles, threads, a.task, a.prompt, a.new, a.reps)
    for r in rows:
        report.add(f"{r['bundle']} {r['threads']} thread(s): {r['tokens_per_s']:.1f} tok/s {r['reps']}", **r)
    table = md_table(rows, [("bundle", "bundle"), ("threads", "threads"), ("tokens_per_s", "decode tok/s")])
    out = report.write(suite_dir(a.out or RESULTS, SUITE), table)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
