"""What every architecture's decoder graph shares: the node/initializer builder and the parts around the layers.

A graph takes ``input_ids`` [batch, sequence], ``attention_mask`` [batch, total_sequence] and every layer's
past key/value (:mod:`edgevlm.core.graphio`) and returns ``logits`` and the presents. Shared here: token
embeddings with task tokens (ids >= vocab read the ``task_embeddings`` input), positions from the attention
mask (left padding exact), the causal + padding mask, the paper's adapter after every layer with its weights as
optional inputs (identity defaults), the LM head as a ``MatMul`` with a pre-transposed initializer (what the
quantizers convert) on the last ``logits_to_keep`` positions, and assembling the ModelProto. Architecture modules
add their layers between.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevlm.core import graphio, names

from . import lora

OPSET = 17  # the default; an architecture may need a later one (its builder passes it to finish)
FLOAT_MIN = float(np.finfo(np.float32).min)
TOKEN_GATHER = "embed/tokens"  # the token-embedding lookup: the one Gather the int4 quantizer converts
LM_HEAD_NODE = "lm_head/MatMul"
COLUMNS_NODE = "adapter/columns"


class Builder:
    """Collects nodes and initializers; every value gets a readable unique name."""

    def __init__(self, lora: frozenset[str] = frozenset()):
        self.lora = lora  # graph projections some exported LoRA task targets (export.arch.lora)
        self.lora_io: dict[str, tuple[int, bool]] = {}  # LoRA input -> (its fixed dim, is A)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}  # arrays may share memory with the torch weights
        self._count = 0

    def op(self, op_type: str, inputs: list[str], prefix: str, n_out: int = 1, **attrs) -> str | list[str]:
        self._count += 1
        name = f"{prefix}/{op_type}_{self._count}"
        outs = [f"{name}_out{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def node(self, op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs) -> None:
        """A node with chosen output names (graph outputs such as presents)."""
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer (added once per name: shared constants are reused)."""
        self.inits.setdefault(name, np.asarray(value))
        return name

    def scalar(self, name: str, value, dtype) -> str:
        return self.const(name, np.array(value, dtype=dtype))

    def ints(self, name: str, values: list[int]) -> str:
        return self.const(name, np.array(values, np.int64))

    def weight(self, name: str, tensor) -> str:
        """An fp32 initializer from a torch tensor."""
        return self.const(name, tensor.detach().to("cpu").float().numpy())


def lengths(b: Builder) -> tuple[str, str]:
    """Scalars (sequence, total_sequence) from the shapes of input_ids and attention_mask."""
    one = b.scalar("const.one", 1, np.int64)
    return tuple(
        b.op("Gather", [b.op("Shape", [x], "len"), one], "len", axis=0) for x in (names.INPUT_IDS, names.ATTENTION_MASK)
    )


def position_ids(b: Builder, seq: str) -> str:
    """cumsum(attention_mask) - 1 (clamped at 0), last ``sequence`` columns: left padding safe. -> [b, s] int64"""
    one, zero, p = b.scalar("const.one", 1, np.int64), b.scalar("const.zero", 0, np.int64), "pos"
    pos = b.op("Max", [b.op("Sub", [b.op("CumSum", [names.ATTENTION_MASK, one], p), one], p), zero], p)  # [b, T]
    start = b.op("Unsqueeze", [b.op("Neg", [seq], p), b.ints("const.axes0", [0])], p)
    return b.op("Slice", [pos, start, b.ints("const.int64_max", [2**62]), b.ints("const.axes1", [1])], p)


def embed(b: Builder, table: str, vocab: int) -> str:
    """Token embeddings from initializer ``table`` [V, E]; ids >= vocab read ``task_embeddings`` (row id - vocab).

    [b, s] -> [b, s, E]
    """
    ids, p = names.INPUT_IDS, "embed"
    v, one = b.scalar("const.vocab", vocab, np.int64), b.scalar("const.one", 1, np.int64)
    zero = b.scalar("const.zero", 0, np.int64)
    clamped = b.op("Min", [ids, b.scalar("const.vocab_last", vocab - 1, np.int64)], p)
    tok = f"{TOKEN_GATHER}_out0"
    b.node("Gather", [table, clamped], [tok], name=TOKEN_GATHER)
    n_task = b.op("Gather", [b.op("Shape", [names.TASK_EMBEDDINGS], p), zero], p, axis=0)  # scalar T
    tid = b.op("Min", [b.op("Max", [b.op("Sub", [ids, v], p), zero], p), b.op("Sub", [n_task, one], p)], p)  # [0, T)
    task = b.op("Gather", [names.TASK_EMBEDDINGS, tid], p)  # [b, s, E]
    is_task = b.op("Unsqueeze", [b.op("GreaterOrEqual", [ids, v], p), b.ints("const.axes_last", [-1])], p)
    return b.op("Where", [is_task, task, tok], p)


