"""Reading task data files into :class:`Example` lists (errors name the file and line)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from . import Example


def load_jsonl(path: str | Path) -> list[Example]:
    """JSONL with ``source`` and ``target`` (optionally ``refs``) per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object with 'source' and 'target'")
            for key in ("source", "target"):
                if not isinstance(rec.get(key), str) or not rec[key].strip():
                    raise DataError(f"{path}:{line_no}: missing or empty '{key}'")
            out.append(Example(rec["source"], rec["target"], list(rec.get("refs") or [])))
    if not out:
        raise DataError(f"{path}: no records")
    return out


def load_examples(path: str | Path, task: str, fmt: str | None = None) -> list[Example]:
    """Load ``path`` for ``task``; ``fmt`` overrides format inference."""
    fmt = fmt or "jsonl"
    if fmt != "jsonl":
        raise DataError(f"{path}: format {fmt!r} is not supported; supported: jsonl")
    return load_jsonl(path)
