"""The VLM decoder as one ONNX graph, written op by op from a Hugging Face GPT-2's weights.

One graph serves prefill and decode: ``input_ids`` [batch, sequence],
``attention_mask`` [batch, total_sequence] and every layer's past key/value
[batch, n_head, past_sequence, head_dim] (past length 0 on prefill) give
``logits`` and the present key/values. Every linear layer, the LM head
included (a pre-transposed [n_embd, vocab] initializer), is a ``MatMul`` with
an initializer weight, which is what ONNX Runtime's quantizers convert.

Adapter weights and task embeddings are graph *inputs* (names from
:mod:`edgevlm.core.names`) with symbolic ``bottleneck`` / ``task_tokens`` dims and
an identity default initializer each, so they are optional and a graph run
without them is the plain backbone.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevlm.core import graphio, names
from edgevlm.core.errors import BackboneError

OPSET = 17
FLOAT_MIN = float(np.finfo(np.float32).min)
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
ACTIVATIONS = TANH_GELU + ("gelu", "relu")


def adapter_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that read an adapter input (kept in float by every quantizer)."""
    swappable = set(names.adapter_names(_n_layer(model)))
    return [n.name for n in model.graph.node if swappable & set(n.input)]


def _n_layer(model: onnx.ModelProto) -> int:
    return sum(1 for i in model.graph.input if i.name.startswith("past_key_values.") and i.name.endswith(".key"))


def graph_inputs(model: onnx.ModelProto) -> dict[str, list]:
    """Graph input name -> declared shape (ints for fixed dims, strings for symbolic ones)."""
    out = {}
    for i in model.graph.input:
        dims = i.type.tensor_type.shape.dim
        out[i.name] = [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]
    return out


def declared_io(model: onnx.ModelProto) -> tuple[dict, dict, dict]:
    """(required inputs, optional inputs with a default, outputs): name -> (dtype, dims), for
    :func:`edgevlm.core.graphio.check_graph_io`."""
    inits = {t.name for t in model.graph.initializer}

    def decl(v: onnx.ValueInfoProto) -> tuple[str, list]:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        return str(helper.tensor_dtype_to_np_dtype(t.elem_type)), dims

    inputs = {i.name: decl(i) for i in model.graph.input}
    required = {k: v for k, v in inputs.items() if k not in inits}
    return required, {k: v for k, v in inputs.items() if k in inits}, {o.name: decl(o) for o in model.graph.output}


def check_config(cfg) -> None:
    """Refuse GPT-2 variants this graph does not implement (one line naming the field)."""
    if getattr(cfg, "model_type", None) != "gpt2":
        raise BackboneError(
            f"unsupported architecture {getattr(cfg, 'model_type', None)!r}: only GPT-2 can be exported"
        )
    if cfg.activation_function not in ACTIVATIONS:
        raise BackboneError(
            f"config.json: activation_function={cfg.activation_function!r} is not supported (expected one of {ACTIVATIONS})"
        )
    if getattr(cfg, "add_cross_attention", False):
        raise BackboneError("config.json: add_cross_attention=true is not supported (decoder-only GPT-2 expected)")
    if cfg.n_embd % cfg.n_head:
        raise BackboneError(f"config.json: n_embd={cfg.n_embd} is not divisible by n_head={cfg.n_head}")


class _Builder:
    """Collects nodes and initializers; every value gets a readable unique name."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}  # arrays may share memory with the torch weights
        self._count = 0

    def op(self, op_type: str, inputs: list[str], prefix: str, n_out: int = 1, **attrs) -> str | list[str]:
        self._count += 1
        name = f"{prefix}/{op_type}_{self._count}"
        outs = [f"{name}_out{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer (added once per name: shared constants are reused)."""
        self.inits.setdefault(name, np.asarray(value))
        return name

    def scalar(self, name: str, value, dtype) -> str:
        return self.const(name, np.array(value, dtype=dtype))

    def weight(self, name: str, tensor) -> str:
        """An fp32 initializer from a torch tensor."""
        return self.const(name, tensor.detach().to("cpu").float().numpy())


