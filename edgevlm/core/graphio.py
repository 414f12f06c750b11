"""The decoder graph's inputs and outputs, declared once as data (stdlib only).

:func:`decoder_io` says what every backbone graph of every architecture
looks like from outside: the exporter's builders declare exactly these
tensors, the runtime refuses a graph that differs (:func:`check_graph_io`),
and the verifier feeds them. Past/present key/values are ``[batch,
n_kv_head, past_sequence | total_sequence, head_dim]``: ``n_kv_head`` is
``n_head`` for GPT-2 and fewer for grouped-query attention (Llama), and
``head_dim`` need not be ``n_embd // n_head``. Adapter inputs are optional
(identity defaults) and sized by the hidden size ``n_embd``. :data:`ADAPTER_COLUMNS` is one more optional input
(default ones [1, 1]) that lets one run carry several tasks (:mod:`edgevlm.core.names`); it is not part of the
manifest's ``io`` names, so bundles exported before it still load (single-task only).
Graph *options* are optional inputs too (``logits_to_keep``: the LM head runs on the last k positions only,
k = 1 in generation; its default 0 keeps every position for evaluation and verification); like
:data:`ADAPTER_COLUMNS` they are not in the manifest's ``io`` names, and a graph without them runs with their defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgevlm.core import names
from edgevlm.core.errors import BundleError

Dim = int | str  # int: a fixed size; str: a symbolic (dynamic) axis name
ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64"}  # ONNX Runtime's type strings -> dtype


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, numpy dtype name and declared dims."""

    name: str
    dtype: str
    dims: tuple[Dim, ...]

    def mismatch(self, dtype: str | None, dims: Sequence) -> str | None:
        """Why a declared ``(dtype, dims)`` does not fit this spec, or None when it does.

        A fixed dim must be declared as that int; a symbolic one must be dynamic
        (a name or unknown), so that e.g. a graph fixed to batch 1 is refused.
        """
        dims = list(dims)
        fits = len(dims) == len(self.dims) and all(
            (g == w) if isinstance(w, int) else not isinstance(g, int) for g, w in zip(dims, self.dims)
        )
        if dtype == self.dtype and fits:
            return None
        return f"is declared {dtype}{dims}, expected {self.dtype}{list(self.dims)}"

    def shape(self, **sizes: int) -> tuple[int, ...]:
        """Concrete shape with the symbolic dims bound from ``sizes`` (e.g. ``batch=1, past_sequence=0``)."""
        return tuple(d if isinstance(d, int) else sizes[d] for d in self.dims)


@dataclass(frozen=True)
class DecoderIO:
    """The graph's required inputs, optional adapter inputs and outputs, each in graph order."""

    inputs: tuple[TensorSpec, ...]
    adapter_inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    options: tuple[TensorSpec, ...] = ()  # optional non-adapter inputs (not in the manifest's io names)

    def names(self) -> dict[str, list[str]]:
        """Names only, as the manifest's ``io`` section lists them."""
        return {
            "inputs": [s.name for s in self.inputs],
            "outputs": [s.name for s in self.outputs],
            "adapter_inputs": [s.name for s in self.adapter_inputs],
        }

    @property
    def past(self) -> tuple[TensorSpec, ...]:
        """The past key/value inputs (key0, value0, key1, ...)."""
        return self.inputs[2:]


def decoder_io(n_layer: int, n_kv_head: int, head_dim: int, n_embd: int, vocab_size: int) -> DecoderIO:
    """The decoder graph's IO for these sizes (architecture-neutral; see the module docstring)."""
    b, s, p, t = names.BATCH_DIM, names.SEQ_DIM, names.PAST_DIM, names.TOTAL_DIM
    f = "float32"
    inputs = [TensorSpec(names.INPUT_IDS, "int64", (b, s)), TensorSpec(names.ATTENTION_MASK, "int64", (b, t))]
    inputs += [TensorSpec(n, f, (b, n_kv_head, p, head_dim)) for n in names.past_names(n_layer)]
    outputs = [TensorSpec(names.LOGITS, f, (b, names.KEPT_DIM, vocab_size))]
    outputs += [TensorSpec(n, f, (b, n_kv_head, t, head_dim)) for n in names.present_names(n_layer)]
    adapters = [TensorSpec(n, f, tuple(names.symbolic_adapter_shape(n, n_embd))) for n in names.adapter_names(n_layer)]
    return DecoderIO(tuple(inputs), tuple(adapters), tuple(outputs), OPTIONS)


