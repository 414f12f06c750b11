"""The Llama family's decoder graph (Llama, SmolLM/SmolLM2, Mistral, Qwen2): RMSNorm, rotary positions,
grouped-query attention, SwiGLU, (tied) LM head, the paper's adapter after every decoder layer.

Few kernels per layer (a decode step at batch 1 pays for every node it runs):
q/k/v are one MatMul on their weights concatenated along the output dim, then a Split, and so are gate/up
(every output column keeps its own 32-row blocks, so int4 keeps a Q4_1 GGUF's blocks exactly). Rotary is ONNX
Runtime's ``RotaryEmbedding`` on the model's own cos/sin tables (computed once by its HF rotary module, so any
static rope setting is baked in exactly) at positions taken from the attention mask, so left padding is exact.
Residual adds run inside the norms: ``SkipSimplifiedLayerNormalization`` (residual + RMSNorm) and the adapter's
``SkipLayerNormalization`` (residual + its LayerNorm); the one RMSNorm with no residual before it (layer 0) is
written ``x / sqrt(mean(x^2) + eps) * w`` with ``Pow``, the pattern the session optimizer fuses.
The cache holds ``n_kv_head`` heads; heads ``h*g .. h*g+g-1`` share kv head ``h`` (HF's repeat_kv). Attention
with standard ops multiplies q viewed as [b, n_kv_head, g*s, D] with the cache; with ``fused_attention`` it is
ONNX Runtime's ``GroupQueryAttention``: cache append, grouped heads and causal attention in one kernel reading
q/k/v as the projections give them (no reshapes, no kv copy outside the kernel), with the padding mask as its
``attention_bias`` so left-padded batches stay exact.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgevlm.core import graphio, names
from edgevlm.core.errors import BackboneError

from . import base, lora
from .base import FLOAT_MIN, Builder

MODEL_TYPES = ("llama", "mistral", "qwen2")
OPSET = 18  # ReduceMean with axes as an input: the form every later opset (int4's quantizer raises it) reads
FUSION = None  # no offline optimizer pass: fused attention by construction, the rest by the session optimizer


def _sizes(cfg):
    from edgevlm.train.arch import for_model_type  # the training side's record: one place maps HF config fields

    return for_model_type(cfg.model_type, "config.json").sizes(cfg)


def check_config(cfg) -> None:
    """Refuse settings this graph does not implement (one line naming the field): the training-side checks
    (sliding window, rope scaling, activation, biases) plus what the graph itself needs."""
    from edgevlm.train.arch import for_model_type

    for_model_type(cfg.model_type, "config.json").check_config(cfg.to_dict(), "config.json")
    if getattr(cfg, "pretraining_tp", 1) not in (None, 1):
        raise BackboneError(f"config.json: pretraining_tp={cfg.pretraining_tp} is not supported (expected 1)")


def decoder_io(cfg) -> graphio.DecoderIO:
    s = _sizes(cfg)
    return graphio.decoder_io(s.n_layer, s.n_kv_head, s.head_dim, s.n_embd, s.vocab_size)


def _linear(b: Builder, x: str, lin, name: str) -> str:
    """``x @ W^T (+ bias)`` for a torch Linear (weight [out, in], stored pre-transposed [in, out])."""
    y = b.op("MatMul", [x, b.const(f"{name}.weight_t", lin.weight.detach().float().numpy().T.copy())], name)
    y = y if lin.bias is None else b.op("Add", [y, b.weight(f"{name}.bias", lin.bias)], name)
    return lora.delta(b, x, y, name, lin.in_features, lin.out_features)


def _packed_linear(b: Builder, x: str, lins: list, name: str) -> list[str]:
    """Several torch Linears reading the same ``x`` as ONE MatMul on their weights concatenated along the output
    dim ([in, sum(out)], so every output column keeps its own blocks for the quantizers), then a Split."""
    w = np.concatenate([lin.weight.detach().float().numpy().T for lin in lins], axis=1)
    y = b.op("MatMul", [x, b.const(f"{name}.weight_t", w)], name)
    if any(lin.bias is not None for lin in lins):
        zeros = [np.zeros(lin.out_features, np.float32) for lin in lins]
        bias = [z if lin.bias is None else lin.bias.detach().float().numpy() for z, lin in zip(zeros, lins)]
        y = b.op("Add", [y, b.const(f"{name}.bias", np.concatenate(bias))], name)
    y = lora.delta(b, x, y, name, w.shape[0], w.shape[1])  # packed LoRA: B block-diagonal (export.lora)
    widths = b.ints(f"{name}.split", [lin.out_features for lin in lins])
    return b.op("Split", [y, widths], name, n_out=len(lins), axis=-1)


def _rms_norm(b: Builder, x: str, norm, name: str, eps: float) -> str:
    """``x / sqrt(mean(x^2, -1) + eps) * weight``. [.., E] -> [.., E]"""
    sq = b.op("Pow", [x, b.scalar("const.two", 2.0, np.float32)], name)  # Pow, not Mul: what ORT's fusion matches
    ms = b.op("ReduceMean", [sq, b.ints("const.axes_last", [-1])], name, keepdims=1)
    rms = b.op("Sqrt", [b.op("Add", [ms, b.scalar(f"{name}.eps", eps, np.float32)], name)], name)
    return b.op("Mul", [b.op("Div", [x, rms], name), b.weight(f"{name}.weight", norm.weight)], name)


def _skip_rms_norm(b: Builder, h: str, skip: str, norm, name: str, eps: float, bias: str = "") -> tuple[str, str]:
    """(RMSNorm(h + skip + bias), h + skip + bias) as ONNX Runtime's ``SkipSimplifiedLayerNormalization``: the
    residual add and the norm in one kernel (``bias`` [E]: optional). [b, s, E] -> ([b, s, E], [b, s, E])"""
    out, total = f"{name}/SkipSimplifiedLayerNormalization_out0", f"{name}/SkipSimplifiedLayerNormalization_out3"
    ins = [h, skip, b.weight(f"{name}.weight", norm.weight)] + ([bias] if bias else [])
    b.node("SkipSimplifiedLayerNormalization", ins, [out, "", "", total],
           name=f"{name}/SkipSimplifiedLayerNormalization", domain="com.microsoft", epsilon=eps)  # fmt: skip
    return out, total


def _rotary_tables(b: Builder, model, seq: str, n_pos: int) -> tuple[str, str, str]:
    """(position ids [b, s] at the mask positions, cos cache, sin cache [n_pos, D/2]): the model's own tables.

    HF's tables are ``cat(freqs, freqs)`` along D, so their first half is what ``RotaryEmbedding`` takes."""
    import torch

    ids = torch.arange(n_pos)[None]  # [1, P]
    cos, sin = model.model.rotary_emb(torch.zeros(1, dtype=torch.float32), ids)  # [1, P, D] each
    half = cos.shape[-1] // 2
    if not (torch.equal(cos[..., :half], cos[..., half:]) and torch.equal(sin[..., :half], sin[..., half:])):
        raise BackboneError("rotary tables: expected cat(freqs, freqs) halves (rotate_half rotary embedding)")
    caches = [b.weight(f"rotary.{n}", t[0, :, :half]) for n, t in (("cos", cos), ("sin", sin))]
    return base.position_ids(b, seq), *caches


