"""Memory bandwidth measured the way STREAM does: Copy (``b = a``) and Add (``c = a + b``) over arrays far
larger than the caches, split over as many threads as the engine uses, bytes counted as STREAM counts them
(Copy 2 arrays, Add 3 arrays per pass; write-allocate traffic not counted), best of ``repeats``.

A single numpy ``sum`` (:func:`.bandwidth.measure_bandwidth`) reads one stream on one core and under-reads
this VM's memory system (fp32 engines ran above that bound); STREAM's rate with the engine's thread count is
the bound an engine's weight reads can actually reach.

    python -m edgevlm.benchmarks.stream [--threads N] [--mb MB]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ARRAY_MB = 128  # per array: three arrays, far beyond any cache here


def _kernels(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> dict:
    """Each STREAM kernel on one slice: (function, arrays moved per element pass)."""
    return {"copy": (lambda: np.copyto(b, a), 2), "add": (lambda: np.add(a, b, out=c), 3)}


def stream(threads: int = 1, mb: int = ARRAY_MB, repeats: int = 7) -> dict[str, float]:
    """GB/s of STREAM Copy and Add with ``threads`` threads (best and median of ``repeats``)."""
    n = mb * 2**20 // 8
    arrays = [np.full(n, v, np.float64) for v in (1.0, 2.0, 0.0)]  # touched: pages faulted in before timing
    slices = [_kernels(*(x[s] for x in arrays)) for s in np.array_split(np.arange(n), threads)]
    out: dict[str, float] = {"threads": threads, "array_mb": mb, "repeats": repeats}
    with ThreadPoolExecutor(threads) as pool:
        for name in ("copy", "add"):
            rates = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                list(pool.map(lambda k, name=name: k[name][0](), slices))
                rates.append(slices[0][name][1] * n * 8 / (time.perf_counter() - t0) / 1e9)
            out[f"{name}_gb_per_s"] = max(rates)
            out[f"{name}_median_gb_per_s"] = float(np.median(rates))
    return out


def stream_record(report, size: str, threads: int) -> float:
    """:func:`stream` as a latency-suite record; returns the faster kernel's best rate (GB/s)."""
    r = stream(threads)
    report.add(
        f"[{size}] STREAM-style bandwidth, {threads} threads: copy {r['copy_gb_per_s']:.1f} GB/s, "
        f"add {r['add_gb_per_s']:.1f} GB/s (best of {r['repeats']}; 3 x {r['array_mb']} MB arrays)",
        kind="stream",
        size=size,
        **r,
    )
    return max(r["copy_gb_per_s"], r["add_gb_per_s"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgevlm.benchmarks.stream", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mb", type=int, default=ARRAY_MB, help="MB per array (three arrays)")
    a = p.parse_args(argv)
    r = stream(a.threads, a.mb)
    print(f"STREAM-style, {a.threads} threads: copy {r['copy_gb_per_s']:.1f} GB/s, add {r['add_gb_per_s']:.1f} GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
