"""Prompt encoding with task-embedding tokens (tokenizers + stdlib only; shared by trainer and runtime).

A task declares special tokens such as ``<mr>`` and ``<response>`` and a
template such as ``"<mr> {input} <response>"``. Special tokens are never
in the tokenizer's vocabulary: the k-th special token of a task becomes the
task-local id ``vocab_size + k``, looked up in that task's embedding table.
Users may write a task's special tokens inside their input (e.g. dialogue
turns ``<persona> i like cats <user> hi``); they are mapped the same way.

Segment-aware truncation (:func:`build_prompt`, the policy trainer, evaluator and runtime share):

A rendered prompt ``template.replace("{input}", source)`` has three parts:

* the *context*: the template's leading task tokens and the source text before
  its first task token (the article, MT source, CoQA story, persona, MR);
* the *turns*: the rest of the source, split at its task tokens and grouped
  into exchanges that start at the marker of the newest turn
  (``<question> q <answer> a`` | ``<user> u <system> s``);
* the *tail*: the template after ``{input}`` (``<answer>``, ``<summary>`` ...).

Within a token budget the tail and every kept turn's markers survive; the
newest turn is always kept (cut from its left if it alone is too long); the
context keeps its *beginning*, at most ``cfg.max_source_tokens`` ordinary
tokens (the paper's article/document 400, MT source 100); older exchanges are
then added newest first while they fit (the dialogue/QA history window).
With room to spare the result equals :func:`edgevlm.core.prompts.encode_prompt`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edgevlm.core.errors import ConfigError

INPUT_FIELD = "{input}"


class PromptFormat(Protocol):
    """What prompt building reads of a task: a ``TaskConfig`` in training, the runtime's task record on device."""

    template: str
    special_tokens: tuple[str, ...] | list[str]
    max_source_tokens: int | None


def check_template(template: str, special_tokens: Sequence[str]) -> None:
    """Raise ConfigError unless ``template`` has exactly one ``{input}`` and only known special tokens."""
    if template.count(INPUT_FIELD) != 1:
        raise ConfigError(f"prompt template {template!r} must contain {INPUT_FIELD} exactly once")
    for tok in re.findall(r"<[^<>\s]+>", template):
        if tok not in special_tokens:
            raise ConfigError(
                f"prompt template uses {tok!r}, not among the task's special tokens {list(special_tokens)}"
            )


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


@dataclass
class Parts:
    """A prompt's ids by role: ``context`` + ``turns`` (oldest first) + ``tail``."""

    context: list[int]
    turns: list[list[int]]
    tail: list[int]


def split_turns(text: str, special_tokens) -> tuple[str, list[str]]:
    """(context text, exchanges) of a source: exchanges start at the newest turn's marker."""
    pieces = split_special(text, special_tokens)
    first = next((i for i, (special, _) in enumerate(pieces) if special), len(pieces))
    context = "".join(p for _, p in pieces[:first])
    segs: list[str] = []
    for special, p in pieces[first:]:
        if special:
            segs.append(p)
        else:
            segs[-1] += " " + p.strip()
    if not segs:
        return context, []
    opener = segs[-1].split(" ", 1)[0]
    exchanges: list[str] = []
    for seg in segs:
        if not exchanges or seg.split(" ", 1)[0] == opener:
            exchanges.append(seg)
        else:
            exchanges[-1] += " " + seg
    return context, exchanges


def prompt_parts(tokenizer, cfg: PromptFormat, source: str, vocab_size: int) -> Parts:
    """Encode ``source`` under ``cfg.template`` split into context, exchanges and tail."""
    prefix, suffix = cfg.template.split(INPUT_FIELD)
    context, exchanges = split_turns(source, cfg.special_tokens)

    def enc(text: str) -> list[int]:
        return encode_segments(tokenizer, text, cfg.special_tokens, vocab_size)

    return Parts(enc(prefix + context), [enc(x) for x in exchanges], enc(suffix))


def n_special(ids: list[int], vocab_size: int) -> int:
    return sum(t >= vocab_size for t in ids)


def keep_head(ids: list[int], n_ordinary: int, vocab_size: int) -> list[int]:
    """All task tokens of ``ids`` and its first ``n_ordinary`` ordinary tokens."""
    out, left = [], n_ordinary
    for t in ids:
        if t >= vocab_size:
            out.append(t)
        elif left > 0:
            out.append(t)
            left -= 1
    return out


def fit(parts: Parts, budget: int, vocab_size: int, max_context: int | None) -> list[int]:
    """Apply the truncation policy (module docstring) to ``parts`` within ``budget`` ids."""
    newest = parts.turns[-1] if parts.turns else []
    ctx_special = n_special(parts.context, vocab_size)
    fixed = ctx_special + len(parts.tail)
    if fixed + n_special(newest, vocab_size) > budget:
        raise ConfigError(f"prompt budget of {budget} tokens cannot hold the task tokens of the prompt")
    newest = truncate_left(newest, budget - fixed, vocab_size)
    room = budget - fixed - len(newest)
    ctx_len = len(parts.context) - ctx_special
    context = keep_head(parts.context, min(ctx_len, room, max_context or ctx_len), vocab_size)
    room -= len(context) - ctx_special
    kept: list[list[int]] = []
    for turn in reversed(parts.turns[:-1]):
        if len(turn) > room:
            break
        kept.insert(0, turn)
        room -= len(turn)
    return context + [t for turn in kept for t in turn] + newest + parts.tail


def build_prompt(tokenizer, cfg: PromptFormat, source: str, vocab_size: int, budget: int) -> list[int]:
    """Prompt ids for ``source`` (task tokens as ``vocab_size + k``) in at most ``budget`` ids.

    ``cfg`` is any object with ``template``, ``special_tokens`` and ``max_source_tokens``
    (a :class:`TaskConfig`, or the runtime's task record).
    """
    return fit(prompt_parts(tokenizer, cfg, source, vocab_size), budget, vocab_size, cfg.max_source_tokens)
