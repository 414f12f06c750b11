"""Training checkpoints that survive a kill at any moment: ``OUT/checkpoint/`` is swapped in whole.

A checkpoint directory is complete when its ``state.json`` (written last) names the step. :func:`publish`
writes a new one into a temp directory and swaps it in with :func:`edgevlm.core.fsutil.replace_dir`, so a
complete checkpoint always exists once the first one has been written; :func:`find` returns the newest
complete one, including one that a killed swap left beside ``OUT/checkpoint`` (and cleans the rest).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from edgevlm.core import fsutil

CHECKPOINT = "checkpoint"
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"


def step_of(ck: Path) -> int | None:
    """The step of the complete checkpoint ``ck`` (None: missing, half-written or unreadable)."""
    try:
        meta = json.loads((ck / STATE_JSON).read_text())
    except (OSError, ValueError):
        return None
    step = meta.get("step") if isinstance(meta, dict) else None
    ok = isinstance(step, int) and not isinstance(step, bool) and (ck / STATE_TENSORS).is_file()
    return step if ok else None


def publish(out: Path, write: Callable[[Path], None], meta: dict) -> Path:
    """Write a checkpoint: ``write(dir)`` puts the tensors in ``dir``, then ``meta`` (with ``step``) goes to
    ``state.json``; the directory is swapped in as ``out/checkpoint``. Returns it."""
    final = Path(out) / CHECKPOINT
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = fsutil.make_temp_dir(final)
    write(tmp)
    (tmp / STATE_JSON).write_text(json.dumps(meta))
    fsutil.replace_dir(tmp, final)
    fsutil.clean_stale(final)  # what killed earlier runs left beside it
    return final


def find(out: Path) -> Path | None:
    """The newest complete checkpoint in ``out`` (``checkpoint/``, or one a killed swap left as a temp or
    set-aside directory, which is moved into place); incomplete leftovers are deleted."""
    final = Path(out) / CHECKPOINT
    candidates = [final, *fsutil.leftovers(final, "tmp"), *(p / "dir" for p in fsutil.leftovers(final, "old"))]
    steps = {p: step_of(p) for p in candidates}
    best = max((p for p in candidates if steps[p] is not None), key=lambda p: steps[p], default=None)
    if best is not None and best != final:
        tmp = fsutil.make_temp_dir(final)
        best.rename(tmp / "ck")
        fsutil.replace_dir(tmp / "ck", final)
        tmp.rmdir()
    fsutil.clean_stale(final)
    return final if best is not None else None
