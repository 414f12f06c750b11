"""Trained adapter directories in, ONNX Runtime adapter files out.

An ``--adapter DIR`` is a training output (``DIR/<task>/`` per task), one
task's adapter directory (``adapter.json`` + ``adapter.safetensors``) or an
old single-task output; :func:`edgevlm.train.layout.adapter_dirs` finds
them. Each task becomes ``adapters/<task>.onnx_adapter`` (``onnxruntime.AdapterFormat``) whose
parameter names are exactly the graph's adapter inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevlm.core.adapterfile import read_parameters
from edgevlm.core.config import ADAPTER_JSON, AdapterMeta
from edgevlm.core.errors import ConfigError, TaskError
from edgevlm.train.adapters import check_backbone, load_adapter
from edgevlm.train.layout import adapter_dirs

ADAPTER_VERSION = 1


@dataclass
class TaskAdapter:
    """One task's trained tensors (graph names, graph layout) and metadata."""

    source: Path
    meta: AdapterMeta
    tensors: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        return self.meta.task.name

    def shapes(self) -> dict[str, list[int]]:
        return {k: list(v.shape) for k, v in self.tensors.items()}


def load_task_adapters(specs: list[str | Path]) -> list[TaskAdapter]:
    """Every task adapter under ``specs``; refuses two adapters with the same task name."""
    out: list[TaskAdapter] = []
    seen: dict[str, Path] = {}
    for spec in specs:
        for d in adapter_dirs(spec):
            meta, tensors = load_adapter(d)
            if meta.task.name in seen:
                raise TaskError(
                    f"--adapter {d}: task {meta.task.name!r} is also provided by {seen[meta.task.name]} "
                    "(task names must be unique)"
                )
            seen[meta.task.name] = d
            out.append(TaskAdapter(d, meta, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}))
    return out


def recorded_backbone(adapters: list[TaskAdapter]) -> str:
    """The backbone the adapters' adapter.json files name (``backbone_source``), 'tiny' when none does (older
    adapters); ConfigError in one line when they name different ones."""
    named = {a.meta.backbone_source: a for a in adapters if a.meta.backbone_source}
    if len(named) > 1:
        (s1, a1), (s2, a2) = list(named.items())[:2]
        raise ConfigError(
            f"--adapter: {a1.name!r} was trained on {s1!r} but {a2.name!r} on {s2!r}; one bundle has one backbone"
        )
    return next(iter(named), "tiny")


def check_fingerprints(adapters: list[TaskAdapter], fingerprint: str) -> None:
    for a in adapters:
        check_backbone(a.meta, fingerprint, a.source / ADAPTER_JSON)


def write_ort_adapter(path: str | Path, tensors: dict[str, np.ndarray], trailer: bytes = b"") -> None:
    """Write ``tensors`` as an ONNX Runtime adapter file (parameter name = graph input name), then ``trailer``
    (:func:`edgevlm.core.identity.adapter_trailer`: the file's backbone and task, which ORT does not read)."""
    import onnxruntime as ort

    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}  # alive until written
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(ADAPTER_VERSION)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in arrays.items()})
    fmt.export_adapter(str(path))
    del arrays
    if trailer:
        with open(path, "ab") as f:
            f.write(trailer)


def read_ort_adapter(path: str | Path) -> dict[str, np.ndarray]:
    """Parameters of an ONNX Runtime adapter file as numpy arrays (copies), read by the runtime's own
    bounds-checked reader (:mod:`edgevlm.core.adapterfile`), not ORT's, which trusts the file's offsets."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: adapter file not found")
    return read_parameters(Path(path))
