"""One adapter matrix, every candidate ONNX Runtime CPU kernel: time per M=1 call with the weight as a graph input.

    python experiments/adapter_cost/adapter_kernels.py [--k 768] [--n 100] [--threads 1,2] [--rounds 9]
        [--out FILE.json]

The weight is fed as an input (as an adapter file's parameter is), so no kernel can prepack it. "cold" cycles
through 128 distinct weights (40 MB at fp32: beyond the last-level cache, as in a decode step where the backbone's
weights stream through between two adapter calls), "hot" reuses 2. Medians of interleaved rounds, in microseconds
per call including ORT's per-run cost (the ``base`` row: the same graph with a 1-column weight). fp16 + Cast runs
at ORT_ENABLE_EXTENDED: ``fp16_session_at_enable_all`` says whether a session with all optimizations can even be
created (a subprocess; onnxruntime 1.23.2 crashed there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgevlm.benchmarks.common import median
from edgevlm.core.config import atomic_write_text

try:  # python -m experiments.adapter_cost.adapter_kernels from the repository root
    from experiments.adapter_cost.adapter_variants import int8_columns
except ModuleNotFoundError:  # python experiments/adapter_cost/adapter_kernels.py: this folder is sys.path[0]
    from adapter_variants import int8_columns

BLOCK = 32


def _nodes(k: int, n: int, kind: str) -> tuple[list, list]:
    """``kind``'s nodes computing ``y = x @ W`` and its weight inputs (name, ONNX dtype, dims)."""
    from onnx import TensorProto as T
    from onnx import helper as h

    ms, kb = "com.microsoft", -(-k // BLOCK)
    if kind == "fp32":
        return [h.make_node("MatMul", ["x", "W"], ["y"])], [("W", T.FLOAT, [k, "n"])]
    if kind == "fp32-transposed":
        return [h.make_node("FusedMatMul", ["x", "W"], ["y"], domain=ms, transB=1)], [("W", T.FLOAT, ["n", k])]
    if kind == "int8-dqmm":
        node = h.make_node("DynamicQuantizeMatMul", ["x", "W", "S"], ["y"], domain=ms)
        return [node], [("W", T.INT8, [k, "n"]), ("S", T.FLOAT, ["n"])]
    if kind == "int8-matmulnbits":
        node = h.make_node("MatMulNBits", ["x", "W", "S"], ["y"], domain=ms, K=k, N=n, bits=8, block_size=BLOCK)
        return [node], [("W", T.UINT8, [n, kb, BLOCK]), ("S", T.FLOAT, [n * kb])]
    cast = h.make_node("Cast", ["W"], ["Wf"], to=T.FLOAT)  # fp16-cast
    return [cast, h.make_node("MatMul", ["x", "Wf"], ["y"])], [("W", T.FLOAT16, [k, "n"])]


def graph(k: int, n: int, kind: str) -> bytes:
    """A graph computing ``x[1, 1, k] @ W[k, n]`` with ``W`` (in ``kind``'s form) as optional graph inputs."""
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes, ins = _nodes(k, n, kind)
    inputs = [h.make_tensor_value_info("x", T.FLOAT, ["b", "s", k])] + [h.make_tensor_value_info(*i) for i in ins]
    defaults = [_default(name, dtype, dims) for name, dtype, dims in ins]  # optional, as the adapter inputs are
    g = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=defaults)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m.SerializeToString()


def _default(name: str, dtype: int, dims: list):
    """A zero (identity) default initializer for an input, symbolic dims as 1."""
    from onnx import helper, numpy_helper

    shape = [d if isinstance(d, int) else 1 for d in dims]
    return numpy_helper.from_array(np.zeros(shape, helper.tensor_dtype_to_np_dtype(dtype)), name)


def feeds(w: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """The inputs ``kind``'s graph takes for the float weight ``w`` [k, n]."""
    if kind == "fp32":
        return {"W": w}
    if kind == "fp32-transposed":
        return {"W": np.ascontiguousarray(w.T)}
    if kind == "fp16-cast":
        return {"W": w.astype(np.float16)}
    if kind == "int8-dqmm":
        q, s = int8_columns(w)
        return {"W": q, "S": s}
    k, n = w.shape  # MatMulNBits: [n, k/32, 32] codes with zero point 128, one scale per block
    kb = -(-k // BLOCK)
    blocks = np.pad(w, ((0, kb * BLOCK - k), (0, 0))).T.reshape(n, kb, BLOCK)
    scale = np.maximum(np.abs(blocks).max(-1), 1e-12) / 127
    codes = np.clip(np.rint(blocks / scale[..., None]), -127, 127) + 128
    return {"W": codes.astype(np.uint8), "S": scale.reshape(-1).astype(np.float32)}


def session(model: bytes, threads: int, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = threads, 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the runtime
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


KINDS = ("fp32", "fp32-transposed", "int8-dqmm", "int8-matmulnbits", "fp16-cast")


def measure(k: int, n: int, threads: int, rounds: int) -> dict[str, float]:
    """``kind/cold|hot`` (and ``base``) -> median microseconds per call."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.02, (k, n)).astype(np.float32) for _ in range(128)]
    x = rng.normal(0, 1, (1, 1, k)).astype(np.float32)
    runs = {"base": (session(graph(k, 1, "fp32"), threads), [{"W": w[:, :1].copy()} for w in weights[:2]])}
    for kind in KINDS:
        level = "ORT_ENABLE_EXTENDED" if kind == "fp16-cast" else "ORT_ENABLE_ALL"
        s, f = session(graph(k, n, kind), threads, level), [feeds(w, kind) for w in weights]
        runs[f"{kind}/cold"], runs[f"{kind}/hot"] = (s, f), (s, f[:2])
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, (s, fs) in runs.items():
            calls = fs * (256 // len(fs))
            t0 = time.perf_counter()
            for f in calls:
                s.run(None, {"x": x, **f})
            times[key].append((time.perf_counter() - t0) / len(calls) * 1e6)
    return {key: median(v) for key, v in times.items()}


def fp16_session_at_enable_all(k: int, n: int) -> str:
    """Create an fp16 + Cast session at ORT_ENABLE_ALL in a subprocess: 'ok' or how it ended."""
    here = str(Path(__file__).resolve().parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); from adapter_kernels import graph, session; "
        f"session(graph({k}, {n}, 'fp16-cast'), 1); print('ok')"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return "ok" if p.returncode == 0 else f"exit code {p.returncode}" + (" (crashed)" if p.returncode < 0 else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python experiments/adapter_cost/adapter_kernels.py", description=__doc__.splitlines()[0]
    )
    p.add_argument("--k", type=int, default=768)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    load0, doc = os.getloadavg()[0], {"argv": sys.argv, "k": a.k, "n": a.n, "us_per_call": {}}
    for t in (int(x) for x in a.threads.split(",")):
        res = doc["us_per_call"][t] = measure(a.k, a.n, t, a.rounds)
        print(f"threads {t}: " + ", ".join(f"{key} {us:.1f}" for key, us in res.items()) + " us/call", flush=True)
    doc["fp16_session_at_enable_all"] = fp16_session_at_enable_all(a.k, a.n)
    doc["load_average"] = [load0, os.getloadavg()[0]]
    fp16 = doc["fp16_session_at_enable_all"]
    print(f"fp16 + Cast session at ORT_ENABLE_ALL: {fp16}; load average {doc['load_average']}")
    if a.out:
        atomic_write_text(Path(a.out), json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
