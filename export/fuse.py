"""Kernel fusion: ONNX Runtime's transformer optimizer passes named by the architecture (offline, hardware-independent).

Attention is fused by construction (``build_graph(..., fused_attention=True)`` emits ``GroupQueryAttention``
(GPT-2 and Llama) with separate past/present key and value, our IO contract; ORT's own
attention fusions pack the past into one tensor, so they stay off). An architecture's ``FUSION`` names the
optimizer model type whose remaining passes run (GPT-2: residual Add + LayerNorm -> ``SkipLayerNormalization``,
tanh-GELU -> ``FastGelu``); None runs none. Adapter inputs and their identity defaults must come through
untouched (checked).
"""

from __future__ import annotations

import logging

import onnx

from edgevlm.core.errors import ExportError

from .graph import architecture, optional_names, sizes


def fuse_graph(model: onnx.ModelProto, cfg) -> onnx.ModelProto:
    """The fused graph of ``model`` (built from HF config ``cfg``); ExportError if fusion dropped an adapter input."""
    kind = architecture(cfg).FUSION
    fused = model if kind is None else _optimize(model, kind, cfg)
    if not any(o.domain == "com.microsoft" for o in fused.opset_import):
        fused.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    inputs = {i.name for i in fused.graph.input}
    inits = {t.name for t in fused.graph.initializer}
    lost = [n for n in optional_names(sizes(cfg).n_layer) if n not in inputs or n not in inits]
    if lost:
        raise ExportError(f"fusion removed adapter inputs {lost[:3]}; export with fuse=False")
    return fused


def _optimize(model: onnx.ModelProto, kind: str, cfg) -> onnx.ModelProto:
    """ORT's optimizer for model type ``kind`` with attention fusion off."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    opts = FusionOptions(kind)
    opts.enable_attention = False
    s = sizes(cfg)
    opt = optimize_model(
        model, model_type=kind, num_heads=s.n_head, hidden_size=s.n_embd, opt_level=0, optimization_options=opts
    )
    return opt.model
