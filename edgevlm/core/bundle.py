"""Bundle format (stdlib only): manifest schema, path confinement, checksums, graph/adapter agreement.

A bundle is a directory::

    manifest.json
    tokenizer.json
    backbone.onnx                 (+ backbone.onnx.data when large)
    adapters/<task>.onnx_adapter  (ONNX Runtime adapter format, one per task)

The manifest's fields are the dataclasses of :mod:`edgevlm.core.manifest`;
this module checks them against the directory (confined paths, checksums)
and checks adapter tensors against the graph, for both the exporter and the
runtime, so a graph and its adapter files agree by construction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgevlm.core import identity, names
from edgevlm.core.errors import BundleError
from edgevlm.core.manifest import (  # noqa: F401  (the contract's names, importable from here)
    QUANT_MODES,
    SCHEMA_VERSION,
    TASK_NAME,
    BackboneRecord,
    GenerationDefaults,
    Manifest,
    TaskEntry,
    TokenizerRecord,
)

MANIFEST = "manifest.json"
BACKBONE_FILE = "backbone.onnx"
ORT_FILE = "backbone.ort"  # the same graph in ONNX Runtime's format (export --ort; optional)
ORT_CONFIG = "required_operators.config"  # its operators, for a reduced ONNX Runtime build (export --ort)
TOKENIZER_FILE = "tokenizer.json"
ADAPTER_DIR = "adapters"
ADAPTER_SUFFIX = ".onnx_adapter"
MAX_JSON_BYTES = 16 << 20  # a manifest of thousands of tasks is ~ 1 MB


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def confined(root: Path, rel: str, what: str) -> Path:
    """``root / rel`` if ``rel`` is a relative path staying inside ``root``; BundleError otherwise."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or "\\" in rel:
        raise BundleError(f"{root / MANIFEST}: {what} {rel!r} must be a relative path inside the bundle")
    full = (root / rel).resolve()
    if not full.is_relative_to(root.resolve()):
        raise BundleError(f"{root / MANIFEST}: {what} {rel!r} points outside the bundle directory")
    return full


def check_paths(m: Manifest, root: Path) -> Manifest:
    """Every path stays inside ``root`` and every referenced file has a checksum; returns ``m``."""
    for rel in m.files:
        confined(root, rel, "file")
    for rel in m.referenced_files():
        confined(root, rel, "file")
        if rel not in m.files:
            raise BundleError(f"{root / MANIFEST}: {rel} is used but has no checksum under 'files'")
    return m


def verify_files(m: Manifest, root: Path) -> None:
    """Every listed file exists, has its recorded size (checked first: no hashing of a wrong file) and
    matches its sha256 (the error names the file)."""
    paths = {rel: confined(root, rel, "file") for rel in m.files}
    for rel, path in paths.items():
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing")
        size = path.stat().st_size
        if rel in m.sizes and size != m.sizes[rel]:
            raise BundleError(
                f"{path}: checksum mismatch (file truncated or modified: {size} bytes, manifest: {m.sizes[rel]})"
            )
    for rel, digest in m.files.items():
        path = paths[rel]
        if sha256_file(path) != digest:
            raise BundleError(f"{path}: checksum mismatch (file truncated or modified)")


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file's content; BundleError naming the file when it is too large, not UTF-8, nested too
    deeply or not valid JSON."""
    size = path.stat().st_size
    if size > limit:
        raise BundleError(f"{path}: {size} bytes, more than a manifest or sidecar may have ({limit})")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: invalid JSON ({e})") from None
    except RecursionError:
        raise BundleError(f"{path}: invalid JSON (nested too deeply)") from None


def load_manifest(root: str | Path, verify: bool = True) -> Manifest:
    """Read and validate a bundle's manifest (types, values, paths) and, with ``verify``, every checksum."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: not found (is {root} an edgevlm bundle?)")
    m = check_paths(Manifest.from_json(read_json(path), str(path)), root)
    if verify:
        verify_files(m, root)
    return m


def find_task_entry(path: Path, entry: Mapping | None, backbone: BackboneRecord) -> tuple[str, TaskEntry, str]:
    """(name, task entry, where it came from) for an adapter file hot-added to a runtime with ``backbone``.

    From ``entry`` (manifest task fields, optional ``name``), else ``<file>.json``
    next to it (with ``name``), else the manifest of the bundle the file sits
    in, whose backbone must be the same one (by weight fingerprint, so any
    quantization of it fits).
    """
    if entry is not None:
        if not isinstance(entry, Mapping):
            raise BundleError(f"add_task(entry=...): expected a dict of manifest task fields, got {entry!r:.60}")
        return _standalone(entry, entry.get("name", path.name.split(".")[0]), "add_task(entry=...)", backbone)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        d = read_json(sidecar)
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
            raise BundleError(f"{sidecar}: expected an object with the task's 'name' and manifest fields")
        return _standalone(d, d["name"], str(sidecar), backbone)
    root = path.resolve().parent.parent
    if path.resolve().parent.name == ADAPTER_DIR and (root / MANIFEST).is_file():
        m = load_manifest(root)
        if m.backbone.fingerprint != backbone.fingerprint or m.backbone.io() != backbone.io():
            raise BundleError(f"{root / MANIFEST}: bundle has another backbone; its adapters do not fit")
        for name, e in m.tasks.items():
            if confined(root, e.adapter_file, "file") == path.resolve():
                return name, e, str(root / MANIFEST)
    raise BundleError(f"{path}: no task description (pass entry=..., or put {sidecar.name} next to it)")