def _rotate(b: Builder, x: str, rope: tuple[str, str, str], n_head: int) -> str:
    """ONNX Runtime's ``RotaryEmbedding`` (rotate_half form) on [b, s, n*D] at the given positions."""
    out = f"{x}_rotary"
    b.node("RotaryEmbedding", [x, *rope], [out], name=f"{x}/RotaryEmbedding", domain="com.microsoft",
           num_heads=n_head, interleaved=0)  # fmt: skip
    return out


def _heads(b: Builder, x: str, n: int, d: int, p: str) -> str:
    """[b, s, n*D] -> [b, s, n, D]"""
    return b.op("Reshape", [x, b.ints(f"const.heads{n}x{d}", [0, 0, n, d])], p)


def _cache(b: Builder, past: str, present: str, x: str, i: int, p: str) -> str:
    """Concatenate the past with this run's [b, s, Hkv, D] key or value into the named present [b, Hkv, T, D]."""
    b.node("Concat", [past, b.op("Transpose", [x], p, perm=[0, 2, 1, 3])], [present], name=f"{p}/{present}", axis=2)
    return present


def _attention(b: Builder, x: str, attn, mask: tuple[str, str], rope, i: int, s, fused: bool) -> str:
    """Grouped-query self-attention with the past; writes present.{i}.key/value. [b, s, E] -> [b, s, E]"""
    p, d, name = f"layers.{i}.attn", s.head_dim, f"model.layers.{i}.self_attn"
    q, k, v = _packed_linear(b, x, [attn.q_proj, attn.k_proj, attn.v_proj], f"{name}.qkv_proj")
    q, k = _rotate(b, q, rope, s.n_head), _rotate(b, k, rope, s.n_kv_head)  # [b, s, n*D]
    if fused:
        ctx = _gqa(b, q, k, v, mask, i, s, p)
    else:
        k = _cache(b, names.past_key(i), names.present_key(i), _heads(b, k, s.n_kv_head, d, p), i, p)  # [b, Hkv, T, D]
        v = _cache(b, names.past_value(i), names.present_value(i), _heads(b, v, s.n_kv_head, d, p), i, p)
        q = b.op("Transpose", [_heads(b, q, s.n_head, d, p)], p, perm=[0, 2, 1, 3])
        ctx = _grouped_attention(b, q, k, v, mask[0], s, p)
    return _linear(b, ctx, attn.o_proj, f"{name}.o_proj")