def _embed(b: _Builder, tr, vocab: int) -> str:
    """Token embeddings; ids >= vocab read the ``task_embeddings`` input (row id - vocab). [b, s] -> [b, s, E]"""
    ids, p = names.INPUT_IDS, "embed"
    v, one, zero = (
        b.scalar("const.vocab", vocab, np.int64),
        b.scalar("const.one", 1, np.int64),
        b.scalar("const.zero", 0, np.int64),
    )
    tok = b.op(
        "Gather",
        [
            b.weight("transformer.wte.weight", tr.wte.weight),
            b.op("Min", [ids, b.scalar("const.vocab_last", vocab - 1, np.int64)], p),
        ],
        p,
    )
    n_task = b.op("Gather", [b.op("Shape", [names.TASK_EMBEDDINGS], p), zero], p, axis=0)  # scalar T
    tid = b.op(
        "Min", [b.op("Max", [b.op("Sub", [ids, v], p), zero], p), b.op("Sub", [n_task, one], p)], p
    )  # [b, s] in [0, T)
    task = b.op("Gather", [names.TASK_EMBEDDINGS, tid], p)  # [b, s, E]
    is_task = b.op(
        "Unsqueeze", [b.op("GreaterOrEqual", [ids, v], p), b.const("const.axes_last", np.array([-1], np.int64))], p
    )
    return b.op("Where", [is_task, task, tok], p)


def _lengths(b: _Builder) -> tuple[str, str]:
    """Scalars (sequence, total_sequence) from the shapes of input_ids and attention_mask."""
    one = b.scalar("const.one", 1, np.int64)
    return tuple(
        b.op("Gather", [b.op("Shape", [x], "len"), one], "len", axis=0) for x in (names.INPUT_IDS, names.ATTENTION_MASK)
    )


def _positions(b: _Builder, tr, seq: str) -> str:
    """Position embeddings at cumsum(attention_mask) - 1 (clamped at 0), last ``sequence`` columns: left padding safe. -> [b, s, E]"""
    one, zero, p = b.scalar("const.one", 1, np.int64), b.scalar("const.zero", 0, np.int64), "pos"
    pos = b.op("Max", [b.op("Sub", [b.op("CumSum", [names.ATTENTION_MASK, one], p), one], p), zero], p)  # [b, T]
    start = b.op("Unsqueeze", [b.op("Neg", [seq], p), b.const("const.axes0", np.array([0], np.int64))], p)
    pos = b.op(
        "Slice",
        [
            pos,
            start,
            b.const("const.int64_max", np.array([2**62], np.int64)),
            b.const("const.axes1", np.array([1], np.int64)),
        ],
        p,
    )
    return b.op("Gather", [b.weight("transformer.wpe.weight", tr.wpe.weight), pos], p)


def _mask(b: _Builder, seq: str, total: str, fused: bool) -> tuple[str, str]:
    """Causal + padding mask [b, 1, s, T] as (boolean permission, additive bias 0 / float32 min for the fused kernel, else "")."""
    one, zero, p = b.scalar("const.one", 1, np.int64), b.scalar("const.zero", 0, np.int64), "mask"
    ax0, ax1 = b.const("const.axes0", np.array([0], np.int64)), b.const("const.axes1", np.array([1], np.int64))
    kpos = b.op("Unsqueeze", [b.op("Range", [zero, total, one], p), ax0], p)  # [1, T]
    qpos = b.op("Unsqueeze", [b.op("Range", [b.op("Sub", [total, seq], p), total, one], p), ax1], p)  # [s, 1]: past + i
    keys = b.op(
        "Unsqueeze",
        [
            b.op("Cast", [names.ATTENTION_MASK], p, to=TensorProto.BOOL),
            b.const("const.axes12", np.array([1, 2], np.int64)),
        ],
        p,
    )
    allowed = b.op("And", [b.op("LessOrEqual", [kpos, qpos], p), keys], p)  # [b, 1, s, T]
    if not fused:
        return allowed, ""
    return allowed, b.op(
        "Where", [allowed, b.scalar("const.fzero", 0.0, np.float32), b.scalar("const.fmin", FLOAT_MIN, np.float32)], p
    )


