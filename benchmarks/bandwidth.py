"""Memory bandwidth and the bound it puts on decode speed.

Decoding one token at batch 1 reads every weight matrix once, so
``tokens/s <= bandwidth / bytes_of_weights_read_per_token``. The bytes are
counted from the actual graph (or PyTorch module): every initializer a
MatMul/Gemm/quantized-MatMul reads in full; an embedding table (and its
scales) read only through a Gather contributes one row (negligible). KV-cache reads are left out
(small at these context lengths), so the bound is slightly optimistic.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ARRAY_MB = 512
# lookups that read one row per token: embeddings, and RotaryEmbedding's cos/sin caches at the positions
GATHERS = {"Gather", "GatherBlockQuantized", "RotaryEmbedding"}


def measure_bandwidth(mb: int = ARRAY_MB, repeats: int = 7, threads: int = 1) -> dict[str, float]:
    """Read bandwidth in GB/s: median of ``repeats`` numpy sums over an ``mb`` MB float32 array.

    ``threads > 1`` sums that many slices at once (numpy releases the GIL in
    the reduction): what an engine running that many threads can draw.
    """
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(mb * 2**20 // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    a.sum()  # fault the pages in before timing
    with ThreadPoolExecutor(threads) as pool:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(np.sum, parts)) if threads > 1 else a.sum()
            times.append(time.perf_counter() - t0)
    gbps = [a.nbytes / t / 1e9 for t in times]
    return {
        "gb_per_s": float(np.median(gbps)),
        "best_gb_per_s": float(max(gbps)),
        "array_mb": mb,
        "repeats": repeats,
        "threads": threads,
    }


def onnx_weight_bytes(paths: list[Path] | Path) -> dict[str, int]:
    """Bytes of initializers read per decoded token in ONNX graph(s): full tensors except Gather-only tables.

    Several paths (e.g. optimum's decoder files) are counted once each; pass
    only the graph actually run during decode.
    """
    import onnx

    paths = [paths] if isinstance(paths, (str, Path)) else paths
    total, gathered, n_init = 0, 0, 0
    for path in paths:
        model = onnx.load(str(path), load_external_data=False)
        users: dict[str, set[str]] = {}
        for node in _all_nodes(model.graph):
            for name in node.input:
                users.setdefault(name, set()).add(node.op_type)
        inputs = {i.name for i in model.graph.input}
        for init in model.graph.initializer:
            if init.name in inputs:  # an overridable default (adapter identity), not backbone weight
                continue
            nbytes = _initializer_bytes(init)
            n_init += 1
            if users.get(init.name) and users[init.name] <= GATHERS:
                gathered += nbytes
                continue
            total += nbytes
    return {"bytes_per_token": total, "gather_only_bytes": gathered, "initializers": n_init}


def _all_nodes(graph):
    """Nodes of a graph and its subgraphs (If/Loop branches, e.g. optimum's merged decoder)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g and attr.g.node:
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def _initializer_bytes(init) -> int:
    import onnx
    from onnx import helper

    n = int(np.prod(init.dims)) if len(init.dims) else 1
    if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (n + 1) // 2
    return n * np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize


def torch_weight_bytes(model) -> dict[str, int]:
    """Bytes a PyTorch causal LM reads per token: all parameters but its lookup tables (the architecture record's
    ``gather_only``: GPT-2's position table, an untied input embedding); a tied embedding is read once, as LM head."""
    from edgevlm.train.arch import for_model

    tables = for_model(model).gather_only(model)
    total = sum(p.numel() * p.element_size() for p in model.parameters())  # parameters() yields tied weights once
    gather = sum(p.numel() * p.element_size() for p in tables)
    return {
        "bytes_per_token": int(total - gather),
        "gather_only_bytes": int(gather),
        "initializers": len(list(model.parameters())),
    }


def bound(bandwidth_gbps: float, bytes_per_token: int) -> float:
    """Upper bound on decode tokens/s."""
    return bandwidth_gbps * 1e9 / bytes_per_token if bytes_per_token else float("inf")
