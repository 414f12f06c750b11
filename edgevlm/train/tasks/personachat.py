"""PersonaChat / ConvAI2 JSON: ``personality`` sentences and ``utterances`` (``history``, ``candidates``).

Each utterance becomes one example: the source is the persona followed by the
history with role markers (the last history turn is the ``<user>``'s, roles
alternate backwards), as :func:`edgevlm.train.tasks.mini.gen_dialogue`; the target
is the last candidate (the gold reply). The distributed file
``personachat_self_original.json`` holds splits (``{"train": [...], "valid": [...]}``):
choose one as ``FILE#valid``. The dialogue is the source unit (held-out splits keep it whole);
ParlAI's text release of the same data is read by :mod:`edgevlm.train.tasks.parlai`.
"""

from __future__ import annotations

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example


def _strings(value, where: str, key: str, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list) or (not value and not allow_empty):
        raise DataError(f"{where}: '{key}' must be a {'' if allow_empty else 'non-empty '}list of strings")
    for i, s in enumerate(value):
        if not isinstance(s, str) or not s.strip():
            raise DataError(f"{where}: {key}[{i}] must be a non-empty string")
    return [" ".join(s.split()) for s in value]


def render_history(history: list[str]) -> str:
    """``<user> .. <system> .. <user> last``: the newest turn is the user's, roles alternate backwards."""
    n = len(history)
    return " ".join(f"{'<user>' if (n - 1 - i) % 2 == 0 else '<system>'} {h}" for i, h in enumerate(history))


def _dialogue(rec, where: str) -> list[Example]:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object with 'personality' and 'utterances'")
    persona = " ".join(_strings(rec.get("personality"), where, "personality"))
    utts = rec.get("utterances")
    if not isinstance(utts, list) or not utts:
        raise DataError(f"{where}: 'utterances' must be a non-empty list")
    out = []
    for j, u in enumerate(utts):
        w = f"{where}.utterances[{j}]"
        if not isinstance(u, dict):
            raise DataError(f"{w}: expected an object with 'history' and 'candidates'")
        hist = _strings(u.get("history"), w, "history")
        gold = _strings(u.get("candidates"), w, "candidates")[-1]
        out.append(Example(f"{persona} {render_history(hist)}", gold, unit=where))
    return out


def select_split(obj, path, split: str | None):
    """The list of dialogues: the file itself, or one named split of it."""
    if isinstance(obj, dict):
        splits = sorted(k for k, v in obj.items() if isinstance(v, list))
        if split is None:
            raise DataError(
                f"{path}: file holds splits {splits}; choose one as {path}#{splits[0] if splits else 'SPLIT'}"
            )
        if split not in splits:
            raise DataError(f"{path}: no split {split!r}; available: {splits}")
        return obj[split]
    if split is not None:
        raise DataError(f"{path}: file is a single list of dialogues; remove '#{split}'")
    return obj


def load_personachat(obj, path, split: str | None = None) -> list[Example]:
    """Examples from a parsed PersonaChat/ConvAI2 file (a list of dialogues, or splits of them)."""
    dialogues = select_split(obj, path, split)
    if not isinstance(dialogues, list) or not dialogues:
        raise DataError(f"{path}: expected a non-empty list of dialogues")
    name = f"{path}#{split}" if split else str(path)
    out = []
    for i, rec in enumerate(dialogues):
        out.extend(_dialogue(rec, f"{name}: dialogue {i}"))
    return out