def causal_mask(b: Builder, seq: str, total: str, fused: bool) -> tuple[str, str]:
    """Causal + padding mask [b, 1, s, T]: (boolean permission, additive bias 0 / float32 min if ``fused``, else "")."""
    one, zero, p = b.scalar("const.one", 1, np.int64), b.scalar("const.zero", 0, np.int64), "mask"
    kpos = b.op("Unsqueeze", [b.op("Range", [zero, total, one], p), b.ints("const.axes0", [0])], p)  # [1, T]
    qpos = b.op(
        "Unsqueeze", [b.op("Range", [b.op("Sub", [total, seq], p), total, one], p), b.ints("const.axes1", [1])], p
    )  # [s, 1]: past + i
    keys = b.op(
        "Unsqueeze", [b.op("Cast", [names.ATTENTION_MASK], p, to=TensorProto.BOOL), b.ints("const.axes12", [1, 2])], p
    )
    allowed = b.op("And", [b.op("LessOrEqual", [kpos, qpos], p), keys], p)  # [b, 1, s, T]
    if not fused:
        return allowed, ""
    fz, fmin = b.scalar("const.fzero", 0.0, np.float32), b.scalar("const.fmin", FLOAT_MIN, np.float32)
    return allowed, b.op("Where", [allowed, fz, fmin], p)


def gqa_lengths(b: Builder, total: str) -> tuple[str, str]:
    """``GroupQueryAttention``'s lengths, made once for every layer: (seqlens_k [b] int32 = total - 1 for every
    row, total_sequence_length int32 scalar). Left-padded rows all span ``total`` (pad keys are masked by the
    bias), so one length serves the batch."""
    p, one = "gqa", b.scalar("const.one", 1, np.int64)
    batch = b.op("Gather", [b.op("Shape", [names.INPUT_IDS], p), b.scalar("const.zero", 0, np.int64)], p, axis=0)
    last = b.op("Expand", [b.op("Sub", [total, one], p), b.op("Unsqueeze", [batch, b.ints("const.axes0", [0])], p)], p)
    return b.op("Cast", [last], p, to=TensorProto.INT32), b.op("Cast", [total], p, to=TensorProto.INT32)


def layer_norm(b: Builder, x: str, weight: str, bias: str, name: str, eps: float) -> str:
    return b.op("LayerNormalization", [x, weight, bias], name, axis=-1, epsilon=eps)


def _columns(b: Builder) -> str:
    """``adapter_columns`` [rows, B] as [rows, 1, B], made once for every layer."""
    if COLUMNS_NODE not in {n.name for n in b.nodes}:
        b.node("Unsqueeze", [names.ADAPTER_COLUMNS, b.ints("const.axes1", [1])], [f"{COLUMNS_NODE}_out0"], COLUMNS_NODE)
    return f"{COLUMNS_NODE}_out0"


def adapter(b: Builder, h: str, i: int, eps: float) -> str:
    """``h + up(relu(down(LN(h))) * columns)`` with every weight a graph input; ``columns`` (``adapter_columns``,
    ones by default) keeps each row of a mixed-task batch to its task's bottleneck columns. [b, s, E] -> [b, s, E]"""
    z = b.op("LayerNormalization", [h, _adapter(i, "ln.weight"), _adapter(i, "ln.bias")], f"adapter.{i}", axis=-1,
             epsilon=eps)  # fmt: skip
    return b.op("Add", [h, _adapter_delta(b, z, i)], f"adapter.{i}")


def skip_adapter(b: Builder, h: str, skip: str, i: int, eps: float) -> tuple[str, str, str]:
    """The adapter on ``h + skip`` with ONNX Runtime's ``SkipLayerNormalization`` (the residual add and the
    adapter's LayerNorm in one kernel): (``h + skip``, the adapter's delta ``up(..)`` without its bias, the up
    bias), both to be added by the caller (a following skip norm takes the bias as its own: one Add fewer).
    [b, s, E] -> ([b, s, E], [b, s, E], [E])"""
    p = f"adapter.{i}"
    z, total = f"{p}/SkipLayerNormalization_out0", f"{p}/SkipLayerNormalization_out3"
    b.node("SkipLayerNormalization", [h, skip, _adapter(i, "ln.weight"), _adapter(i, "ln.bias")], [z, "", "", total],
           name=f"{p}/SkipLayerNormalization", domain="com.microsoft", epsilon=eps)  # fmt: skip
    return total, _adapter_delta(b, z, i, bias=False), _adapter(i, "up.bias")


