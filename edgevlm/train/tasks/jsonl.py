"""Reading JSONL records whose required fields are non-empty strings (errors name file and line)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks.text import read_lines


def records(path: str | Path, keys: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_no, record)`` for each non-blank line; every ``keys`` field must be a non-empty string."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    for line_no, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
        except RecursionError:
            raise DataError(f"{path}:{line_no}: invalid JSON (nested too deeply)") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{line_no}: expected a JSON object with " + " and ".join(f"'{k}'" for k in keys))
        for key in keys:
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise DataError(f"{path}:{line_no}: missing or empty '{key}'")
        yield line_no, rec
