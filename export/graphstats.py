"""Deterministic cost counts of a bundle's graph: nodes (every node runs once per decode step) and the weight
bytes one decode step at batch 1 reads (the step's time is about bytes / bandwidth + a few microseconds per node).

    python -m edgevlm.export.graphstats [NAME=]BUNDLE_OR_GRAPH... [--bottleneck 100] [--json OUT]

Bytes per token: every initializer a node reads, once (a table read by both the LM head and the token lookup
counts once, in full), except lookup tables (``Gather`` / ``GatherBlockQuantized`` data and scales, the
rotary cos/sin caches), of which one row per token is read. The adapter's own bytes at a bottleneck are given
apart (its inputs' identity defaults are tiny); the key/value cache (context-dependent) is not counted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edgevlm.core import names

from .graph import n_layer_of, op_counts

GRAPH_LEVEL = ("len/", "embed/", "pos/", "mask/", "gqa/", "lm_head/", "adapter/columns", "model.norm", "rotary")
ROW_READ_OPS = {  # op -> the inputs it reads one row of per token (tables)
    "Gather": (0,),
    "GatherBlockQuantized": (0, 2),
    "RotaryEmbedding": (2, 3),
    "GroupQueryAttention": (7, 8),
}


def _bytes(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims, dtype=np.int64)) * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize


def bytes_per_token(model: onnx.ModelProto) -> int:
    """Weight bytes one batch-1 decode step reads (module doc); ``model`` may be loaded without external data."""
    inits = {t.name: t for t in model.graph.initializer}
    adapters = set(names.adapter_names(n_layer_of(model))) | {names.ADAPTER_COLUMNS}
    full, rows = set(), {}
    for n in model.graph.node:
        row_inputs = ROW_READ_OPS.get(n.op_type, ())
        for k, x in enumerate(n.input):
            if x not in inits or x in adapters:
                continue
            if k in row_inputs:
                rows[x] = _bytes(inits[x]) // max(1, inits[x].dims[0])
            else:
                full.add(x)
    return sum(_bytes(inits[x]) for x in full) + sum(v for x, v in rows.items() if x not in full)


def adapter_bytes(n_layer: int, n_embd: int, bottleneck: int) -> int:
    """fp32 bytes of one task's adapter weights at ``bottleneck`` (every layer's LN, down, up and biases)."""
    layer_inputs = [n for n in names.adapter_names(n_layer) if n != names.TASK_EMBEDDINGS]
    return 4 * sum(int(np.prod(names.adapter_shape(n, n_embd, bottleneck, 1))) for n in layer_inputs)


def stats(model: onnx.ModelProto, bottleneck: int = 100) -> dict:
    """Nodes (total, graph-level, per layer = the rest over the layers), weight bytes per token, op counts."""
    n_layer = n_layer_of(model)
    emb = next(i for i in model.graph.input if i.name == names.TASK_EMBEDDINGS)
    n_embd = emb.type.tensor_type.shape.dim[-1].dim_value
    total = len(model.graph.node)
    outside = sum(1 for n in model.graph.node if n.name.startswith(GRAPH_LEVEL))
    return {
        "n_layer": n_layer,
        "nodes": total,
        "graph_level_nodes": outside,
        "nodes_per_layer": (total - outside) / n_layer,
        "weight_bytes_per_token": bytes_per_token(model),
        f"adapter_bytes_per_token_at_bottleneck_{bottleneck}": adapter_bytes(n_layer, n_embd, bottleneck),
        "op_counts": op_counts(model),
    }


def _graph_file(p: Path) -> Path:
    return p / "backbone.onnx" if p.is_dir() else p


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graphs", nargs="+", help="bundle directories or .onnx files, each optionally NAME=PATH")
    ap.add_argument("--bottleneck", type=int, default=100)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    named = [g.split("=", 1) if "=" in g else (g, g) for g in args.graphs]
    out = {k: stats(onnx.load(_graph_file(Path(p)), load_external_data=False), args.bottleneck) for k, p in named}
    text = json.dumps(out, indent=2) + "\n"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
