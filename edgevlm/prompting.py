"""Prompt encoding with task-embedding tokens (tokenizers + stdlib only; shared by trainer and runtime).

A task declares special tokens such as ``<mr>`` and ``<response>`` and a
template such as ``"<mr> {input} <response>"``. Special tokens are never
in the tokenizer's vocabulary: the k-th special token of a task becomes the
task-local id ``vocab_size + k``, looked up in that task's embedding table.
Users may write a task's special tokens inside their input (e.g. dialogue
turns ``<persona> i like cats <user> hi``); they are mapped the same way.
"""
from __future__ import annotations

import re
from typing import Sequence

from .errors import ConfigError

INPUT_FIELD = "{input}"


def check_template(template: str, special_tokens: Sequence[str]) -> None:
    """Raise ConfigError unless ``template`` has exactly one ``{input}`` and only known special tokens."""
    if template.count(INPUT_FIELD) != 1:
        raise ConfigError(f"prompt template {template!r} must contain {INPUT_FIELD} exactly once")
    for tok in re.findall(r"<[^<>\s]+>", template):
        if tok not in special_tokens:
            raise ConfigError(f"prompt template uses {tok!r}, not among the task's special tokens {list(special_tokens)}")


def split_special(text: str, special_tokens: Sequence[str]) -> list[tuple[bool, str]]:
    """Split ``text`` into (is_special, piece) pairs, longest special token first."""
    if not special_tokens:
        return [(False, text)]
    pattern = "(" + "|".join(re.escape(t) for t in sorted(special_tokens, key=len, reverse=True)) + ")"
    parts = re.split(pattern, text)
    return [(p in special_tokens, p) for p in parts if p]


def encode_segments(tokenizer, text: str, special_tokens: Sequence[str], vocab_size: int) -> list[int]:
    """Token ids of ``text`` where special tokens become task-local ids ``vocab_size + k``."""
    ids: list[int] = []
    for is_special, piece in split_special(text, special_tokens):
        if is_special:
            ids.append(vocab_size + list(special_tokens).index(piece))
        else:
            piece = piece.strip()
            if piece:
                ids.extend(tokenizer.encode(" " + piece, add_special_tokens=False).ids)
    return ids


def render(template: str, text: str) -> str:
    """The template with the user's input in place of ``{input}``."""
    return template.replace(INPUT_FIELD, text)


def encode_prompt(tokenizer, template: str, text: str, special_tokens: Sequence[str], vocab_size: int) -> list[int]:
    """Encode ``text`` wrapped in the task's ``template`` (``None`` template means plain text)."""
    return encode_segments(tokenizer, render(template, text) if template else text, special_tokens, vocab_size)


def truncate_left(ids: list[int], budget: int, vocab_size: int) -> list[int]:
    """Keep at most ``budget`` ids: drop the oldest ordinary tokens first, never a task token.

    This is the runtime's documented policy for over-long input: segment
    markers survive, the most recent text survives.
    """
    excess = len(ids) - budget
    if excess <= 0:
        return list(ids)
    n_special = sum(1 for t in ids if t >= vocab_size)
    if n_special > budget:
        raise ConfigError(f"prompt has {n_special} task tokens, more than the budget of {budget}")
    out = []
    for t in ids:
        if excess > 0 and t < vocab_size:
            excess -= 1
            continue
        out.append(t)
    return out