def _linear(b: _Builder, x: str, conv, name: str) -> str:
    """``x @ W + b`` for an HF Conv1D (weight already [in, out])."""
    return b.op(
        "Add",
        [b.op("MatMul", [x, b.weight(f"{name}.weight", conv.weight)], name), b.weight(f"{name}.bias", conv.bias)],
        name,
    )


def _layer_norm(b: _Builder, x: str, ln, name: str, eps: float) -> str:
    return b.op(
        "LayerNormalization",
        [x, b.weight(f"{name}.weight", ln.weight), b.weight(f"{name}.bias", ln.bias)],
        name,
        axis=-1,
        epsilon=eps,
    )


def _gelu(b: _Builder, x: str, kind: str, p: str) -> str:
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


def _attention(b: _Builder, x: str, attn, mask: tuple[str, str], i: int, cfg, fused: bool) -> str:
    """Causal self-attention with the past concatenated; writes present.{i}.key/value. [b, s, E] -> [b, s, E]"""
    p, nh, hd = f"h.{i}.attn", cfg.n_head, cfg.n_embd // cfg.n_head
    qkv = _linear(b, x, attn.c_attn, f"transformer.h.{i}.attn.c_attn")  # [b, s, 3E]
    q, k, v = b.op(
        "Split", [qkv, b.const(f"{p}.split", np.array([cfg.n_embd] * 3, np.int64))], p, n_out=3, axis=-1
    )  # [b, s, E]
    scale = (math.sqrt(hd) if cfg.scale_attn_weights else 1.0) * (
        i + 1 if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) else 1
    )
    if fused:
        ctx = _fused_attention(b, q, k, v, mask[1], i, nh, scale)
    else:
        ctx = _plain_attention(b, q, k, v, mask[0], i, nh, hd, scale)
    return _linear(b, ctx, attn.c_proj, f"transformer.h.{i}.attn.c_proj")


def _plain_attention(b: _Builder, q: str, k: str, v: str, allowed: str, i: int, nh: int, hd: int, scale: float) -> str:
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


def _fused_attention(b: _Builder, q: str, k: str, v: str, bias: str, i: int, nh: int, scale: float) -> str:
    """ONNX Runtime's fused ``MultiHeadAttention`` kernel with the additive mask bias and the past. -> [b, s, E]"""
    outs = [f"h.{i}.attn/MultiHeadAttention_out", names.present_key(i), names.present_value(i)]
    b.nodes.append(
        helper.make_node(
            "MultiHeadAttention",
            [q, k, v, "", "", bias, names.past_key(i), names.past_value(i)],
            outs,
            name=f"h.{i}.attn/MultiHeadAttention",
            domain="com.microsoft",
            num_heads=nh,
            scale=1.0 / scale,
        )
    )
    return outs[0]


def _adapter(b: _Builder, h: str, i: int, eps: float) -> str:
    """``h + up(relu(down(LN(h))))`` with every weight a graph input. [b, s, E] -> [b, s, E]"""
    a = lambda part: names.adapter_name(i, part)  # noqa: E731
    p = f"adapter.{i}"
    z = b.op("LayerNormalization", [h, a("ln.weight"), a("ln.bias")], p, axis=-1, epsilon=eps)
    z = b.op("Relu", [b.op("Add", [b.op("MatMul", [z, a("down.weight")], p), a("down.bias")], p)], p)  # [b, s, B]
    return b.op("Add", [h, b.op("Add", [b.op("MatMul", [z, a("up.weight")], p), a("up.bias")], p)], p)


