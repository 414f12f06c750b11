"""GPT-2's decoder graph: learned positions, LayerNorm, fused QKV (HF Conv1D, weights already [in, out]), GELU.

Every linear layer is a ``MatMul`` with an initializer weight. With ``fused_attention`` each layer's attention
is ONNX Runtime's ``com.microsoft.GroupQueryAttention`` on the packed QKV (same inputs/outputs; the cache append
inside the kernel), otherwise standard ONNX ops;
:data:`FUSION` names ONNX Runtime's optimizer passes the exporter's fuse step runs on this graph.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from edgevlm.core import graphio, names
from edgevlm.core.errors import BackboneError

from . import base, lora
from .base import FLOAT_MIN, Builder

MODEL_TYPES = ("gpt2",)
FUSION = "gpt2"  # onnxruntime.transformers optimizer model type (SkipLayerNormalization, FastGelu)
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
ACTIVATIONS = TANH_GELU + ("gelu", "relu")


def check_config(cfg) -> None:
    """Refuse GPT-2 variants this graph does not implement (one line naming the field)."""
    if cfg.activation_function not in ACTIVATIONS:
        raise BackboneError(
            f"config.json: activation_function={cfg.activation_function!r} is not supported "
            f"(expected one of {ACTIVATIONS})"
        )
    if getattr(cfg, "add_cross_attention", False):
        raise BackboneError("config.json: add_cross_attention=true is not supported (decoder-only GPT-2 expected)")
    if cfg.n_embd % cfg.n_head:
        raise BackboneError(f"config.json: n_embd={cfg.n_embd} is not divisible by n_head={cfg.n_head}")


def decoder_io(cfg) -> graphio.DecoderIO:
    """The graph's declared IO for a GPT-2 config: key/value heads = heads."""
    return graphio.decoder_io(cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.n_embd, cfg.vocab_size)


def _positions(b: Builder, tr, seq: str) -> str:
    """Learned position embeddings at the mask-derived positions. -> [b, s, E]"""
    return b.op("Gather", [b.weight("transformer.wpe.weight", tr.wpe.weight), base.position_ids(b, seq)], "pos")


def _layer_norm(b: Builder, x: str, ln, name: str, eps: float) -> str:
    return base.layer_norm(b, x, b.weight(f"{name}.weight", ln.weight), b.weight(f"{name}.bias", ln.bias), name, eps)


def _linear(b: Builder, x: str, conv, name: str) -> str:
    """``x @ W + b`` for an HF Conv1D (weight already [in, out]), plus its LoRA when one targets it."""
    y = b.op(
        "Add",
        [b.op("MatMul", [x, b.weight(f"{name}.weight", conv.weight)], name), b.weight(f"{name}.bias", conv.bias)],
        name,
    )
    return lora.delta(b, x, y, name, *conv.weight.shape)


def _gelu(b: Builder, x: str, kind: str, p: str) -> str:
    if kind == "relu":
        return b.op("Relu", [x], p)
    if kind == "gelu":  # 0.5 x (1 + erf(x / sqrt 2))
        erf = b.op("Erf", [b.op("Div", [x, b.scalar(f"{p}.sqrt2", math.sqrt(2.0), np.float32)], p)], p)
        return b.op(
            "Mul",
            [
                b.op("Mul", [x, b.scalar(f"{p}.half", 0.5, np.float32)], p),
                b.op("Add", [erf, b.scalar(f"{p}.one", 1.0, np.float32)], p),
            ],
            p,
        )
    cube = b.op("Pow", [x, b.scalar(f"{p}.three", 3.0, np.float32)], p)  # 0.5 x (1 + tanh(c (x + 0.044715 x^3)))
    inner = b.op("Add", [x, b.op("Mul", [cube, b.scalar(f"{p}.k", 0.044715, np.float32)], p)], p)
    t = b.op("Tanh", [b.op("Mul", [inner, b.scalar(f"{p}.c", math.sqrt(2.0 / math.pi), np.float32)], p)], p)
    return b.op(
        "Mul",
        [
            b.op("Mul", [x, b.scalar(f"{p}.half", 0.5, np.float32)], p),
            b.op("Add", [t, b.scalar(f"{p}.one", 1.0, np.float32)], p),
        ],
        p,
    )


def _attention(b: Builder, x: str, attn, mask: tuple, i: int, cfg, fused: bool) -> str:
    """Causal self-attention over the past; writes present.{i}.key/value. [b, s, E] -> [b, s, E]"""
    p, nh, hd = f"h.{i}.attn", cfg.n_head, cfg.n_embd // cfg.n_head
    qkv = _linear(b, x, attn.c_attn, f"transformer.h.{i}.attn.c_attn")  # [b, s, 3E]
    scale = (math.sqrt(hd) if cfg.scale_attn_weights else 1.0) * (
        i + 1 if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) else 1
    )
    if fused:
        ctx = _fused_attention(b, qkv, mask, i, nh, scale)
    else:
        split = b.const(f"{p}.split", np.array([cfg.n_embd] * 3, np.int64))
        q, k, v = b.op("Split", [qkv, split], p, n_out=3, axis=-1)  # [b, s, E]
        ctx = _plain_attention(b, q, k, v, mask[0], i, nh, hd, scale)
    return _linear(b, ctx, attn.c_proj, f"transformer.h.{i}.attn.c_proj")


