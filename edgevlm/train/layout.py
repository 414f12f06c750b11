"""Where training writes adapter directories and how every reader finds them (stdlib only).

A training run writes ``OUT/<task>/`` (``adapter.json`` + ``adapter.safetensors``)
for every task, whatever the task count; under ``--full`` one task's tuned
backbone sits in ``OUT/<task>/backbone/`` and several tasks share
``OUT/backbone/``. Run-level files (``train_summary.json``, ``checkpoint/``,
``distill/``) stay in ``OUT``. Readers (eval, export, distillation, the demo)
call :func:`adapter_dirs` / :func:`find_adapter`, which also accept one task
directory and the older single-task layout (``OUT/adapter.json``).
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.config import ADAPTER_JSON
from edgevlm.core.errors import ConfigError, TaskError

BACKBONE_DIR = "backbone"
SUMMARY_JSON = "train_summary.json"


def task_dir(out: str | Path, task: str) -> Path:
    """The adapter directory of ``task`` in the training output ``out``."""
    return Path(out) / task


def is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_JSON).is_file()


def adapter_dirs(path: str | Path, option: str = "--adapter") -> list[Path]:
    """``path`` itself if it is an adapter directory (a task dir or the old single-task layout),
    else its adapter subdirectories (a training output), sorted by name."""
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"{option} {p}: directory does not exist")
    if is_adapter_dir(p):
        return [p]
    subs = sorted(d for d in p.iterdir() if d.is_dir() and is_adapter_dir(d))
    if not subs:
        raise ConfigError(
            f"{option} {p}: no {ADAPTER_JSON} in it or in its subdirectories (expected an 'edgevlm train' output)"
        )
    return subs


def find_adapter(path: str | Path, task: str | None = None, option: str = "--adapter") -> Path:
    """The one adapter directory under ``path``: the only one there is, else the ``task`` subdirectory.

    The task of a single directory is checked when it is loaded (``adapter.json`` names it).
    """
    dirs = adapter_dirs(path, option)
    if len(dirs) == 1:
        return dirs[0]
    names = [d.name for d in dirs]
    if task is None:
        raise ConfigError(f"{option} {path}: it holds adapters for tasks {names}: pass --task")
    for d in dirs:
        if d.name == task:
            return d
    raise TaskError(f"{option} {path}: no adapter for task {task!r}; it holds adapters for tasks {names}")
