"""Reading task data files into :class:`Example` lists (errors name the file and line or record).

Formats: ``jsonl`` (``source``, ``target``[, ``refs``]), ``e2e`` (E2E NLG CSV),
``personachat`` (PersonaChat/ConvAI2 JSON, ``FILE#split`` for a file of splits),
``parallel`` (``SRC:TGT``, two line-aligned files), ``tsv`` (source TAB target),
``cnndm`` (CNN/DM JSONL, a ``.story`` file or a directory of them), ``coqa`` (CoQA JSON).
:func:`load_examples` infers the format from the file (extension, CSV header,
JSON keys) and the task; ``fmt`` overrides it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.cnndm import load_cnndm_jsonl, load_stories
from edgevlm.train.tasks.coqa import load_coqa
from edgevlm.train.tasks.e2e import load_e2e
from edgevlm.train.tasks.jsonl import records
from edgevlm.train.tasks.parallel import PAIR_SEP, load_parallel, load_tsv, parse_pair
from edgevlm.train.tasks.personachat import load_personachat

FORMATS = ("jsonl", "e2e", "personachat", "parallel", "tsv", "cnndm", "coqa")
ALIASES = {"csv": "e2e", "convai2": "personachat", "story": "cnndm", "stories": "cnndm", "cnn_dailymail": "cnndm"}
TASK_FORMATS = {"nlg": "e2e", "mt": "parallel", "qa": "coqa", "summarization": "cnndm", "dialogue": "personachat"}


def load_jsonl(path: str | Path) -> list[Example]:
    """JSONL with ``source`` and ``target`` (optionally ``refs``, a list of strings) per line."""
    out = []
    for line_no, rec in records(path, ("source", "target")):
        refs = rec.get("refs") or []
        if not isinstance(refs, list) or not all(isinstance(r, str) and r.strip() for r in refs):
            raise DataError(f"{path}:{line_no}: 'refs' must be a list of non-empty strings")
        out.append(Example(rec["source"], rec["target"], list(refs)))
    if not out:
        raise DataError(f"{path}: no records")
    return out


def read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason})") from None


def json_format(obj, path: Path, task: str) -> str:
    """``coqa`` or ``personachat`` from the parsed file's keys (else the task's usual format)."""
    if isinstance(obj, dict) and "data" in obj:
        return "coqa"
    first = obj[0] if isinstance(obj, list) and obj else None
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list) and v]
        first = lists[0][0] if lists else None
    if isinstance(first, dict) and ("personality" in first or "utterances" in first):
        return "personachat"
    if TASK_FORMATS.get(task) in ("coqa", "personachat"):
        return TASK_FORMATS[task]
    raise DataError(
        f"{path}: cannot infer the format from its JSON keys; expected CoQA ('data') or "
        "PersonaChat ('personality', 'utterances'); pass --format"
    )


def jsonl_format(path: Path, task: str) -> str:
    """``jsonl`` or ``cnndm`` from the keys of the first record (else the task's usual format)."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
                keys = set(rec) if isinstance(rec, dict) else set()
                if {"article", "highlights"} <= keys:
                    return "cnndm"
                if {"source", "target"} <= keys or TASK_FORMATS.get(task) != "cnndm":
                    return "jsonl"
                return "cnndm"
    raise DataError(f"{path}: no records")


def infer_format(path: Path, task: str) -> str:
    """The format of ``path`` from its extension (and contents for .jsonl); ``json`` means decide after parsing."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".story":
        return "cnndm"
    known = {".csv": "e2e", ".tsv": "tsv", ".json": "json"}
    if suffix in known:
        return known[suffix]
    if suffix == ".jsonl":
        return jsonl_format(path, task)
    hint = f"; for translation pass two line-aligned files as SRC{PAIR_SEP}TGT or a .tsv file" if task == "mt" else ""
    raise DataError(
        f"{path}: cannot infer the data format from the extension {suffix or '(none)'!r}{hint}; "
        f"pass --format (one of {', '.join(FORMATS)})"
    )


def normalize_format(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    f = ALIASES.get(fmt.lower(), fmt.lower())
    if f not in FORMATS:
        raise DataError(f"--format {fmt!r} is not supported; supported: {', '.join(FORMATS)}")
    return f


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``FILE#split`` -> (FILE, split) when FILE exists and the whole spec does not."""
    if "#" in spec and not Path(spec).exists():
        base, split = spec.rsplit("#", 1)
        if Path(base).exists():
            return base, split
    return spec, None


def load_examples(path: str | Path, task: str, fmt: str | None = None) -> list[Example]:
    """Load ``path`` for ``task``; ``fmt`` overrides format inference (see the module docstring)."""
    spec, split = _split_spec(str(path))
    fmt = normalize_format(fmt)
    pair = parse_pair(spec)
    if pair is not None:
        if fmt not in (None, "parallel"):
            raise DataError(
                f"{spec}: SRC{PAIR_SEP}TGT names two files, which only the 'parallel' format reads (got --format {fmt})"
            )
        return load_parallel(*pair)
    p = Path(spec)
    if not p.exists():
        raise DataError(f"data file {p} does not exist")
    fmt = fmt or infer_format(p, task)
    if split is not None and fmt not in ("json", "personachat"):
        raise DataError(f"{path}: '#{split}' split selection is only supported for PersonaChat JSON")
    if fmt == "parallel":
        raise DataError(
            f"{p}: the parallel format needs two line-aligned files as SRC{PAIR_SEP}TGT (or use --format tsv)"
        )
    if fmt in ("json", "coqa", "personachat"):
        obj = read_json(p)
        fmt = json_format(obj, p, task) if fmt == "json" else fmt
        return load_coqa(obj, p) if fmt == "coqa" else load_personachat(obj, p, split)
    if fmt == "cnndm":
        return load_stories(p) if p.is_dir() or p.suffix.lower() == ".story" else load_cnndm_jsonl(p)
    return {"jsonl": load_jsonl, "e2e": load_e2e, "tsv": load_tsv}[fmt](p)


def group_by_source(examples: list[Example]) -> list[Example]:
    """One example per distinct source with every reference (first-seen order): the evaluation view."""
    groups: dict[str, Example] = {}
    for ex in examples:
        g = groups.setdefault(ex.source, Example(ex.source, ex.target, []))
        for r in ex.references():
            if r not in g.refs:
                g.refs.append(r)
    return list(groups.values())


def split_by_source(examples: list[Example], n_heldout: int, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(train rows, held-out rows) with ``n_heldout`` distinct sources held out: no source is in both."""
    sources = sorted({ex.source for ex in examples})
    if not 0 < n_heldout < len(sources):
        raise DataError(f"cannot hold out {n_heldout} of {len(sources)} distinct sources")
    held = set(random.Random(seed).sample(sources, n_heldout))
    return [e for e in examples if e.source not in held], [e for e in examples if e.source in held]
