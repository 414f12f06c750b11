"""Opening a bundle's graph and adapter files with ONNX Runtime, checked against the manifest and each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from edgevlm.core import adapterfile, graphio, identity, names
from edgevlm.core.bundle import ORT_FILE, Manifest, TaskEntry, check_adapter_against_graph, confined
from edgevlm.core.errors import BundleError, ConfigError
from edgevlm.core.onnxproto import check_external_data


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
    adapter_inputs: dict[str, list] = field(repr=False)  # adapter (and LoRA) input name -> declared shape
    mixed: bool = False  # the graph takes adapter_columns: rows of different tasks in one run


@dataclass(frozen=True, eq=False)
class Task:
    """One task of a loaded bundle: prompt format, generation defaults and its ORT adapter (loaded once).
    Compared and hashed by identity: a task loaded again from another file is another task."""

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
    on a device that also runs other work (or serves several calls at once) spinning threads lose their cores
    and decode slower; on an otherwise idle device ``spin=True`` may shave wake-up latency (figures:
    docs/results.md, the peers' sleep and spin rows)."""
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


def graph_path(root: Path, m: Manifest, graph: str) -> Path:
    """The graph file to open: ``backbone.onnx`` (the manifest's) or, for ``graph="ort"``, the listed ``.ort``."""
    if graph == "onnx":
        return confined(root, m.backbone.file, "backbone.file")
    if graph != "ort":
        raise ConfigError(f"graph must be 'onnx' or 'ort', got {graph!r:.60}")
    if ORT_FILE not in m.files:
        raise BundleError(f"{root}: the bundle has no {ORT_FILE} (export it with --ort)")
    return confined(root, ORT_FILE, "files")


def providers_for(providers) -> list:
    """ONNX Runtime execution providers (names, or (name, options) pairs), checked against this build's (one
    ConfigError line listing them); default: the CPU provider."""
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str) or not isinstance(providers, (list, tuple)) or not providers:
        raise ConfigError(f"providers must be a non-empty list of provider names, got {providers!r:.80}")
    available = ort.get_available_providers()
    for p in providers:
        name = p[0] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], dict) else p
        if name not in available:
            why = "is not in this ONNX Runtime build"
            raise ConfigError(f"execution provider {name!r:.80} {why}; available: {available}")
    return list(providers)


def open_session(
    path: Path, threads: int | None, spin: bool = False, providers=None, options=None, listed: set[Path] | None = None
) -> ort.InferenceSession:
    """The graph at ``path`` in an ORT session with ``providers`` (:func:`providers_for`) and ``options``: an
    ``ort.SessionOptions`` used as given, or a dict of session config entries added to :func:`session_options`.
    A graph whose weights live in an external data file next to it (ONNX external data) is memory-mapped by ORT
    instead of parsed into the heap and copied (docs/runtime.md, "Memory"); its data files must stay in the
    graph's folder (ORT 1.23 would read any path) and, given ``listed`` (the manifest's checksummed files,
    resolved), be among them."""
    if path.suffix != ".ort":  # an .ort graph holds its weights itself
        check_external_data(path, listed)
    providers = providers_for(providers)
    so = options if isinstance(options, ort.SessionOptions) else session_options(threads, spin)
    if isinstance(options, dict):
        for k, v in options.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigError(f"session_options entries must be str -> str, got {k!r:.60}: {v!r:.60}")
            so.add_session_config_entry(k, v)
    elif options is not None and not isinstance(options, ort.SessionOptions):
        raise ConfigError(f"session_options must be an onnxruntime.SessionOptions or a dict, got {options!r:.80}")
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:  # ORT raises its own exception types for unreadable graphs
        raise BundleError(f"{path}: ONNX Runtime cannot load the graph ({str(e).splitlines()[0]})") from None


def _declared(args: list) -> dict[str, tuple[str | None, list]]:
    """ORT NodeArgs -> name -> (numpy dtype name, declared shape)."""
    return {a.name: (graphio.ORT_TYPES.get(a.type), a.shape) for a in args}


def check_graph(session: ort.InferenceSession, manifest: Manifest, path: Path) -> Graph:
    """The session's inputs/outputs against the graph IO the manifest's backbone declares."""
    bb, io = manifest.backbone, manifest.backbone.io()
    optional = _declared(session.get_overridable_initializers())
    adapter_names = set(io.names()["adapter_inputs"])
    adapters = {k: v for k, v in optional.items() if k in adapter_names or names.is_lora(k)}  # LoRA: if exported
    options = {s.name: optional[s.name] for s in io.options if s.name in optional}
    args = _declared(session.get_inputs()), {**adapters, **options}, _declared(session.get_outputs())
    graphio.check_graph_io(io, *args, str(path))
    sizes = (bb.n_layer, bb.n_head, bb.n_embd, bb.vocab_size, bb.n_positions, bb.n_kv_head, bb.head_dim)
    return Graph(*sizes, {k: v[1] for k, v in adapters.items()}, graphio.has_mixed_batches(optional))


def load_adapter(
    path: Path, graph: Graph, fingerprint: str, task: str, method: str = "adapter"
) -> tuple[ort.LoraAdapter, int, int]:
    """Check an adapter file's structure (bounds-checked: ORT's own reader can crash on a corrupt file), its
    identity record (backbone ``fingerprint`` and ``task``), its tensors against the graph's inputs of ``method``
    and their values, then load it once. -> (adapter, bottleneck or LoRA rank, task tokens)"""
    if not path.is_file():
        raise BundleError(f"{path}: adapter file not found")
    params, record = adapterfile.read_adapter_file(path)
    identity.check_adapter_identity(record, fingerprint, task, str(path))
    bottleneck, n_tokens = check_adapter_against_graph(
        {k: list(v.shape) for k, v in params.items()}, graph.adapter_inputs, graph.n_embd, str(path), method
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
    adapter, bottleneck, n_tokens = load_adapter(path, graph, fingerprint, name, entry.method)
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
