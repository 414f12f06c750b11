"""E2E NLG Challenge CSV (``mr``, ``ref``; several references per meaning representation)."""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.text import csv_rows


def load_e2e(path: str | Path) -> list[Example]:
    """One :class:`Example` per CSV row; each row's ``refs`` holds every reference of its MR.

    The MR is the source unit: held-out splits keep all rows of an MR on one side. Use
    :func:`edgevlm.train.tasks.loaders.group_by_source` for the one-example-per-MR view
    that multi-reference evaluation needs.
    """
    rows = [(mr, ref) for _, (mr, ref) in csv_rows(path, ("mr", "ref"), "E2E CSV")]
    if not rows:
        raise DataError(f"{path}: no records")
    refs: dict[str, list[str]] = {}
    for mr, ref in rows:
        refs.setdefault(mr, []).append(ref)
    return [Example(mr, ref, refs[mr]) for mr, ref in rows]