def _adapter(i: int, part: str) -> str:
    return names.adapter_name(i, part)


def _adapter_delta(b: Builder, z: str, i: int, bias: bool = True) -> str:
    """``up(relu(down(z)) * columns)`` on the adapter's normalized input ``z`` (without up's bias unless
    ``bias``). [b, s, E] -> [b, s, E]"""
    p = f"adapter.{i}"
    z = b.op("Add", [b.op("MatMul", [z, _adapter(i, "down.weight")], p), _adapter(i, "down.bias")], p)
    z = b.op("Relu", [z], p)
    z = b.op("Mul", [z, _columns(b)], p)  # [b, s, B]
    up = b.op("MatMul", [z, _adapter(i, "up.weight")], p)
    return b.op("Add", [up, _adapter(i, "up.bias")], p) if bias else up


def lm_head(b: Builder, h: str, weight) -> None:
    """``logits = h[:, -k:] @ W^T`` with W [V, E] (a torch weight) stored pre-transposed [E, V] and k the
    ``logits_to_keep`` option (its default 0 slices from 0: every position). [b, s, E] -> [b, k or s, V]"""
    w = b.const("lm_head.weight_t", weight.detach().to("cpu").float().numpy().T.copy())
    start = b.op("Neg", [names.LOGITS_TO_KEEP], "lm_head")
    kept = b.op("Slice", [h, start, b.ints("const.int64_max", [2**62]), b.ints("const.axes1", [1])], "lm_head")
    b.node("MatMul", [kept, w], [names.LOGITS], name=LM_HEAD_NODE)


def identity_defaults(n_layer: int, n_embd: int) -> dict[str, np.ndarray]:
    """The "no task" value of every adapter input (bottleneck = task tokens = 1), and ``adapter_columns``' ones."""
    out = {
        n: np.full(names.adapter_shape(n, n_embd, 1, 1), names.identity_value(n), np.float32)
        for n in names.adapter_names(n_layer)
    }
    return {**out, names.ADAPTER_COLUMNS: np.ones((1, 1), np.float32)}


def _value_info(spec: graphio.TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        spec.name, helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype)), list(spec.dims)
    )


def finish(b: Builder, io: graphio.DecoderIO, n_embd: int, contrib: bool, opset: int = OPSET) -> onnx.ModelProto:
    """The ModelProto: nodes, the declared ``io`` (adapter inputs last, each with its identity default) and the
    initializers, copied one tensor at a time (the weights are copied once, not per proto wrapper)."""
    n_layer = len(io.past) // 2
    for n, v in identity_defaults(n_layer, n_embd).items():
        b.const(n, v)
    for spec in io.options:
        b.const(spec.name, np.full(spec.shape(), graphio.OPTION_DEFAULTS[spec.name], spec.dtype))
    inputs = [_value_info(s) for s in io.inputs + io.adapter_inputs + (graphio.ADAPTER_COLUMNS,) + io.options]
    inputs += lora.declare(b)  # none unless a LoRA task is exported
    outputs = [_value_info(s) for s in io.outputs]
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    model = helper.make_model(
        helper.make_graph(b.nodes, "edgevlm_decoder", inputs, outputs), opset_imports=opsets, producer_name="edgevlm"
    )
    model.ir_version = 8
    for name, value in b.inits.items():
        value = value if value.flags.c_contiguous else value.copy(order="C")
        model.graph.initializer.add().CopyFrom(numpy_helper.from_array(value, name))
    return model


def n_layer_of(model: onnx.ModelProto) -> int:
    """Layers of a built graph, counted from its past-key inputs."""
    return sum(1 for i in model.graph.input if i.name.startswith("past_key_values.") and i.name.endswith(".key"))


def optional_names(n_layer: int) -> list[str]:
    """Every optional input a built graph has: the adapter inputs and ``adapter_columns``."""
    return names.adapter_names(n_layer) + [names.ADAPTER_COLUMNS]


def adapter_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that read an adapter input (kept in float by every quantizer)."""
    swappable = set(optional_names(n_layer_of(model))) | set(lora.graph_lora_inputs(model))
    return [n.name for n in model.graph.node if swappable & set(n.input)]


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


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Operator type -> node count (domain-qualified for non-standard ops)."""
    out: dict[str, int] = {}
    for n in model.graph.node:
        key = f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))
