"""ParlAI / ConvAI2 text: ``N your persona: ...`` lines, then ``N utterance<TAB>response[<TAB><TAB>cands]``.

Every line starts with its number within the dialogue; ``1`` starts a new dialogue.
``your persona:`` lines are the system's persona (``partner's persona:`` lines, in the
"both" variants, are the user's and are skipped); each utterance line is one turn:
the source is the persona followed by the history with role markers, exactly as the
PersonaChat JSON loader renders it; the target is the response (ParlAI separates
several labels with ``|``: all become references). Candidate lists
(``valid_self_original.txt``) are read past and give the same examples as the
``_no_cands`` file. The dialogue is the source unit: held-out splits keep it whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.personachat import render_history
from edgevlm.train.tasks.text import read_lines

NUMBERED = re.compile(r"(\d+) (.*)\Z", re.S)
YOUR_PERSONA, PARTNER_PERSONA = "your persona:", "partner's persona:"


def looks_like_parlai(line: str) -> bool:
    """Whether a file's first line is a ParlAI numbered line."""
    return NUMBERED.match(line.lstrip("\ufeff")) is not None


@dataclass
class _Dialogue:
    unit: str
    persona: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _turn(d: _Dialogue, text: str, where: str) -> None:
    """Append the example of one ``utterance<TAB>labels[<TAB>reward<TAB>candidates]`` line."""
    fields = text.split("\t")
    if not 2 <= len(fields) <= 4:
        raise DataError(
            f"{where}: expected 'utterance<TAB>response' (optionally <TAB>reward<TAB>candidates), "
            f"got {len(fields)} tab-separated fields"
        )
    utterance, labels = _norm(fields[0]), [_norm(x) for x in fields[1].split("|")]
    if not utterance or not all(labels):
        raise DataError(f"{where}: empty {'utterance' if not utterance else 'response'}")
    if len(fields) == 4 and not all(_norm(c) for c in fields[3].split("|")):
        raise DataError(f"{where}: empty candidate in the '|'-separated candidate list")
    d.history.append(utterance)
    source = " ".join(d.persona + [render_history(d.history)])
    d.examples.append(Example(source, labels[0], labels if len(labels) > 1 else [], unit=d.unit))
    d.history.append(labels[0])


def _line(d: _Dialogue, text: str, where: str) -> None:
    if text.startswith(YOUR_PERSONA):
        if d.history:
            raise DataError(f"{where}: '{YOUR_PERSONA}' line after the dialogue's first utterance")
        fact = _norm(text[len(YOUR_PERSONA) :])
        if not fact:
            raise DataError(f"{where}: empty persona fact")
        d.persona.append(fact)
    elif not text.startswith(PARTNER_PERSONA):
        _turn(d, text, where)


def _finish(d: _Dialogue | None, out: list[Example], where: str) -> None:
    if d is not None and not d.examples:
        raise DataError(f"{where}: dialogue has persona lines but no 'utterance<TAB>response' line")
    if d is not None:
        out.extend(d.examples)


def load_parlai(path: str | Path) -> list[Example]:
    """One example per turn of every dialogue in a ParlAI text file (see the module docstring)."""
    path = Path(path)
    out: list[Example] = []
    d, start, prev = None, "", 0
    for line_no, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        m = NUMBERED.match(line)
        if m is None:
            raise DataError(f"{where}: expected a numbered line 'N text' (ParlAI text format)")
        n = int(m.group(1))
        if n == 1:
            _finish(d, out, start)
            d, start = _Dialogue(f"dialogue {line_no}"), where
        elif d is None or n != prev + 1:
            raise DataError(f"{where}: line number {n} does not follow {prev} (a dialogue starts at 1)")
        prev = n
        _line(d, m.group(2), where)
    _finish(d, out, start)
    if not out:
        raise DataError(f"{path}: no dialogues")
    return out
