"""The Llama family's decoder graph (Llama, SmolLM/SmolLM2, Mistral, Qwen2): RMSNorm, rotary positions,
grouped-query attention, SwiGLU, (tied) LM head, the paper's adapter after every decoder layer.

Rotary: the model's own cos/sin tables for positions 0 .. n_positions-1 (computed once by its HF rotary module,
so any static rope setting is baked in exactly) are gathered at the attention-mask positions, so left padding
is exact. The cache holds ``n_kv_head`` heads; heads ``h*g .. h*g+g-1`` share kv head ``h`` (HF's repeat_kv).
Attention with standard ops multiplies q viewed as [b, n_kv_head, g*s, D] with the cache (no kv copy); with
``fused_attention`` it is ONNX Runtime's ``MultiHeadAttention`` on the kv heads repeated to ``n_head``
(``GroupQueryAttention`` is not used: it takes no attention mask, so left-padded batches would not be exact).
RMSNorm is written as ``x / sqrt(mean(x^2) + eps) * w``, the pattern ONNX Runtime's session optimizer fuses
into ``SimplifiedLayerNormalization``.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgevlm.core import graphio, names
from edgevlm.core.errors import BackboneError

from . import base
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
    return y if lin.bias is None else b.op("Add", [y, b.weight(f"{name}.bias", lin.bias)], name)


def _rms_norm(b: Builder, x: str, norm, name: str, eps: float) -> str:
    """``x / sqrt(mean(x^2, -1) + eps) * weight``. [.., E] -> [.., E]"""
    ms = b.op("ReduceMean", [b.op("Mul", [x, x], name), b.ints("const.axes_last", [-1])], name, keepdims=1)
    rms = b.op("Sqrt", [b.op("Add", [ms, b.scalar(f"{name}.eps", eps, np.float32)], name)], name)
    return b.op("Mul", [b.op("Div", [x, rms], name), b.weight(f"{name}.weight", norm.weight)], name)


def _rotary_tables(b: Builder, model, seq: str, n_pos: int) -> tuple[str, str]:
    """(cos, sin) [b, s, 1, D] at the mask positions, gathered from the model's own tables [n_pos, D]."""
    import torch

    ids = torch.arange(n_pos)[None]  # [1, P]
    cos, sin = model.model.rotary_emb(torch.zeros(1, dtype=torch.float32), ids)  # [1, P, D] each
    pos, axis = base.position_ids(b, seq), b.ints("const.axes2", [2])
    return tuple(
        b.op("Unsqueeze", [b.op("Gather", [b.weight(f"rotary.{n}", t[0]), pos], "rope"), axis], "rope")
        for n, t in (("cos", cos), ("sin", sin))
    )


