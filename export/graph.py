"""The decoder graph of any supported backbone: the registry of architecture modules, by Hugging Face ``model_type``.

Each module in :mod:`export.arch` (on the shared :mod:`export.arch.base`) writes its architecture's graph op by
op from the HF model's weights and declares ``MODEL_TYPES``, ``FUSION`` (ONNX Runtime optimizer passes, or
None), ``check_config``, ``decoder_io`` and ``build_graph``. Everything outside those
modules asks this registry, so nothing else assumes GPT-2 or Llama. The graph's IO is
:func:`edgevlm.core.graphio.decoder_io`; adapter weights and task embeddings are optional inputs with identity
defaults, so a graph run without them is the plain backbone.
"""

from __future__ import annotations

from types import ModuleType

import onnx

from edgevlm.core import graphio, names
from edgevlm.core.errors import BackboneError

from .arch import gpt2, llama
from .arch.base import (  # noqa: F401  (public helpers re-exported for the writer, quantizer and tests)
    LM_HEAD_NODE,
    OPSET,
    TOKEN_GATHER,
    adapter_nodes,
    declared_io,
    graph_inputs,
    identity_defaults,
    n_layer_of,
    op_counts,
    optional_names,
)

ARCHITECTURES: dict[str, ModuleType] = {mt: mod for mod in (gpt2, llama) for mt in mod.MODEL_TYPES}


def architecture(cfg) -> ModuleType:
    """The graph module for an HF config (BackboneError naming the field when none is registered)."""
    mt = getattr(cfg, "model_type", None)
    if mt not in ARCHITECTURES:
        raise BackboneError(f"config.json: model_type={mt!r} cannot be exported (supported: {sorted(ARCHITECTURES)})")
    return ARCHITECTURES[mt]


def check_config(cfg) -> None:
    """Refuse configs the architecture's graph does not implement (one line naming the field)."""
    architecture(cfg).check_config(cfg)


def sizes(cfg):
    """edgevlm's sizes of an HF config (:class:`edgevlm.train.arch.Sizes`, the training side's record)."""
    from edgevlm.train.arch import for_model_type

    return for_model_type(getattr(cfg, "model_type", None), "config.json").sizes(cfg)


def decoder_io(cfg) -> graphio.DecoderIO:
    """The graph's declared IO for an HF config."""
    return architecture(cfg).decoder_io(cfg)


def build_graph(hf_model, fused_attention: bool = False, lora_targets: frozenset[str] = frozenset()) -> onnx.ModelProto:
    """The decoder graph of a frozen, eval-mode HF causal LM of a registered architecture.

    With ``fused_attention`` attention is ONNX Runtime's ``com.microsoft.GroupQueryAttention`` (the graph then
    needs ONNX Runtime), otherwise standard ONNX ops only.
    """
    return architecture(hf_model.config).build_graph(hf_model, fused_attention, frozenset(lora_targets))


def kv_cache_mode(model: onnx.ModelProto) -> str:
    """The manifest's ``backbone.kv_cache`` for a built graph: "shared" when every present key/value is written
    by a ``GroupQueryAttention`` node (which appends in place when past and present are one buffer), else
    "concat" (:data:`edgevlm.core.manifest.KV_CACHES`)."""
    n_layer = n_layer_of(model)
    writers = {o: n.op_type for n in model.graph.node for o in n.output}
    gqa = all(writers.get(p) == "GroupQueryAttention" for p in names.present_names(n_layer))
    return "shared" if gqa else "concat"
