"""Validated task/adapter configuration, saved as JSON with a format version (stdlib only)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevlm.core.errors import ConfigError
from edgevlm.core.prompts import check_template

ADAPTER_FORMAT_VERSION = 1
ADAPTER_JSON = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


@dataclass
class TaskConfig:
    """One task: its adapter size, task-embedding tokens and prompt template.

    ``special_tokens`` become task-local embedding ids; ``template`` wraps the
    input and must contain ``{input}`` once. ``max_new_tokens`` is the
    generation default; ``metric`` names the task's evaluation metric.
    """

    name: str
    bottleneck: int
    special_tokens: list[str]
    template: str
    max_new_tokens: int = 64
    metric: str = "bleu"
    max_source_tokens: int | None = None
    max_target_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(f"task name {self.name!r}: expected 1-64 letters, digits, '_' or '-'")
        if not isinstance(self.bottleneck, int) or isinstance(self.bottleneck, bool) or self.bottleneck <= 0:
            raise ConfigError(f"bottleneck for task {self.name!r} must be a positive integer, got {self.bottleneck!r}")
        if not self.special_tokens or len(set(self.special_tokens)) != len(self.special_tokens):
            raise ConfigError(f"task {self.name!r}: special_tokens must be a non-empty list of distinct strings")
        for tok in self.special_tokens:
            if not re.fullmatch(r"<[^<>\s]+>", tok):
                raise ConfigError(f"task {self.name!r}: special token {tok!r} must look like <name>")
        check_template(self.template, self.special_tokens)
        if self.max_new_tokens <= 0:
            raise ConfigError(f"task {self.name!r}: max_new_tokens must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> TaskConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"{source}: unknown task fields {sorted(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None


@dataclass
class AdapterMeta:
    """Contents of ``adapter.json``: the task, the backbone it belongs to, how it was trained."""

    task: TaskConfig
    backbone_fingerprint: str
    backbone_config: dict[str, int]
    trainable_params: int = 0
    trainable_share: float = 0.0
    full_finetune: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = ADAPTER_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != ADAPTER_FORMAT_VERSION:
            raise ConfigError(
                f"adapter format_version {self.format_version} is not supported (expected {ADAPTER_FORMAT_VERSION})"
            )
        if not self.backbone_fingerprint:
            raise ConfigError("adapter.json: backbone_fingerprint is empty")

    def save(self, directory: str | Path) -> None:
        d = asdict(self)
        atomic_write_text(Path(directory) / ADAPTER_JSON, json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> AdapterMeta:
        path = Path(directory) / ADAPTER_JSON
        if not path.is_file():
            raise ConfigError(f"{path}: no adapter.json (expected an adapter directory made by 'edgevlm train')")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e})") from None
        try:
            d["task"] = TaskConfig.from_dict(d["task"], str(path))
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path}: missing or unexpected field {e}") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