def _block(b: _Builder, h: str, blk, mask: tuple[str, str], i: int, cfg, fused: bool) -> str:
    eps, p = cfg.layer_norm_epsilon, f"transformer.h.{i}"
    h = b.op(
        "Add",
        [h, _attention(b, _layer_norm(b, h, blk.ln_1, f"{p}.ln_1", eps), blk.attn, mask, i, cfg, fused)],
        f"h.{i}",
    )
    f = _linear(b, _layer_norm(b, h, blk.ln_2, f"{p}.ln_2", eps), blk.mlp.c_fc, f"{p}.mlp.c_fc")
    f = _linear(b, _gelu(b, f, cfg.activation_function, f"h.{i}.mlp.act"), blk.mlp.c_proj, f"{p}.mlp.c_proj")
    return _adapter(b, b.op("Add", [h, f], f"h.{i}"), i, eps)


def decoder_io(cfg) -> graphio.DecoderIO:
    """The graph's declared IO (:func:`edgevlm.core.graphio.decoder_io`) for a GPT-2 config: kv heads = heads."""
    return graphio.decoder_io(cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.n_embd, cfg.vocab_size)


def _io(cfg) -> tuple[list, list]:
    """Declared graph inputs (adapter inputs last) and outputs, from the shared declaration."""
    io = decoder_io(cfg)
    return [_value_info(s) for s in io.inputs + io.adapter_inputs], [_value_info(s) for s in io.outputs]


def _value_info(spec: graphio.TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        spec.name, helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype)), list(spec.dims)
    )


def identity_defaults(n_layer: int, n_embd: int) -> dict[str, np.ndarray]:
    """The "no task" value of every adapter input (bottleneck = task tokens = 1)."""
    return {
        n: np.full(names.adapter_shape(n, n_embd, 1, 1), names.identity_value(n), np.float32)
        for n in names.adapter_names(n_layer)
    }


def build_graph(hf_model, fused_attention: bool = False) -> onnx.ModelProto:
    """The decoder graph of a (frozen, eval-mode) ``GPT2LMHeadModel``; weights become fp32 initializers.

    With ``fused_attention`` each layer's attention is ONNX Runtime's ``com.microsoft.MultiHeadAttention``
    (same inputs/outputs; the graph then needs ONNX Runtime), otherwise standard ONNX ops only.
    """
    import torch

    cfg = hf_model.config
    check_config(cfg)
    b, tr = _Builder(), hf_model.transformer
    with torch.no_grad():
        seq, total = _lengths(b)
        h = b.op("Add", [_embed(b, tr, cfg.vocab_size), _positions(b, tr, seq)], "embed")  # [b, s, E]
        mask = _mask(b, seq, total, fused_attention)
        for i, blk in enumerate(tr.h):
            h = _block(b, h, blk, mask, i, cfg, fused_attention)
        h = _layer_norm(b, h, tr.ln_f, "transformer.ln_f", cfg.layer_norm_epsilon)
        lm_head = b.const("lm_head.weight_t", hf_model.lm_head.weight.detach().float().numpy().T.copy())  # [E, V]
    b.nodes.append(helper.make_node("MatMul", [h, lm_head], [names.LOGITS], name="lm_head/MatMul"))
    for n, v in identity_defaults(cfg.n_layer, cfg.n_embd).items():
        b.const(n, v)
    inputs, outputs = _io(cfg)
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if fused_attention else [])
    model = helper.make_model(
        helper.make_graph(b.nodes, "edgevlm_decoder", inputs, outputs), opset_imports=opsets, producer_name="edgevlm"
    )
    model.ir_version = 8
    for name, value in b.inits.items():  # one tensor at a time: the weights are copied once, not per proto wrapper
        value = value if value.flags.c_contiguous else value.copy(order="C")
        model.graph.initializer.add().CopyFrom(numpy_helper.from_array(value, name))
    return model


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Operator type -> node count (domain-qualified for non-standard ops)."""
    out: dict[str, int] = {}
    for n in model.graph.node:
        key = f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))
