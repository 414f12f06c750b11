"""Bundle format (stdlib only): manifest schema, path confinement, checksums, graph/adapter agreement.

A bundle is a directory::

    manifest.json
    tokenizer.json
    backbone.onnx                 (+ backbone.onnx.data when large)
    adapters/<task>.onnx_adapter  (ONNX Runtime adapter format, one per task)

The exporter writes it and the runtime reads it; both validate with the
functions below, so a graph and its adapter files agree by construction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgevlm.core import names
from edgevlm.core.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
BACKBONE_FILE = "backbone.onnx"
TOKENIZER_FILE = "tokenizer.json"
ADAPTER_DIR = "adapters"
ADAPTER_SUFFIX = ".onnx_adapter"
QUANT_MODES = ("fp32", "int8", "int4")

BACKBONE_KEYS = ("file", "n_layer", "n_head", "n_embd", "vocab_size", "n_positions", "quantization")
TASK_KEYS = (
    "adapter_file",
    "bottleneck",
    "special_tokens",
    "special_token_ids",
    "template",
    "eos_token_id",
    "generation",
)


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


def io_spec(n_layer: int) -> dict[str, list[str]]:
    """The ``io`` section: graph input/output names in order (declared once, from :mod:`names`)."""
    return {
        "inputs": [names.INPUT_IDS, names.ATTENTION_MASK] + names.past_names(n_layer),
        "outputs": [names.LOGITS] + names.present_names(n_layer),
        "adapter_inputs": names.adapter_names(n_layer),
    }


def _require(d: Mapping, keys: Sequence[str], where: str) -> None:
    if not isinstance(d, Mapping):
        raise BundleError(f"{where}: expected an object")
    missing = [k for k in keys if k not in d]
    if missing:
        raise BundleError(f"{where}: missing field(s) {missing}")


def validate_manifest(m: Any, root: Path) -> dict:
    """Check the manifest's structure, schema version and paths; returns it unchanged."""
    where = str(root / MANIFEST)
    _require(m, ("schema_version", "backbone", "tokenizer", "io", "tasks", "files"), where)
    if m["schema_version"] != SCHEMA_VERSION:
        raise BundleError(
            f"{where}: schema_version {m['schema_version']!r} is not supported (this edgevlm reads {SCHEMA_VERSION})"
        )
    _require(m["backbone"], BACKBONE_KEYS, f"{where}: backbone")
    if m["backbone"]["quantization"] not in QUANT_MODES:
        raise BundleError(f"{where}: backbone.quantization must be one of {QUANT_MODES}")
    _require(m["tokenizer"], ("file",), f"{where}: tokenizer")
    if m["io"] != io_spec(int(m["backbone"]["n_layer"])):
        raise BundleError(
            f"{where}: io names do not match this edgevlm's graph layout for n_layer={m['backbone']['n_layer']}"
        )
    if not isinstance(m["files"], Mapping) or not m["files"]:
        raise BundleError(f"{where}: files must list every file with its sha256")
    for rel in m["files"]:
        confined(root, rel, "file")
    referenced = [m["backbone"]["file"], m["tokenizer"]["file"]]
    for name, t in m["tasks"].items():
        _require(t, TASK_KEYS, f"{where}: tasks.{name}")
        referenced.append(t["adapter_file"])
    for rel in referenced:
        confined(root, rel, "file")
        if rel not in m["files"]:
            raise BundleError(f"{where}: {rel} is used but has no checksum under 'files'")
    return m


def verify_files(m: Mapping, root: Path) -> None:
    """Every listed file exists and matches its sha256 (the error names the file)."""
    for rel, digest in m["files"].items():
        path = confined(root, rel, "file")
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing")
        if sha256_file(path) != digest:
            raise BundleError(f"{path}: checksum mismatch (file truncated or modified)")


def load_manifest(root: str | Path, verify: bool = True) -> dict:
    """Read, validate and (optionally) checksum a bundle's manifest."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: not found (is {root} an edgevlm bundle?)")
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: invalid JSON ({e})") from None
    validate_manifest(m, root)
    if verify:
        verify_files(m, root)
    return m


def check_adapter_against_graph(
    params: Mapping[str, Sequence[int]], graph_inputs: Mapping[str, Sequence], n_embd: int, source: str
) -> tuple[int, int]:
    """Check adapter tensors (name -> shape) against the graph's adapter inputs (name -> declared shape).

    Every adapter input must be present with a shape that fits the declared
    one (symbolic dims bind consistently: one bottleneck, one task-token
    count). Returns ``(bottleneck, n_task_tokens)``; raises BundleError naming
    ``source`` and the offending tensor.
    """
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
    return bound.get(names.BOTTLENECK_DIM, 0), bound.get(names.TASK_TOKENS_DIM, 0)
