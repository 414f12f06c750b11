"""Opening a bundle's graph and adapter files with ONNX Runtime, checked against the manifest and each other."""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from edgevlm.core import graphio, identity
from edgevlm.core.bundle import Manifest, TaskEntry, check_adapter_against_graph
from edgevlm.core.errors import BundleError, ConfigError
from edgevlm.runtime import adapterfile


@dataclass(frozen=True)
class Graph:
    """What the runtime needs to know about the backbone graph (checked against the manifest)."""

    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    n_positions: int
    n_kv_head: int
    head_dim: int
    adapter_inputs: dict[str, list] = field(repr=False)  # adapter input name -> declared (symbolic) shape
    mixed: bool = False  # the graph takes adapter_columns: rows of different tasks in one run


@dataclass(frozen=True)
class Task:
    """One task of a loaded bundle: prompt format, generation defaults and its ORT adapter (loaded once)."""

    name: str
    bottleneck: int
    special_tokens: tuple[str, ...]
    template: str
    eos_token_id: int
    max_new_tokens: int
    max_source_tokens: int | None
    file: Path
    adapter: ort.LoraAdapter = field(repr=False, compare=False)
    entry: TaskEntry = field(repr=False)  # as the manifest (or a sidecar) declares it


def session_options(threads: int | None, spin: bool = False) -> ort.SessionOptions:
    """CPU session settings. Worker threads sleep instead of spinning between kernels unless ``spin``:
    on a device that also runs other work (or serves several calls at once) spinning measured 1.7x
    slower decode here; on an otherwise idle device ``spin=True`` may shave wake-up latency."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads <= 0:
            raise ConfigError(f"threads must be a positive integer or None (all cores), got {threads!r}")
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3  # ORT warns once per optional adapter input ("initializer appears in graph inputs")
    return so


def open_session(
    path: Path, threads: int | None, spin: bool = False, listed: set[Path] | None = None
) -> ort.InferenceSession:
    """The graph at ``path`` in an ORT session. A graph whose weights live in an external data file next to
    it (ONNX external data) is memory-mapped by ORT instead of parsed into the heap and copied (README,
    "Where the memory goes"); its data files must stay in the graph's folder (ORT 1.23 would read any path)
    and, given ``listed`` (the manifest's checksummed files, resolved), be among them."""
    check_external_data(path, listed)
    so = session_options(threads, spin)
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for unreadable graphs
        raise BundleError(f"{path}: ONNX Runtime cannot load the graph ({str(e).splitlines()[0]})") from None


# ONNX protobuf messages -> {field number: message type} for the fields that may hold a TensorProto
_SCHEMA = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}


