"""The backbone's identity inside its graph (stdlib only): the exporter writes the manifest's backbone
record (weight fingerprint, sizes, quantization) into ``backbone.onnx``'s metadata, and the runtime compares
the two at load. A graph from another backbone (same layout, other weights), another quantization or
another context length cannot pass for the one the manifest describes, even with rewritten checksums.

The fingerprint is the sha256 over every fp32 weight tensor of the source checkpoint (and its sizes), see
:meth:`edgevlm.train.arch.base.Arch.fingerprint`; adapters record the fingerprint of the backbone they
were trained on, and task entries and adapter sidecars carry it as ``backbone_fingerprint``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgevlm.core.errors import BundleError

GRAPH_METADATA_KEY = "edgevlm.backbone"
FIELDS = ("fingerprint", "architecture", "quantization", "n_layer", "n_head", "n_kv_head", "head_dim", "n_embd")
FIELDS += ("vocab_size", "n_positions", "kv_cache")
LATER_FIELDS = {"kv_cache": "concat"}  # fields graphs exported before them lack: their value then
MAX_ABS_WEIGHT = 1e4  # adapter/task-embedding values beyond this are refused as absurd (trained ones are < 10)
REEXPORT = "re-export the bundle with this edgevlm ('edgevlm export ... --force')"


def graph_metadata(backbone: Any) -> dict[str, str]:
    """The metadata the exporter stores in the graph for ``backbone`` (a manifest BackboneRecord)."""
    return {GRAPH_METADATA_KEY: json.dumps({k: getattr(backbone, k) for k in FIELDS}, sort_keys=True)}


def check_graph_metadata(metadata: Mapping[str, str], backbone: Any, where: str) -> None:
    """The graph's stored record must equal the manifest's ``backbone`` field by field; BundleError naming
    ``where`` (the graph file) and the first field that differs."""
    raw = metadata.get(GRAPH_METADATA_KEY)
    if raw is None:
        raise BundleError(f"{where}: the graph carries no backbone fingerprint (older or foreign export); {REEXPORT}")
    try:
        stored = json.loads(raw)
    except ValueError:
        stored = None
    if not isinstance(stored, dict):
        raise BundleError(f"{where}: metadata {GRAPH_METADATA_KEY} is not a JSON object; {REEXPORT}")
    for k in FIELDS:
        value = stored.get(k, LATER_FIELDS.get(k))
        if value != getattr(backbone, k):
            raise BundleError(
                f"{where}: the graph was exported for backbone.{k}={value!r} but the manifest says "
                f"{getattr(backbone, k)!r} (graph and manifest belong to different exports)"
            )


def check_task_fingerprint(task_fp: str, backbone_fp: str, where: str) -> None:
    """A task entry's ``backbone_fingerprint`` must be the loaded backbone's."""
    if task_fp != backbone_fp:
        raise BundleError(
            f"{where}: backbone_fingerprint {task_fp!r}: the adapter was trained on another backbone "
            f"(this one is {backbone_fp!r})"
        )


def check_values(tensors: Mapping[str, Any], where: str, error: type[Exception], limit: float = MAX_ABS_WEIGHT):
    """Refuse NaN, infinity or a magnitude over ``limit`` in any of ``tensors`` (name -> array) with
    ``error`` naming ``where`` and the tensor."""
    for name, t in tensors.items():
        a = np.asarray(t)
        if a.dtype.kind != "f" or not a.size:
            continue
        bad = ~np.isfinite(a)
        if not bad.any():
            bad = np.abs(a) > limit
        if bad.any():
            v = float(a[bad].flat[0])
            what = "NaN" if math.isnan(v) else "infinity" if math.isinf(v) else f"the absurd value {v:.3g}"
            raise error(f"{where}: tensor {name} holds {what} ({int(bad.sum())} of {a.size} values); refused")


# An adapter file's own identity: ONNX Runtime's adapter format has no string metadata and refuses parameters
# that are not graph inputs, so the exporter appends a trailer after the FlatBuffer (ORT ignores bytes past the
# offsets it follows): the record {"backbone_fingerprint", "task"} as UTF-8 JSON, its byte length (uint32 LE),
# then ADAPTER_MAGIC. Both runtimes read it with their own bounds-checked readers before ORT sees the file.
ADAPTER_MAGIC = b"EVLMID01"
MAX_ADAPTER_RECORD = 4096


def adapter_trailer(fingerprint: str, task: str) -> bytes:
    """The bytes the exporter appends to a task's adapter file."""
    rec = json.dumps({"backbone_fingerprint": fingerprint, "task": task}, sort_keys=True).encode("utf-8")
    return rec + len(rec).to_bytes(4, "little") + ADAPTER_MAGIC


def split_adapter(data: bytes, where: str) -> tuple[int, dict | None]:
    """(length of the FlatBuffer part, identity record or None when the file has no trailer); BundleError
    naming ``where`` for a trailer that is cut, too long or not the expected JSON object."""
    if len(data) < 12 or data[-8:] != ADAPTER_MAGIC:
        return len(data), None
    n = int.from_bytes(data[-12:-8], "little")
    if n > MAX_ADAPTER_RECORD or n > len(data) - 12:
        raise BundleError(f"{where}: adapter identity record of {n} bytes does not fit the file")
    start = len(data) - 12 - n
    try:
        rec = json.loads(data[start : start + n].decode("utf-8"))
    except (ValueError, RecursionError):
        rec = None
    if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("backbone_fingerprint", "task")):
        raise BundleError(f"{where}: adapter identity record is not a JSON object with backbone_fingerprint and task")
    return start, rec


def check_adapter_identity(record: dict | None, fingerprint: str, task: str, where: str) -> None:
    """The adapter file's own record must name this backbone and this task. Files without one (exported before
    the record existed) are refused: their origin cannot be told."""
    if record is None:
        raise BundleError(f"{where}: the adapter file carries no backbone identity (older export); {REEXPORT}")
    if record["backbone_fingerprint"] != fingerprint:
        raise BundleError(
            f"{where}: the adapter file was exported for backbone {record['backbone_fingerprint']!r}, "
            f"not this one ({fingerprint!r})"
        )
    if record["task"] != task:
        raise BundleError(f"{where}: the adapter file is task {record['task']!r}, not {task!r}")
