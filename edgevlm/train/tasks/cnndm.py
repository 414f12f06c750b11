"""CNN/DailyMail summarization: CSV or JSONL (``article``, ``highlights``), or ``.story`` files (``@highlight``).

The article is the source unit (one example per article), so held-out splits never share one.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.jsonl import records
from edgevlm.train.tasks.text import csv_rows, read_text

HIGHLIGHT = "@highlight"


def _join(lines) -> str:
    return " ".join(ln.strip() for ln in lines if ln.strip())


def parse_story(text: str, where: str) -> Example:
    """Article text before the first ``@highlight``; each marker's following paragraph is one summary sentence."""
    parts = text.split(HIGHLIGHT)
    article = _join(parts[0].splitlines())
    highlights = [_join(p.splitlines()) for p in parts[1:]]
    if len(parts) < 2:
        raise DataError(
            f"{where}: no {HIGHLIGHT} markers (a .story file needs the article, then @highlight paragraphs)"
        )
    if not article:
        raise DataError(f"{where}: empty article before the first {HIGHLIGHT}")
    if not all(highlights):
        raise DataError(f"{where}: empty {HIGHLIGHT} paragraph")
    return Example(article, " ".join(highlights))


def load_stories(path: str | Path) -> list[Example]:
    """A single ``.story`` file or a directory of them (sorted by name)."""
    path = Path(path)
    files = sorted(path.glob("*.story")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: directory has no .story files")
    return [parse_story(read_text(f), str(f)) for f in files]


def load_cnndm_jsonl(path: str | Path) -> list[Example]:
    """JSONL records with ``article`` and ``highlights`` (newline-separated sentences, as the HF release)."""
    out = [
        Example(_join(rec["article"].splitlines()), _join(rec["highlights"].splitlines()))
        for _, rec in records(path, ("article", "highlights"))
    ]
    if not out:
        raise DataError(f"{path}: no records")
    return out


def load_cnndm_csv(path: str | Path) -> list[Example]:
    """CSV with ``article`` and ``highlights`` columns, as the HF release exports it (``id`` and others ignored)."""
    out = [
        Example(_join(article.splitlines()), _join(highlights.splitlines()))
        for _, (article, highlights) in csv_rows(path, ("article", "highlights"), "CNN/DM CSV")
    ]
    if not out:
        raise DataError(f"{path}: no records")
    return out
