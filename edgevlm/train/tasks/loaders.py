"""Reading task data files into :class:`Example` lists (errors name the file and line or record).

Formats: ``jsonl`` (``source``, ``target``[, ``refs``]), ``e2e`` (E2E NLG CSV),
``personachat`` (PersonaChat/ConvAI2 JSON, ``FILE#split`` for a file of splits),
``parlai`` (ParlAI/ConvAI2 text), ``parallel`` (``SRC:TGT``, two line-aligned files),
``wit3`` (``SRC.xml:REF.xml``, IWSLT/WIT3 XML aligned by docid and seg id),
``tsv`` (source TAB target), ``cnndm`` (CNN/DM CSV or JSONL, a ``.story`` file or a
directory of them), ``coqa`` (CoQA JSON). :func:`load_examples` infers the format from
the file (extension, CSV header, JSON keys, ParlAI line numbers) and the task; ``fmt``
overrides it. Held-out splits (:func:`holdout_split`) keep each source unit whole: the
MR, the talk, the dialogue, the article, the CoQA story.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.cnndm import load_cnndm_csv, load_cnndm_jsonl, load_stories
from edgevlm.train.tasks.coqa import load_coqa
from edgevlm.train.tasks.e2e import load_e2e
from edgevlm.train.tasks.jsonl import records
from edgevlm.train.tasks.parallel import PAIR_SEP, load_parallel, load_tsv, parse_pair
from edgevlm.train.tasks.parlai import load_parlai, looks_like_parlai
from edgevlm.train.tasks.personachat import load_personachat
from edgevlm.train.tasks.text import read_lines, read_text
from edgevlm.train.tasks.wit3 import load_wit3

FORMATS = ("jsonl", "e2e", "personachat", "parlai", "parallel", "wit3", "tsv", "cnndm", "coqa")
ALIASES = {
    "csv": "e2e",
    "convai2": "personachat",
    "fbdialog": "parlai",
    "iwslt": "wit3",
    "story": "cnndm",
    "stories": "cnndm",
    "cnn_dailymail": "cnndm",
}
TASK_FORMATS = {"nlg": "e2e", "mt": "parallel", "qa": "coqa", "summarization": "cnndm", "dialogue": "personachat"}
PAIR_FORMATS = ("parallel", "wit3")


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
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: invalid JSON (nested too deeply)") from None


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


def _first_line(path: Path) -> tuple[int, str]:
    """(line number, text) of the first non-blank line."""
    for line_no, line in enumerate(read_lines(path), 1):
        if line.strip():
            return line_no, line
    raise DataError(f"{path}: no records")


def jsonl_format(path: Path, task: str) -> str:
    """``jsonl`` or ``cnndm`` from the keys of the first record (else the task's usual format)."""
    line_no, line = _first_line(path)
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
    except RecursionError:
        raise DataError(f"{path}:{line_no}: invalid JSON (nested too deeply)") from None
    keys = set(rec) if isinstance(rec, dict) else set()
    if {"article", "highlights"} <= keys:
        return "cnndm"
    if {"source", "target"} <= keys or TASK_FORMATS.get(task) != "cnndm":
        return "jsonl"
    return "cnndm"


def csv_format(path: Path, task: str) -> str:
    """``cnndm`` for an ``article``/``highlights`` header, ``e2e`` for ``mr``/``ref`` (else the task's usual one)."""
    header = {h.strip().lower() for h in next(csv.reader([_first_line(path)[1]]), [])}
    if {"article", "highlights"} <= header:
        return "cnndm"
    if {"mr", "ref"} <= header or TASK_FORMATS.get(task) != "cnndm":
        return "e2e"
    return "cnndm"


def infer_format(path: Path, task: str) -> str:
    """The format of ``path`` from its extension (and contents for .jsonl); ``json`` means decide after parsing."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".story":
        return "cnndm"
    known = {".tsv": "tsv", ".json": "json"}
    if suffix in known:
        return known[suffix]
    if suffix in (".jsonl", ".csv"):
        return (jsonl_format if suffix == ".jsonl" else csv_format)(path, task)
    if suffix == ".txt" and looks_like_parlai(_first_line(path)[1]):
        return "parlai"
    if suffix == ".xml":
        raise DataError(f"{path}: a WIT3 XML source needs its reference file: pass SRC.xml{PAIR_SEP}REF.xml")
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


def _load_pair(spec: str, src: Path, tgt: Path, fmt: str | None) -> list[Example]:
    """``SRC:TGT``: WIT3 XML when both are ``.xml`` (or ``fmt`` says so), else line-aligned text."""
    if fmt is None:
        fmt = "wit3" if src.suffix.lower() == tgt.suffix.lower() == ".xml" else "parallel"
    if fmt not in PAIR_FORMATS:
        raise DataError(
            f"{spec}: SRC{PAIR_SEP}TGT names two files, which only the 'parallel' and 'wit3' formats read "
            f"(got --format {fmt})"
        )
    return load_wit3(src, tgt) if fmt == "wit3" else load_parallel(src, tgt)


def _load_file(p: Path, task: str, fmt: str, split: str | None) -> list[Example]:
    """One file (or a .story directory) in format ``fmt`` (``json``: CoQA or PersonaChat, decided by its keys)."""
    if split is not None and fmt not in ("json", "personachat"):
        raise DataError(f"{p}#{split}: '#{split}' split selection is only supported for PersonaChat JSON")
    if fmt in PAIR_FORMATS:
        ext = ".xml" if fmt == "wit3" else ""
        raise DataError(f"{p}: the {fmt} format needs two files as SRC{ext}{PAIR_SEP}TGT{ext}")
    if fmt == "personachat" and p.suffix.lower() == ".txt":
        fmt = "parlai"
    if fmt in ("json", "coqa", "personachat"):
        obj = read_json(p)
        fmt = json_format(obj, p, task) if fmt == "json" else fmt
        return load_coqa(obj, p) if fmt == "coqa" else load_personachat(obj, p, split)
    if fmt == "cnndm":
        if p.is_dir() or p.suffix.lower() == ".story":
            return load_stories(p)
        return load_cnndm_csv(p) if p.suffix.lower() == ".csv" else load_cnndm_jsonl(p)
    return {"jsonl": load_jsonl, "e2e": load_e2e, "tsv": load_tsv, "parlai": load_parlai}[fmt](p)


def load_examples(path: str | Path, task: str, fmt: str | None = None) -> list[Example]:
    """Load ``path`` for ``task``; ``fmt`` overrides format inference (see the module docstring)."""
    spec, split = _split_spec(str(path))
    fmt = normalize_format(fmt)
    pair = parse_pair(spec)
    if pair is not None:
        return _load_pair(spec, *pair, fmt)
    p = Path(spec)
    if not p.exists():
        raise DataError(f"data file {p} does not exist")
    return _load_file(p, task, fmt or infer_format(p, task), split)


def group_by_source(examples: list[Example]) -> list[Example]:
    """One example per distinct source with every reference (first-seen order): the evaluation view."""
    groups: dict[str, Example] = {}
    for ex in examples:
        g = groups.setdefault(ex.source, Example(ex.source, ex.target, [], ex.unit))
        for r in ex.references():
            if r not in g.refs:
                g.refs.append(r)
    return list(groups.values())


def source_units(examples: list[Example]) -> list[str]:
    """The distinct source units (MR, talk, dialogue, article, story) in first-seen order."""
    return list(dict.fromkeys(ex.source_unit() for ex in examples))


def split_by_source(examples: list[Example], n_heldout: int, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(train rows, held-out rows) with ``n_heldout`` source units held out whole: no unit is on both sides."""
    units = sorted(source_units(examples))
    if not 0 < n_heldout < len(units):
        raise DataError(f"cannot hold out {n_heldout} of {len(units)} distinct source units")
    held = set(random.Random(seed).sample(units, n_heldout))
    return (
        [e for e in examples if e.source_unit() not in held],
        [e for e in examples if e.source_unit() in held],
    )


def holdout_split(examples: list[Example], share: float = 0.05, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(train, held-out) with ``share`` of the source units (at least one) held out; (all, []) with one unit."""
    n_units = len(source_units(examples))
    if n_units < 2:
        return list(examples), []
    return split_by_source(examples, max(1, int(n_units * share + 1e-9)), seed)
