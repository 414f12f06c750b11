"""Parallel text for translation: two line-aligned files, or one TSV file (source TAB target).

On the command line two files are passed as one ``--data SRC:TGT`` value
(e.g. ``--data train.de:train.en``); see :func:`parse_pair`.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.text import read_lines

PAIR_SEP = ":"


def parse_pair(spec: str | Path) -> tuple[Path, Path] | None:
    """``(src, tgt)`` when ``spec`` is ``SRC:TGT`` naming two existing files (and is not itself a file)."""
    s = str(spec)
    if Path(s).exists() or PAIR_SEP not in s:
        return None
    src, tgt = s.rsplit(PAIR_SEP, 1)
    if not src or not tgt:
        return None
    for p in (src, tgt):
        if not Path(p).is_file():
            raise DataError(
                f"parallel data {s!r}: file {p} does not exist (expected SRC{PAIR_SEP}TGT, two line-aligned files)"
            )
    return Path(src), Path(tgt)


def load_parallel(src: str | Path, tgt: str | Path) -> list[Example]:
    """Line ``i`` of ``src`` translates to line ``i`` of ``tgt``; counts must match, no line may be empty."""
    src, tgt = Path(src), Path(tgt)
    a, b = read_lines(src), read_lines(tgt)
    if len(a) != len(b):
        raise DataError(f"parallel files are not line-aligned: {src} has {len(a)} lines but {tgt} has {len(b)}")
    if not a:
        raise DataError(f"{src}: no records")
    out = []
    for i, (s, t) in enumerate(zip(a, b), 1):
        for path, text in ((src, s), (tgt, t)):
            if not text.strip():
                raise DataError(f"{path}:{i}: empty line (parallel files need a sentence on every line)")
        out.append(Example(s.strip(), t.strip()))
    return out


def load_tsv(path: str | Path) -> list[Example]:
    """One ``source<TAB>target`` pair per line."""
    path = Path(path)
    out = []
    for i, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataError(f"{path}:{i}: expected 2 tab-separated fields (source, target), got {len(parts)}")
        s, t = (p.strip() for p in parts)
        if not s or not t:
            raise DataError(f"{path}:{i}: empty {'source' if not s else 'target'}")
        out.append(Example(s, t))
    if not out:
        raise DataError(f"{path}: no records")
    return out
