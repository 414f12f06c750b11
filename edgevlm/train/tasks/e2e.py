"""E2E NLG Challenge CSV (``mr``, ``ref``; several references per meaning representation)."""

from __future__ import annotations

import csv
from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example


def _columns(path: Path, header: list[str] | None) -> tuple[str, str]:
    """The actual names of the ``mr`` and ``ref`` columns (case-insensitive)."""
    lower = {h.strip().lower(): h for h in header or []}
    if "mr" not in lower or "ref" not in lower:
        raise DataError(f"{path}:1: E2E CSV header must contain 'mr' and 'ref' columns, got {header}")
    return lower["mr"], lower["ref"]


def load_e2e(path: str | Path) -> list[Example]:
    """One :class:`Example` per CSV row; each row's ``refs`` holds every reference of its MR.

    Use :func:`edgevlm.train.tasks.loaders.group_by_source` for the one-example-per-MR view
    that multi-reference evaluation needs.
    """
    path = Path(path)
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        mr_col, ref_col = _columns(path, reader.fieldnames)
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row or None in row.values():
                    raise DataError(
                        f"{where}: expected {len(reader.fieldnames)} fields, got a row with a different count"
                    )
                mr, ref = row[mr_col].strip(), row[ref_col].strip()
                if not mr or not ref:
                    raise DataError(f"{where}: empty '{mr_col if not mr else ref_col}'")
                rows.append((mr, ref))
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    if not rows:
        raise DataError(f"{path}: no records")
    refs: dict[str, list[str]] = {}
    for mr, ref in rows:
        refs.setdefault(mr, []).append(ref)
    return [Example(mr, ref, refs[mr]) for mr, ref in rows]