def _grouped_attention(b: Builder, q: str, k: str, v: str, allowed: str, s, p: str) -> str:
    """softmax(q k^T * D^-0.5, masked) v with standard ops. q [b, H, s, D], k/v [b, Hkv, T, D] -> [b, s, H*D]"""
    h, hkv, d = s.n_head, s.n_kv_head, s.head_dim
    grouped, per_head = b.ints(f"{p}.grouped", [0, hkv, -1, 0]), b.ints(f"{p}.per_head", [0, h, -1, 0])
    scores = b.op("MatMul", [b.op("Reshape", [q, grouped], p), b.op("Transpose", [k], p, perm=[0, 1, 3, 2])], p)
    scores = b.op("Mul", [scores, b.scalar(f"{p}.scale", d**-0.5, np.float32)], p)  # [b, Hkv, g*s, T]
    scores = b.op("Reshape", [scores, per_head], p)  # [b, H, s, T]
    scores = b.op("Where", [allowed, scores, b.scalar("const.fmin", FLOAT_MIN, np.float32)], p)
    probs = b.op("Reshape", [b.op("Softmax", [scores], p, axis=-1), grouped], p)  # [b, Hkv, g*s, T]
    ctx = b.op("Reshape", [b.op("MatMul", [probs, v], p), per_head], p)  # [b, H, s, D]
    return b.op("Reshape", [b.op("Transpose", [ctx], p, perm=[0, 2, 1, 3]), b.ints(f"{p}.merge", [0, 0, h * d])], p)


