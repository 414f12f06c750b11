"""The Llama graph's structure (packed projections, fused kernels) and that packing keeps Q4_1 blocks exactly; the
numerics against PyTorch are tests/test_llama_export.py's."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from edgevlm.core import names
from edgevlm.export import blockquant
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


def test_packed_weights_keep_q4_1_blocks_exactly(tiny_llama_dir):
    """Weights on a Q4_1 grid (a GGUF body) stay on it when packed: the int4 blocks of every packed MatMul
    reconstruct it exactly, column by column (concatenation along the output dim keeps each column's blocks)."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(tiny_llama_dir).eval()
    rng = np.random.default_rng(5)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("proj.weight"):  # [out, in]: Q4_1 blocks of 32 along in
                out, k = p.shape
                scale, low = rng.uniform(0.01, 0.05, (out, k // 32, 1)), rng.uniform(-0.4, 0.1, (out, k // 32, 1))
                q = rng.integers(0, 16, (out, k // 32, 32))
                q[..., 0], q[..., 1] = 0, 15  # each block's min and max on the grid's ends, as Q4_1 writes them
                p.copy_(torch.from_numpy((scale * q + low).reshape(out, k)))
    inits = {t.name: t for t in build_graph(hf).graph.initializer}
    packed = [n for n in inits if n.endswith(("qkv_proj.weight_t", "gate_up_proj.weight_t"))]
    assert len(packed) == 2 * hf.config.num_hidden_layers
    for n in packed:
        w = onnx.numpy_helper.to_array(inits[n])
        assert np.abs(blockquant.q4_blocks(w).dequantize(w.shape[0]) - w).max() < 1e-6, n
