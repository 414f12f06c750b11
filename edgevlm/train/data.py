"""Turning examples into token ids and padded batches (loss on target tokens only)."""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm.core.config import TaskConfig
from edgevlm.core.errors import ConfigError
from edgevlm.core.prompts import build_prompt
from edgevlm.train.tasks import Example

IGNORE = -100


@dataclass
class Encoded:
    """One example as ids: ``prompt`` (with task tokens) then ``target`` (ending in EOS)."""

    prompt: list[int]
    target: list[int]


def encode_target(tokenizer, text: str, eos: int, max_tokens: int | None) -> list[int]:
    ids = tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids
    return (ids[:max_tokens] if max_tokens else ids) + [eos]


def encode_example(tokenizer, cfg: TaskConfig, ex: Example, vocab_size: int, eos: int, max_len: int) -> Encoded:
    """Prompt + target ids within ``max_len``. The target (at most ``cfg.max_target_tokens``, and half of
    ``max_len``) is always kept; the prompt follows :mod:`edgevlm.core.prompts`: task tokens and the newest
    turn survive, the context keeps its beginning (``cfg.max_source_tokens``), older turns go first."""
    target = encode_target(tokenizer, ex.target, eos, cfg.max_target_tokens)
    target = target[: max_len // 2] if len(target) > max_len // 2 else target
    return Encoded(build_prompt(tokenizer, cfg, ex.source, vocab_size, max_len - len(target)), target)


TOKEN_INITS = ("words", "mean")


def token_init_ids(tokenizer, cfg: TaskConfig, how: str = "words") -> list[list[int]] | None:
    """Per special token of ``cfg``, the vocabulary ids whose mean embedding it starts from (``how="words"``:
    the token's name, ``<persona_b>`` -> " persona b"); None for ``"mean"`` (the table's mean, all alike)."""
    if how == "mean":
        return None
    if how != "words":
        raise ConfigError(f"--token-init must be one of {', '.join(TOKEN_INITS)}, got {how!r}")
    return [tokenizer.encode(_words(t), add_special_tokens=False).ids for t in cfg.special_tokens]


def _words(token: str) -> str:
    return " " + token.strip("<>").replace("_", " ").replace("-", " ").strip()


def collate(items: list[Encoded], pad_id: int):
    """Right-padded batch: input_ids, attention_mask, labels (-100 outside targets). All [b, t] long."""
    import torch

    t = max(len(e.prompt) + len(e.target) for e in items)
    ids = torch.full((len(items), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), t), dtype=torch.long)
    labels = torch.full((len(items), t), IGNORE, dtype=torch.long)
    for i, e in enumerate(items):
        seq = e.prompt + e.target
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(e.prompt) : len(seq)] = torch.tensor(e.target)
    return ids, mask, labels