def _plain_attention(b: Builder, q: str, k: str, v: str, allowed: str, i: int, nh: int, hd: int, scale: float) -> str:
    """Standard ONNX ops: split heads, concat the past, masked softmax(q k^T / scale) v, merge heads."""
    p = f"h.{i}.attn"
    heads = b.const(f"{p}.heads_shape", np.array([0, 0, nh, hd], np.int64))
    q, k, v = (
        b.op("Transpose", [b.op("Reshape", [t, heads], p)], p, perm=[0, 2, 1, 3]) for t in (q, k, v)
    )  # [b, H, s, D]
    b.nodes.append(
        helper.make_node("Concat", [names.past_key(i), k], [names.present_key(i)], name=f"{p}/present_key", axis=2)
    )
    b.nodes.append(
        helper.make_node(
            "Concat", [names.past_value(i), v], [names.present_value(i)], name=f"{p}/present_value", axis=2
        )
    )
    scores = b.op("MatMul", [q, b.op("Transpose", [names.present_key(i)], p, perm=[0, 1, 3, 2])], p)  # [b, H, s, T]
    if scale != 1.0:
        scores = b.op("Div", [scores, b.scalar(f"{p}.scale", scale, np.float32)], p)
    scores = b.op("Where", [allowed, scores, b.scalar(f"{p}.mask_value", FLOAT_MIN, np.float32)], p)
    ctx = b.op("MatMul", [b.op("Softmax", [scores], p, axis=-1), names.present_value(i)], p)  # [b, H, s, D]
    return b.op(
        "Reshape",
        [
            b.op("Transpose", [ctx], p, perm=[0, 2, 1, 3]),
            b.const(f"{p}.merge_shape", np.array([0, 0, nh * hd], np.int64)),
        ],
        p,
    )


def _fused_attention(b: Builder, qkv: str, mask: tuple, i: int, nh: int, scale: float) -> str:
    """ONNX Runtime's ``GroupQueryAttention`` (kv heads = heads) on c_attn's packed output [q | k | v] [b, s, 3E]
    as it is (no split, no head reshapes): the cache append into the presents [b, H, T, D] and causal attention in
    one kernel; ``mask`` = (_, the padding + causal bias [b, 1, s, T], :func:`base.gqa_lengths`): the bias keeps
    left padding exact. -> [b, s, E]"""
    out = f"h.{i}.attn/GroupQueryAttention_out"
    ins = [qkv, "", "", names.past_key(i), names.past_value(i), *mask[2], "", "", "", mask[1]]
    b.node("GroupQueryAttention", ins, [out, names.present_key(i), names.present_value(i)],
           name=f"h.{i}.attn/GroupQueryAttention", domain="com.microsoft", num_heads=nh, kv_num_heads=nh,
           scale=1.0 / scale)  # fmt: skip
    return out


def _block(b: Builder, h: str, blk, mask: tuple, i: int, cfg, fused: bool) -> str:
    eps, p = cfg.layer_norm_epsilon, f"transformer.h.{i}"
    h = b.op(
        "Add",
        [h, _attention(b, _layer_norm(b, h, blk.ln_1, f"{p}.ln_1", eps), blk.attn, mask, i, cfg, fused)],
        f"h.{i}",
    )
    f = _linear(b, _layer_norm(b, h, blk.ln_2, f"{p}.ln_2", eps), blk.mlp.c_fc, f"{p}.mlp.c_fc")
    f = _linear(b, _gelu(b, f, cfg.activation_function, f"h.{i}.mlp.act"), blk.mlp.c_proj, f"{p}.mlp.c_proj")
    return base.adapter(b, b.op("Add", [h, f], f"h.{i}"), i, eps)


def build_graph(hf_model, fused_attention: bool = False, lora_targets: frozenset[str] = frozenset()) -> onnx.ModelProto:
    """The decoder graph of a (frozen, eval-mode) ``GPT2LMHeadModel``; weights become fp32 initializers; LoRA inputs
    on the projections named in ``lora_targets`` (:mod:`export.arch.lora`)."""
    import torch

    cfg = hf_model.config
    check_config(cfg)
    b, tr = Builder(lora_targets), hf_model.transformer
    with torch.no_grad():
        seq, total = base.lengths(b)
        table = b.weight("transformer.wte.weight", tr.wte.weight)
        h = b.op("Add", [base.embed(b, table, cfg.vocab_size), _positions(b, tr, seq)], "embed")  # [b, s, E]
        mask = base.causal_mask(b, seq, total, fused_attention)
        mask = (*mask, base.gqa_lengths(b, total)) if fused_attention else mask
        for i, blk in enumerate(tr.h):
            h = _block(b, h, blk, mask, i, cfg, fused_attention)
        h = _layer_norm(b, h, tr.ln_f, "transformer.ln_f", cfg.layer_norm_epsilon)
        base.lm_head(b, h, hf_model.lm_head.weight)
    return base.finish(b, decoder_io(cfg), cfg.n_embd, contrib=fused_attention)