OPTIONS = (TensorSpec(names.LOGITS_TO_KEEP, "int64", (1,)),)
OPTION_DEFAULTS = {names.LOGITS_TO_KEEP: 0}  # the value of each option's default initializer


def decoder_io_of(sizes: Any) -> DecoderIO:
    """:func:`decoder_io` from a sizes record: a mapping or an object (manifest backbone record, training
    sizes) with n_layer, n_head, n_embd, vocab_size and optionally n_kv_head, head_dim (GPT-2 defaults)."""
    get = sizes.get if isinstance(sizes, Mapping) else lambda k, d=None: getattr(sizes, k, d)
    n_head, n_embd = get("n_head"), get("n_embd")
    return decoder_io(
        get("n_layer"), get("n_kv_head") or n_head, get("head_dim") or n_embd // n_head, n_embd, get("vocab_size")
    )


Declared = Mapping[str, tuple[str | None, Sequence]]  # name -> (dtype, dims) as a graph declares them


# own dim names: the single-task default [1, 1] must not bind "batch" or "bottleneck"
ADAPTER_COLUMNS = TensorSpec(names.ADAPTER_COLUMNS, "float32", (names.COLUMN_ROWS_DIM, names.COLUMNS_DIM))


def has_mixed_batches(adapter_inputs: Declared) -> bool:
    """Whether a graph's optional inputs include :data:`ADAPTER_COLUMNS` as declared (mixed-task batches)."""
    declared = adapter_inputs.get(ADAPTER_COLUMNS.name)
    return declared is not None and ADAPTER_COLUMNS.mismatch(*declared) is None


def check_graph_io(io: DecoderIO, inputs: Declared, adapter_inputs: Declared, outputs: Declared, source: str) -> None:
    """A graph's declared tensors against ``io``; BundleError naming ``source`` and the first offending tensor.

    ``inputs`` are the required inputs, ``adapter_inputs`` the optional ones
    (graph inputs with a default initializer: adapters, and the options a graph has), ``outputs`` in graph order.
    """
    want = [s.name for s in io.inputs]
    if set(inputs) != set(want):
        extra, missing = sorted(set(inputs) - set(want)), [n for n in want if n not in inputs]
        raise BundleError(f"{source}: graph inputs do not match (missing {missing[:3]}, unexpected {extra[:3]})")
    missing = [s.name for s in io.adapter_inputs if s.name not in adapter_inputs]
    if missing:
        raise BundleError(
            f"{source}: adapter inputs {missing[:3]} are not optional graph inputs (each needs an identity default)"
        )
    if list(outputs) != [s.name for s in io.outputs]:
        raise BundleError(f"{source}: graph outputs {list(outputs)[:3]}... do not match {io.names()['outputs'][:3]}...")
    options = tuple(s for s in io.options if s.name in adapter_inputs)  # absent: an older graph, run with defaults
    groups = (("input", io.inputs, inputs), ("adapter input", io.adapter_inputs + options, adapter_inputs))
    for kind, specs, declared in groups:
        for spec in specs:
            _check_one(spec, declared[spec.name], f"{source}: graph {kind}")
    for spec in io.outputs:
        _check_one(spec, outputs[spec.name], f"{source}: graph output")


def _check_one(spec: TensorSpec, declared: tuple[str | None, Sequence], where: str) -> None:
    why = spec.mismatch(*declared)
    if why:
        raise BundleError(f"{where} {spec.name} {why}")
