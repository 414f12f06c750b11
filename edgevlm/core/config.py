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
        if not _count(self.bottleneck, 1):
            raise ConfigError(f"bottleneck for task {self.name!r} must be a positive integer, got {self.bottleneck!r}")
        specials = self.special_tokens
        if not isinstance(specials, (list, tuple)) or not specials or len(set(map(str, specials))) != len(specials):
            raise ConfigError(f"task {self.name!r}: special_tokens must be a non-empty list of distinct strings")
        for tok in specials:
            if not isinstance(tok, str) or not re.fullmatch(r"<[^<>\s]+>", tok):
                raise ConfigError(f"task {self.name!r}: special token {tok!r} must look like <name>")
        if not isinstance(self.template, str):
            raise ConfigError(f"task {self.name!r}: template must be a string, got {self.template!r:.60}")
        check_template(self.template, specials)
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"task {self.name!r}: metric must be a metric name, got {self.metric!r:.60}")
        for k in ("max_new_tokens", "max_source_tokens", "max_target_tokens"):
            v = getattr(self, k)
            if not (_count(v, 1) or (v is None and k != "max_new_tokens")):
                raise ConfigError(f"task {self.name!r}: {k} must be a positive integer, got {v!r:.60}")

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
    backbone_source: str = ""  # the backbone it was trained on: a built-in name or an absolute path ("": older)

    def __post_init__(self) -> None:
        if not _count(self.format_version, 0) or self.format_version != ADAPTER_FORMAT_VERSION:
            raise ConfigError(
                f"adapter format_version {self.format_version!r} is not supported (expected {ADAPTER_FORMAT_VERSION})"
            )
        fp = self.backbone_fingerprint
        if not isinstance(fp, str) or not re.fullmatch(r"[0-9A-Za-z_\-]{1,128}", fp):
            raise ConfigError(f"adapter.json: backbone_fingerprint must be the backbone's fingerprint, got {fp!r:.60}")
        cfg = self.backbone_config
        if not isinstance(cfg, dict) or not all(isinstance(k, str) and _count(v, 0) for k, v in cfg.items()):
            raise ConfigError(f"adapter.json: backbone_config must map size names to integers, got {cfg!r:.60}")
        if not _count(self.trainable_params, 0):
            raise ConfigError(f"adapter.json: trainable_params must be a count >= 0, got {self.trainable_params!r:.60}")
        share = self.trainable_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 100:
            raise ConfigError(f"adapter.json: trainable_share must be a percentage in [0, 100], got {share!r:.60}")
        src = self.backbone_source
        if not isinstance(src, str) or len(src) > 4096 or any(c in src for c in "\n\r\x00"):
            raise ConfigError(f"adapter.json: backbone_source must be a backbone name or path, got {src!r:.60}")
        if not isinstance(self.full_finetune, bool) or not isinstance(self.training, dict):
            raise ConfigError("adapter.json: full_finetune must be true/false and training an object")

    def save(self, directory: str | Path) -> None:
        d = asdict(self)
        atomic_write_text(Path(directory) / ADAPTER_JSON, json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> AdapterMeta:
        path = Path(directory) / ADAPTER_JSON
        if not path.is_file():
            raise ConfigError(f"{path}: no adapter.json (expected an adapter directory made by 'edgevlm train')")
        try:
            d = json.loads(path.read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: invalid JSON ({e})") from None
        except RecursionError:
            raise ConfigError(f"{path}: invalid JSON (nested too deeply)") from None
        if not isinstance(d, dict) or not isinstance(d.get("task"), dict):
            raise ConfigError(f"{path}: expected an object with a 'task' object")
        try:
            d["task"] = TaskConfig.from_dict(d["task"], str(path))
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path}: missing or unexpected field {e}") from None
        except ConfigError as e:
            msg = str(e).removeprefix(f"{ADAPTER_JSON}: ")
            raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def _count(v: Any, low: int) -> bool:
    """An int (not a bool) >= ``low``."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


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
