"""Reading data files as text: UTF-8 (a leading BOM dropped), CSV rows with named columns.

Every failure is one :class:`DataError` naming the file and the line, so that
invalid UTF-8 or a broken CSV record can be found in the file at once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from edgevlm.core.errors import DataError

BOM = "\ufeff"
CSV_FIELD_LIMIT = 1 << 24  # CNN/DM articles exceed csv's default 128 KiB field limit in the full release


def read_text(path: str | Path) -> str:
    """The whole file as text; invalid UTF-8 is a DataError naming the file and the line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return text[1:] if text.startswith(BOM) else text


def read_lines(path: str | Path) -> list[str]:
    """Lines split on ``\\n`` only (unicode line separators inside a sentence keep alignment), ``\\r`` dropped."""
    lines = [ln.rstrip("\r") for ln in read_text(path).split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def csv_columns(path: Path, header: list[str] | None, required: tuple[str, ...], kind: str) -> list[str]:
    """The actual header names of the ``required`` columns (matched case-insensitively)."""
    lower = {h.strip().lower(): h for h in header or []}
    if not all(r in lower for r in required):
        cols = " and ".join(f"'{r}'" for r in required)
        raise DataError(f"{path}:1: {kind} header must contain {cols} columns, got {header}")
    return [lower[r] for r in required]


def csv_rows(path: str | Path, required: tuple[str, ...], kind: str) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(where, values)`` per record: ``where`` is ``FILE:LINE`` of the record's first line,
    ``values`` the stripped, non-empty ``required`` fields (quoted fields may span lines)."""
    path = Path(path)
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    old_limit = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        cols = csv_columns(path, reader.fieldnames, required, kind)
        start = reader.line_num + 1
        for row in reader:
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if None in row or None in row.values():
                raise DataError(f"{where}: expected {len(reader.fieldnames)} fields, got a row with a different count")
            values = [row[c].strip() for c in cols]
            for c, v in zip(cols, values):
                if not v:
                    raise DataError(f"{where}: empty '{c}'")
            yield where, values
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    finally:
        csv.field_size_limit(old_limit)
