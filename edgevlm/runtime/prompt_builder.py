"""Prompt building for the runtime (the twin of ``PromptBuilder.java``): a call's text -> the prompt ids the
graph sees, cut to fit beside ``max_new_tokens`` in ``n_positions``.

Over-long text input is cut exactly as in training and evaluation, by
:func:`edgevlm.core.prompts.build_prompt`: every task token and the newest turn
survive, the context (article, story, persona, MR) keeps its beginning up to the
task's ``max_source_tokens``, older turns are dropped first; an
:class:`InputTruncated` warning says so. Already-encoded prompts and the plain
backbone keep their task tokens and most recent ids
(:func:`edgevlm.core.prompts.truncate_left`).
"""

from __future__ import annotations

import unicodedata
import warnings
from pathlib import Path

from tokenizers import Tokenizer

from edgevlm.core.bundle import MANIFEST
from edgevlm.core.errors import ConfigError
from edgevlm.core.prompts import build_prompt, encode_prompt, truncate_left
from edgevlm.runtime.generation import GenerationConfig
from edgevlm.runtime.session import Graph, Task


class InputTruncated(UserWarning):
    """The input was longer than the context allows and lost its oldest text."""


class PromptBuilder:
    """Encodes and fits prompts for one bundle (its tokenizer, graph sizes and chat template)."""

    def __init__(self, tokenizer: Tokenizer, graph: Graph, chat_template: str | None, root: Path):
        self.tokenizer, self.graph, self.chat_template, self.root = tokenizer, graph, chat_template, root

    def encode(self, text: str, task: Task | None, cfg: GenerationConfig, chat: bool = False) -> list[int]:
        """Prompt ids (task tokens as ``vocab_size + k``; with ``chat`` the chat template's turn), cut to fit."""
        if not isinstance(text, str):
            raise ConfigError(f"input must be a string, got {type(text).__name__}")
        if not "".join(c for c in text if unicodedata.category(c) != "Cf").strip():  # zero-width only: empty
            raise ConfigError("input is empty")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates: undecodable bytes from argv or a file
            raise ConfigError(f"input is not valid UTF-8 text (undecodable byte at character {e.start})") from None
        v = self.graph.vocab_size
        template = self.template_for_chat(task) if chat else task.template if task else None
        ids = encode_prompt(self.tokenizer, template, text, task.special_tokens if task else (), v)
        if task is None:
            return self.fit(ids, None, cfg)
        kept = build_prompt(self.tokenizer, task, text, v, self.budget(ids, cfg))
        if len(kept) < len(ids):
            warnings.warn(
                f"input has {len(ids)} tokens; kept {len(kept)}: every task token, the newest turn and the "
                f"start of the context, as in training (n_positions={self.graph.n_positions}, "
                f"max_new_tokens={cfg.max_new_tokens})",
                InputTruncated,
                stacklevel=3,
            )
        return kept

    def template_for_chat(self, task: Task | None) -> str:
        """The manifest's one-turn chat template (``{input}`` = the user message), for ``chat=True``."""
        if task is not None:
            raise ConfigError(f"chat=True is for task=None (the plain model); task {task.name!r} has its own template")
        template = self.chat_template
        if template is None:
            raise ConfigError(f"chat=True: {self.root / MANIFEST} has no tokenizer.chat_template (not a chat model)")
        return template

    def budget(self, ids: list[int], cfg: GenerationConfig) -> int:
        """Prompt tokens that fit beside ``max_new_tokens``; ConfigError when not even the task tokens fit."""
        n_pos, v = self.graph.n_positions, self.graph.vocab_size
        n_special = sum(1 for i in ids if i >= v)
        budget = n_pos - cfg.max_new_tokens
        if budget < n_special + 1:
            raise ConfigError(
                f"max_new_tokens={cfg.max_new_tokens} is beyond the context: the backbone holds "
                f"n_positions={n_pos} tokens and this prompt needs at least {n_special + 1}"
            )
        return budget

    def fit(self, ids: list[int], task: Task | None, cfg: GenerationConfig) -> list[int]:
        """Cut already-encoded ids (truncate_left policy) to ``n_positions - max_new_tokens`` tokens, and at
        most the task's ``max_source_tokens`` of text plus its task tokens."""
        n_pos, v = self.graph.n_positions, self.graph.vocab_size
        budget = self.budget(ids, cfg)
        if task is not None and task.max_source_tokens:
            budget = min(budget, task.max_source_tokens + len(task.special_tokens))  # as in training
        if len(ids) > budget:
            warnings.warn(
                f"input has {len(ids)} tokens; kept the last {budget} and every task token "
                f"(n_positions={n_pos}, max_new_tokens={cfg.max_new_tokens})",
                InputTruncated,
                stacklevel=4,
            )
            ids = truncate_left(ids, budget, v)
        return ids
