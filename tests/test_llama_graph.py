"""The Llama graph's structure (packed projections, fused kernels); the numerics against PyTorch are
tests/test_llama_export.py's, packing and quantization tests/test_quant_graph.py's."""

from __future__ import annotations

import pytest

from edgevlm.core import names
from edgevlm.export.graph import build_graph, op_counts


@pytest.fixture(scope="module")
def hf(tiny_llama_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager").eval()


def test_layers_use_packed_projections_and_fused_kernels(hf):
    """Per layer: q/k/v and gate/up each one MatMul, rotary as RotaryEmbedding on q and k, the residual adds inside
    the skip norms; standard-op RMSNorm only where no residual precedes it (layer 0); fused: attention and the
    cache append in one GroupQueryAttention."""
    n_layer = hf.config.num_hidden_layers
    for fused in (False, True):
        ops = op_counts(build_graph(hf, fused_attention=fused))
        assert ops["com.microsoft.RotaryEmbedding"] == 2 * n_layer, ops
        assert ops["com.microsoft.SkipSimplifiedLayerNormalization"] == 2 * n_layer, ops  # + 1 post-attn, - layer 0
        assert ops["com.microsoft.SkipLayerNormalization"] == n_layer, ops  # residual + adapter LayerNorm
        assert ops["Pow"] == 1 and ops["Split"] == 2 * n_layer, ops  # Splits: qkv, gate_up
        assert ops.get("Expand", 0) == (1 if fused else 0), ops  # no repeat_kv; fused: GQA's seqlens_k, once
        if fused:  # cache append, head grouping and attention inside GroupQueryAttention: nothing copies the cache
            assert ops["com.microsoft.GroupQueryAttention"] == n_layer and "Concat" not in ops, ops
            assert "Transpose" not in ops and "Softmax" not in ops, ops
        model = build_graph(hf, fused_attention=fused)
        readers = {x: n.op_type for n in model.graph.node for x in n.input}
        for i in range(n_layer):  # the adapter's up bias is the next skip norm's bias input, not an Add of its own
            assert readers[names.adapter_name(i, "up.bias")] == "SkipSimplifiedLayerNormalization"
        weights = 4 * n_layer + n_layer * 2 + 1  # qkv o gate_up down, the adapter's two, the LM head
        assert ops["MatMul"] == weights + (0 if fused else 2 * n_layer), ops
