"""Kernel fusion with ONNX Runtime's transformer optimizer (offline, hardware-independent Python passes).

Attention is fused by construction (``build_graph(..., fused_attention=True)`` emits
``MultiHeadAttention`` with separate past/present key and value, our io contract; ORT's own GPT-2 attention
fusion packs the past into one tensor, so it stays off). The optimizer then fuses residual Add +
LayerNormalization into ``SkipLayerNormalization`` (the adapter's LayerNorm included) and the tanh-GELU
pattern plus its bias into ``FastGelu``. Adapter inputs and their identity defaults are untouched (checked).
"""

from __future__ import annotations

import logging

import onnx

from edgevlm.core import names
from edgevlm.core.errors import ExportError


def fuse_graph(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    """The fused graph; raises ExportError if fusion dropped an adapter input."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    opts = FusionOptions("gpt2")
    opts.enable_attention = False
    opt = optimize_model(
        model, model_type="gpt2", num_heads=cfg.n_head, hidden_size=cfg.n_embd, opt_level=0, optimization_options=opts
    )
    fused = opt.model
    if not any(o.domain == "com.microsoft" for o in fused.opset_import):
        fused.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    inputs = {i.name for i in fused.graph.input}
    inits = {t.name for t in fused.graph.initializer}
    lost = [n for n in names.adapter_names(cfg.n_layer) if n not in inputs or n not in inits]
    if lost:
        raise ExportError(f"fusion removed adapter inputs {lost[:3]}; export with fuse=False")
    return fused
