"""Adapter directories: ``adapter.safetensors`` (graph-named tensors) + ``adapter.json`` (never pickled)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from edgevlm.core.config import ADAPTER_JSON, ADAPTER_WEIGHTS, AdapterMeta
from edgevlm.core.errors import BackboneError, ConfigError
from edgevlm.core.identity import check_values


def save_adapter(directory: str | Path, tensors: dict[str, np.ndarray], meta: AdapterMeta) -> Path:
    """Write tensors and metadata into ``directory`` (each file via a temporary name + rename)."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".adapter.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
            tmp,
            metadata={"task": meta.task.name, "backbone_fingerprint": meta.backbone_fingerprint},
        )
        os.replace(tmp, directory / ADAPTER_WEIGHTS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta.save(directory)
    return directory


def load_adapter(directory: str | Path) -> tuple[AdapterMeta, dict[str, np.ndarray]]:
    """Read an adapter directory; ConfigError names the file when something is missing."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"adapter directory {directory} does not exist")
    meta = AdapterMeta.load(directory)
    weights = directory / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{weights}: missing (expected the adapter's tensors)")
    try:
        tensors, stored = load_file(str(weights)), _metadata(weights)
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ConfigError(f"{weights}: cannot read safetensors ({e})") from None
    fp = stored.get("backbone_fingerprint")
    if fp is not None and fp != meta.backbone_fingerprint:
        raise ConfigError(
            f"{weights}: trained on backbone {fp} but {ADAPTER_JSON} names another backbone "
            f"{meta.backbone_fingerprint} (files of different adapters)"
        )
    check_values(tensors, str(weights), ConfigError)
    return meta, tensors


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return f.metadata() or {}


def check_backbone(meta: AdapterMeta, fingerprint: str, source: str | Path) -> None:
    """Refuse an adapter trained on another backbone."""
    if meta.backbone_fingerprint != fingerprint:
        named = f" ({meta.backbone_source!r}: pass --backbone {meta.backbone_source} or leave --backbone out)"
        raise BackboneError(
            f"{source}: adapter for task {meta.task.name!r} was trained on another backbone"
            f"{named if meta.backbone_source else ''} (fingerprint {meta.backbone_fingerprint} != {fingerprint})"
        )