def _varint(buf, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[i]
        value, i, shift = value | (byte & 0x7F) << shift, i + 1, shift + 7
        if byte < 0x80:
            return value, i


def _messages(buf, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the protobuf message ``buf[start:end]``."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 2:
            n, i = _varint(buf, i)
            if i + n > end:
                raise ValueError("field runs past its message")
            yield key >> 3, i, i + n
            i += n
        elif wire in (0, 1, 5):
            i = _varint(buf, i)[1] if wire == 0 else i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"wire type {wire}")


def _locations(buf, kind: str, start: int, end: int) -> Iterator[str]:
    """The external-data ``location`` values of every TensorProto under the ``kind`` message buf[start:end]."""
    if kind == "entry":
        entry = {f: buf[a:b] for f, a, b in _messages(buf, start, end)}
        if entry.get(1) == b"location":
            yield entry.get(2, b"").decode("utf-8", "replace")
        return
    for f, a, b in _messages(buf, start, end):
        if f in _SCHEMA[kind]:
            yield from _locations(buf, _SCHEMA[kind][f], a, b)


def external_data_files(path: Path) -> set[str]:
    """The external data files a graph names (its TensorProtos' ``location``s), read from the mapped file
    without parsing the weights. BundleError for a file that is not an ONNX protobuf."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return set(_locations(mm, "model", 0, len(mm)))
    except (OSError, ValueError) as e:  # mmap of an empty file, a truncated or foreign file
        raise BundleError(f"{path}: not a readable ONNX graph ({e})") from None
    except RecursionError:  # subgraphs nested thousands deep
        raise BundleError(f"{path}: not a readable ONNX graph (subgraphs nested too deeply)") from None


def check_external_data(path: Path, listed: set[Path] | None = None) -> None:
    """Every external data file of the graph is a relative path that stays in the graph's folder and, given
    ``listed``, one of those files: ORT maps what the graph names, so it must be what was checksummed."""
    folder = path.parent.resolve()
    for loc in sorted(external_data_files(path)):
        if not loc or Path(loc).is_absolute() or "\\" in loc or not (folder / loc).resolve().is_relative_to(folder):
            raise BundleError(f"{path}: external data location {loc!r} must be a relative path inside {folder}")
        if not (folder / loc).is_file():
            raise BundleError(f"{path}: external data file {loc!r} not found next to the graph")
        if listed is not None and (folder / loc).resolve() not in listed:
            raise BundleError(f"{path}: external data file {loc!r} has no checksum in the manifest's files; refused")


def _declared(args: list) -> dict[str, tuple[str | None, list]]:
    """ORT NodeArgs -> name -> (numpy dtype name, declared shape)."""
    return {a.name: (graphio.ORT_TYPES.get(a.type), a.shape) for a in args}


def check_graph(session: ort.InferenceSession, manifest: Manifest, path: Path) -> Graph:
    """The session's inputs/outputs against the graph IO the manifest's backbone declares."""
    bb, io = manifest.backbone, manifest.backbone.io()
    optional = _declared(session.get_overridable_initializers())
    adapter_names = set(io.names()["adapter_inputs"])
    adapters = {k: v for k, v in optional.items() if k in adapter_names}
    options = {s.name: optional[s.name] for s in io.options if s.name in optional}
    args = _declared(session.get_inputs()), {**adapters, **options}, _declared(session.get_outputs())
    graphio.check_graph_io(io, *args, str(path))
    sizes = (bb.n_layer, bb.n_head, bb.n_embd, bb.vocab_size, bb.n_positions, bb.n_kv_head, bb.head_dim)
    return Graph(*sizes, {k: v[1] for k, v in adapters.items()}, graphio.has_mixed_batches(optional))


def load_adapter(path: Path, graph: Graph, fingerprint: str, task: str) -> tuple[ort.LoraAdapter, int, int]:
    """Check an adapter file's structure (bounds-checked: ORT's own reader can crash on a corrupt file), its
    identity record (backbone ``fingerprint`` and ``task``), its tensors against the graph and their values,
    then load it once. -> (adapter, bottleneck, task tokens)"""
    if not path.is_file():
        raise BundleError(f"{path}: adapter file not found")
    params, record = adapterfile.read_adapter_file(path)
    identity.check_adapter_identity(record, fingerprint, task, str(path))
    bottleneck, n_tokens = check_adapter_against_graph(
        {k: list(v.shape) for k, v in params.items()}, graph.adapter_inputs, graph.n_embd, str(path)
    )
    identity.check_values(params, str(path), BundleError)  # NaN/Inf/absurd
    del params
    adapter = ort.LoraAdapter()
    try:
        adapter.Load(str(path))
    except Exception as e:  # ORT raises RuntimeError/InvalidArgument for unreadable files
        raise BundleError(f"{path}: not a readable ONNX Runtime adapter file ({str(e).splitlines()[0]})") from None
    return adapter, bottleneck, n_tokens


def load_task(name: str, entry: TaskEntry, path: Path, graph: Graph, source: str, fingerprint: str) -> Task:
    """A task (its manifest entry, read from ``source``) with its adapter file ``path``, checked against the
    adapter's tensors and identity: the file must be this task's for the backbone ``fingerprint``, and the
    entry's bottleneck and task-token count must be the file's."""
    where = f"{source}: tasks.{name}"
    adapter, bottleneck, n_tokens = load_adapter(path, graph, fingerprint, name)
    if bottleneck != entry.bottleneck:
        raise BundleError(f"{where}.bottleneck is {entry.bottleneck!r} but {path.name} has bottleneck {bottleneck}")
    if n_tokens != len(entry.special_tokens):
        raise BundleError(
            f"{where} has {len(entry.special_tokens)} special tokens but {path.name} has {n_tokens} task embeddings"
        )
    gen = entry.generation
    return Task(
        name,
        bottleneck,
        entry.special_tokens,
        entry.template,
        entry.eos_token_id,
        gen.max_new_tokens,
        gen.max_source_tokens,
        path,
        adapter,
        entry,
    )
