"""CNN/DailyMail summarization: JSONL (``article``, ``highlights``) or ``.story`` files (``@highlight`` markers)."""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.jsonl import records

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
    out = []
    for f in files:
        try:
            out.append(parse_story(f.read_text(encoding="utf-8"), str(f)))
        except UnicodeDecodeError as e:
            raise DataError(f"{f}: not UTF-8 text ({e.reason})") from None
    return out


def load_cnndm_jsonl(path: str | Path) -> list[Example]:
    """JSONL records with ``article`` and ``highlights`` (newline-separated sentences, as the HF release)."""
    out = [
        Example(_join(rec["article"].splitlines()), _join(rec["highlights"].splitlines()))
        for _, rec in records(path, ("article", "highlights"))
    ]
    if not out:
        raise DataError(f"{path}: no records")
    return out