def _rotate(b: Builder, x: str, rope: tuple[str, str], head_dim: int, p: str) -> str:
    """``x * cos + rotate_half(x) * sin`` on [b, s, n, D] (rotate_half(x) = [-x2, x1])."""
    half = b.ints(f"const.rope_split{head_dim}", [head_dim // 2, head_dim // 2])
    x1, x2 = b.op("Split", [x, half], p, n_out=2, axis=-1)
    rot = b.op("Concat", [b.op("Neg", [x2], p), x1], p, axis=-1)
    return b.op("Add", [b.op("Mul", [x, rope[0]], p), b.op("Mul", [rot, rope[1]], p)], p)


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
    q = _rotate(b, _heads(b, _linear(b, x, attn.q_proj, f"{name}.q_proj"), s.n_head, d, p), rope, d, p)
    k = _rotate(b, _heads(b, _linear(b, x, attn.k_proj, f"{name}.k_proj"), s.n_kv_head, d, p), rope, d, p)
    v = _heads(b, _linear(b, x, attn.v_proj, f"{name}.v_proj"), s.n_kv_head, d, p)
    k = _cache(b, names.past_key(i), names.present_key(i), k, i, p)  # [b, Hkv, T, D]
    v = _cache(b, names.past_value(i), names.present_value(i), v, i, p)
    if fused:
        ctx = _fused_attention(b, q, k, v, mask[1], s, p)
    else:
        ctx = _grouped_attention(b, b.op("Transpose", [q], p, perm=[0, 2, 1, 3]), k, v, mask[0], s, p)
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


def _repeat_kv(b: Builder, x: str, s, p: str) -> str:
    """[b, Hkv, T, D] -> [b, H, T, D], each kv head repeated g = H / Hkv times in place."""
    g = s.n_head // s.n_kv_head
    if g == 1:
        return x
    x = b.op("Unsqueeze", [x, b.ints("const.axes2", [2])], p)  # [b, Hkv, 1, T, D]
    x = b.op("Expand", [x, b.ints(f"const.repeat{g}", [1, 1, g, 1, 1])], p)  # [b, Hkv, g, T, D]
    return b.op("Reshape", [x, b.ints(f"{p}.repeat_shape", [0, s.n_head, -1, s.head_dim])], p)


def _fused_attention(b: Builder, q: str, k: str, v: str, bias: str, s, p: str) -> str:
    """ONNX Runtime's ``MultiHeadAttention``: q [b, s, H*D], full-length k/v as [b, H, T, D], additive mask."""
    q3 = b.op("Reshape", [q, b.ints(f"{p}.merge", [0, 0, s.n_head * s.head_dim])], p)
    out = f"{p}/MultiHeadAttention_out"
    b.node(
        "MultiHeadAttention",
        [q3, _repeat_kv(b, k, s, p), _repeat_kv(b, v, s, p), "", "", bias],
        [out],
        name=f"{p}/MultiHeadAttention",
        domain="com.microsoft",
        num_heads=s.n_head,
        scale=s.head_dim**-0.5,
    )
    return out


def _mlp(b: Builder, x: str, mlp, name: str) -> str:
    """SwiGLU: down(silu(gate(x)) * up(x)). [b, s, E] -> [b, s, E]"""
    gate = _linear(b, x, mlp.gate_proj, f"{name}.gate_proj")
    act = b.op("Mul", [gate, b.op("Sigmoid", [gate], name)], name)
    return _linear(
        b, b.op("Mul", [act, _linear(b, x, mlp.up_proj, f"{name}.up_proj")], name), mlp.down_proj, f"{name}.down_proj"
    )


def _layer(b: Builder, h: str, layer, mask, rope, i: int, s, fused: bool) -> str:
    eps, name = s.norm_eps, f"model.layers.{i}"
    x = _rms_norm(b, h, layer.input_layernorm, f"{name}.input_layernorm", eps)
    h = b.op("Add", [h, _attention(b, x, layer.self_attn, mask, rope, i, s, fused)], f"layers.{i}")
    x = _rms_norm(b, h, layer.post_attention_layernorm, f"{name}.post_attention_layernorm", eps)
    h = b.op("Add", [h, _mlp(b, x, layer.mlp, f"{name}.mlp")], f"layers.{i}")
    return base.adapter(b, h, i, eps)


def build_graph(hf_model, fused_attention: bool = False) -> onnx.ModelProto:
    """The decoder graph of a (frozen, eval-mode) Llama-family causal LM; weights become fp32 initializers."""
    import torch

    cfg = hf_model.config
    check_config(cfg)
    s, b, m = _sizes(cfg), Builder(), hf_model.model
    with torch.no_grad():
        seq, total = base.lengths(b)
        h = base.embed(b, b.weight("model.embed_tokens.weight", m.embed_tokens.weight), s.vocab_size)  # [b, s, E]
        mask = base.causal_mask(b, seq, total, fused_attention)
        rope = _rotary_tables(b, hf_model, seq, s.n_positions)
        for i, layer in enumerate(m.layers):
            h = _layer(b, h, layer, mask, rope, i, s, fused_attention)
        base.lm_head(b, _rms_norm(b, h, m.norm, "model.norm", s.norm_eps), hf_model.lm_head.weight)
    return base.finish(b, decoder_io(cfg), s.n_embd, contrib=fused_attention, opset=OPSET)
