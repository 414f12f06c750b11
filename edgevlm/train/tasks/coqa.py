"""CoQA JSON: each question becomes one example whose source carries the story and the earlier turns.

Source convention (as :func:`edgevlm.train.tasks.mini.gen_qa`):
``story <question> q1 <answer> a1 <question> q2`` with the template
``<document> {input} <answer>``; the target is the free-form answer of that
turn, ``refs`` adds the dev set's ``additional_answers``. The story is the source unit:
held-out splits keep all its turns on one side.
"""

from __future__ import annotations

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example


def _text(item, where: str, key: str = "input_text") -> str:
    if not isinstance(item, dict) or not isinstance(item.get(key), str) or not item[key].strip():
        raise DataError(f"{where}: missing or empty '{key}'")
    return " ".join(item[key].split())


def _by_turn(items, where: str) -> dict[int, str]:
    """``turn_id -> text`` for a list of question/answer records."""
    if not isinstance(items, list) or not items:
        raise DataError(f"{where}: expected a non-empty list")
    out = {}
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        turn = item.get("turn_id") if isinstance(item, dict) else None
        if not isinstance(turn, int) or isinstance(turn, bool):
            raise DataError(f"{w}: missing integer 'turn_id'")
        if turn in out:
            raise DataError(f"{w}: duplicate turn_id {turn}")
        out[turn] = _text(item, w)
    return out


def _conversation(rec, where: str) -> list[Example]:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object with 'story', 'questions' and 'answers'")
    if not isinstance(rec.get("story"), str) or not rec["story"].strip():
        raise DataError(f"{where}: missing or empty 'story'")
    story = " ".join(rec["story"].split())
    qs, ans = _by_turn(rec.get("questions"), f"{where}.questions"), _by_turn(rec.get("answers"), f"{where}.answers")
    if set(qs) != set(ans):
        raise DataError(f"{where}: questions and answers have different turn_ids ({sorted(set(qs) ^ set(ans))[:5]})")
    extra: dict[int, list[str]] = {}
    for k, alts in (rec.get("additional_answers") or {}).items():
        for turn, text in _by_turn(alts, f"{where}.additional_answers.{k}").items():
            extra.setdefault(turn, []).append(text)
    out, hist = [], ""
    for turn in sorted(qs):
        refs = [ans[turn]] + [a for a in extra.get(turn, []) if a != ans[turn]]
        out.append(Example(f"{story}{hist} <question> {qs[turn]}", ans[turn], refs, unit=where))
        hist += f" <question> {qs[turn]} <answer> {ans[turn]}"
    return out


def load_coqa(obj, path) -> list[Example]:
    """Examples from a parsed CoQA file (``{"data": [conversation, ...]}``)."""
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: expected CoQA JSON with a non-empty 'data' list")
    out = []
    for i, rec in enumerate(data):
        out.extend(_conversation(rec, f"{path}: data[{i}]"))
    return out