def _standalone(d: Mapping, name: Any, where: str, backbone: BackboneRecord) -> tuple[str, TaskEntry, str]:
    """A task description outside a manifest: it must name the backbone its adapter was trained on."""
    if not (isinstance(name, str) and TASK_NAME.match(name)):
        raise BundleError(f"{where}: name: expected a task name of letters, digits, '_' or '-', got {name!r:.60}")
    entry = TaskEntry.from_json(d, where, backbone.vocab_size, "")
    if not entry.backbone_fingerprint:
        raise BundleError(
            f"{where}: backbone_fingerprint: missing (needed to tell which backbone the adapter belongs to; "
            "copy it from the manifest the adapter was exported with)"
        )
    identity.check_task_fingerprint(entry.backbone_fingerprint, backbone.fingerprint, where)
    return name, entry, where


def describe(m: Manifest) -> list[str]:
    """Lines for ``edgevlm run --list``: the backbone, then one line per task."""
    b = m.backbone
    lines = [
        f"{b.architecture} {b.source or 'backbone'}: n_layer={b.n_layer} n_embd={b.n_embd} n_head={b.n_head} "
        f"n_kv_head={b.n_kv_head} vocab={b.vocab_size} context={b.n_positions} quantization={b.quantization}"
    ]
    for name, t in sorted(m.tasks.items()):
        lines.append(
            f"{name}\tbottleneck={t.bottleneck}\tparams={t.trainable_params:,} ({t.trainable_share:.2f}%)"
            f"\ttokens={' '.join(t.special_tokens)}\ttemplate={t.template!r}"
        )
    return lines


def check_adapter_against_graph(
    params: Mapping[str, Sequence[int]],
    graph_inputs: Mapping[str, Sequence],
    n_embd: int,
    source: str,
    method: str = "adapter",
) -> tuple[int, int]:
    """Check adapter tensors (name -> shape) against the graph's adapter inputs (name -> declared shape).

    Every input of the task's ``method`` must be present (a bottleneck task: every adapter input; a LoRA task:
    every LoRA input) with a shape that fits the declared one (symbolic dims bind consistently: one bottleneck,
    one task-token count, one rank per LoRA projection); the other method's inputs keep their identity
    defaults. Returns ``(bottleneck or the largest LoRA rank, n_task_tokens)``; raises BundleError naming
    ``source`` and the offending tensor.
    """
    if method == "lora":
        expected = [n for n in graph_inputs if names.is_lora(n)]
        if not expected:
            raise BundleError(f"{source}: a LoRA task but the graph has no LoRA inputs (export it with --lora)")
    else:
        expected = [n for n in graph_inputs if n.startswith("adapter.") or n == names.TASK_EMBEDDINGS]
    missing = sorted(set(expected) - set(params))
    unknown = sorted(set(params) - set(expected))
    if missing or unknown:
        raise BundleError(
            f"{source}: adapter does not match the graph (missing {missing[:3]}, not graph inputs {unknown[:3]})"
        )
    bound: dict[str, int] = {}
    for name in expected:
        got, decl = list(params[name]), list(graph_inputs[name])
        if len(got) != len(decl):
            raise BundleError(f"{source}: {name} has rank {len(got)}, the graph expects {decl}")
        for g, d in zip(got, decl):
            if isinstance(d, int) and d > 0 and g != d:
                raise BundleError(f"{source}: {name} has shape {got}, the graph expects {decl}")
            if isinstance(d, str) and bound.setdefault(d, g) != g:
                raise BundleError(f"{source}: {name} has {d}={g} but another tensor has {d}={bound[d]}")
    if method == "lora":
        if bound.get(names.LORA_ROWS_DIM) != 1:
            raise BundleError(f"{source}: LoRA tensors must have {names.LORA_ROWS_DIM}=1 (one task)")
        return max((v for k, v in bound.items() if k.startswith(names.LORA_RANK_DIM)), default=0), 0
    return bound.get(names.BOTTLENECK_DIM, 0), bound.get(names.TASK_TOKENS_DIM, 0)