def _gqa(b: Builder, q: str, k: str, v: str, mask: tuple, i: int, s, p: str) -> str:
    """ONNX Runtime's ``GroupQueryAttention``: the past and this run's k/v [b, s, Hkv*D] into the presents
    [b, Hkv, T, D] and causal attention of the H query heads over the Hkv kv heads (HF's repeat_kv grouping, no
    copy) in one kernel; ``mask`` = (_, the padding + causal bias [b, 1, s, T], :func:`base.gqa_lengths`): the bias
    makes left padding exact. Rotary stays outside (``RotaryEmbedding`` at the mask's positions): the kernel's own
    (``do_rotary``, ONNX Runtime 1.23.2 CPU) rotates a first prompt at its column index, ignoring ``position_ids``,
    and a decode step at ``position_ids``; no position rule fits both the runtime's left-padded batch prefill
    (keys written at column positions) and its continuous-batching merges (rows prefilled alone, then
    left-padded: keys at their own positions). q [b, s, H*D] -> [b, s, H*D]"""
    out = f"{p}/GroupQueryAttention_out"
    ins = [q, k, v, names.past_key(i), names.past_value(i), *mask[2], "", "", "", mask[1]]
    b.node("GroupQueryAttention", ins, [out, names.present_key(i), names.present_value(i)],
           name=f"{p}/GroupQueryAttention", domain="com.microsoft", num_heads=s.n_head, kv_num_heads=s.n_kv_head,
           scale=s.head_dim**-0.5)  # fmt: skip
    return out


def _mlp(b: Builder, x: str, mlp, name: str) -> str:
    """SwiGLU: down(silu(gate(x)) * up(x)). [b, s, E] -> [b, s, E]"""
    gate, up = _packed_linear(b, x, [mlp.gate_proj, mlp.up_proj], f"{name}.gate_up_proj")
    act = b.op("Mul", [gate, b.op("Sigmoid", [gate], name)], name)
    return _linear(b, b.op("Mul", [act, up], name), mlp.down_proj, f"{name}.down_proj")


def _layer(b: Builder, h: tuple, layer, mask, rope, i: int, s, fused: bool) -> tuple[str, str, str]:
    """One decoder layer and its adapter on the residual stream ``h`` = (value, pending delta or None, pending
    bias or ""): the adds are left to the next skip norm. -> (value, the adapter's delta, its up bias)"""
    eps, name = s.norm_eps, f"model.layers.{i}"
    x, h = _norm(b, h, layer.input_layernorm, f"{name}.input_layernorm", eps)
    attn = _attention(b, x, layer.self_attn, mask, rope, i, s, fused)
    x, h = _skip_rms_norm(b, h, attn, layer.post_attention_layernorm, f"{name}.post_attention_layernorm", eps)
    return base.skip_adapter(b, h, _mlp(b, x, layer.mlp, f"{name}.mlp"), i, eps)


def _norm(b: Builder, h: tuple, norm, name: str, eps: float) -> tuple[str, str]:
    """(RMSNorm of the stream, the stream's value) for ``h`` = (value, pending delta or None, pending bias)."""
    if h[1] is None:
        return _rms_norm(b, h[0], norm, name, eps), h[0]
    return _skip_rms_norm(b, h[0], h[1], norm, name, eps, h[2])


def build_graph(hf_model, fused_attention: bool = False, lora_targets: frozenset[str] = frozenset()) -> onnx.ModelProto:
    """The decoder graph of a (frozen, eval-mode) Llama-family causal LM; weights become fp32 initializers; LoRA
    inputs on the projections named in ``lora_targets`` (:mod:`export.arch.lora`)."""
    import torch

    cfg = hf_model.config
    check_config(cfg)
    s, b, m = _sizes(cfg), Builder(lora_targets), hf_model.model
    with torch.no_grad():
        seq, total = base.lengths(b)
        h = base.embed(b, b.weight("model.embed_tokens.weight", m.embed_tokens.weight), s.vocab_size)  # [b, s, E]
        mask = base.causal_mask(b, seq, total, fused_attention)
        mask = (*mask, base.gqa_lengths(b, total)) if fused_attention else mask
        rope = _rotary_tables(b, hf_model, seq, s.n_positions)
        h = (h, None, "")
        for i, layer in enumerate(m.layers):
            h = _layer(b, h, layer, mask, rope, i, s, fused_attention)
        base.lm_head(b, _norm(b, h, m.norm, "model.norm", s.norm_eps)[0], hf_model.lm_head.weight)
    return base.finish(b, decoder_io(cfg), s.n_embd, contrib=True, opset=OPSET)  # RotaryEmbedding: com.microsoft
