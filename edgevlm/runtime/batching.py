"""Step-wise batches whose rows have their own task and settings: rows join between decode steps and leave
when they finish (continuous batching), every step is one graph run for all rows.

    batch = rt.batch()
    batch.add(rt.row("hallo welt", task="mt"))
    batch.add(rt.row("name[Aromi]", task="nlg", max_new_tokens=20))
    while batch:
        for row, piece, finished in batch.step():
            ...

A row is prefilled alone, under its own task's ``LoraAdapter`` (exactly the
single-call prefill), and its cache joins the batch's: caches are left-padded
to a common length (positions follow the attention mask in every graph, so
padding changes nothing) and each row keeps its own rows of the cache, never
another task's. Decode steps run all rows at once: through the task's
``LoraAdapter`` when every row has the same task, else with the stacked
adapters of :mod:`edgevlm.runtime.mixing`. Each row samples from its own
logits with its own generator (``default_rng(seed)``), so a row's output is
what ``rt.generate(text, task=...)`` gives alone (up to the last bits of
kernels run at another batch size). A row belongs to one batch, once, until it
finishes or is removed; a finished row cannot decode again. Every graph run goes
through the runtime's :class:`~edgevlm.runtime.steps.Steps`. Not thread-safe: one
thread drives a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevlm.core.errors import ConfigError
from edgevlm.runtime.generation import GenerationConfig, sample, suppress_eos
from edgevlm.runtime.textstream import OutputText


@dataclass(eq=False)
class Row:
    """One sequence of a batch: its prompt ids, task (None: plain backbone), settings, EOS and output text."""

    prompt: list[int]
    task: Any  # edgevlm.runtime.session.Task | None
    cfg: GenerationConfig
    eos: int | None
    text: OutputText
    rng: np.random.Generator = field(init=False)
    n: int = 0  # tokens sampled so far
    finished: bool = False
    reason: str | None = None  # once finished: "stop" (EOS or a stop string) or "length" (max_new_tokens)
    handle: Any = None  # the caller's (a server request)
    batch: Any = field(default=None, init=False, repr=False)  # the Batch it decodes in, while it does

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.cfg.seed)

    def emit(self, logits: np.ndarray) -> tuple[int, str]:
        """Sample the next token from this row's logits [V]; (token, new text). Sets ``finished``."""
        tok = int(sample(suppress_eos(logits[None].copy(), self.eos, self.n, self.cfg), self.cfg, self.rng)[0])
        if tok == self.eos:
            self.finished, self.reason = True, "stop"
            return tok, self.text.finish()
        piece = self.text.push(tok)
        self.n += 1
        if self.text.done or self.n >= self.cfg.max_new_tokens:
            self.finished, self.reason = True, "stop" if self.text.done else "length"
            piece += self.text.finish()
        return tok, piece


class Batch:
    """The rows decoding together and their cache (see the module docstring). Made by ``Runtime.batch()``."""

    def __init__(self, rt):
        self.rt, self.steps, self.rows = rt, rt.steps, []
        self._past: list[np.ndarray] = []  # per graph past input: [b, n_kv_head, T, head_dim]
        self._mask = np.zeros((0, 0), np.int64)  # [b, T]
        self._logits = np.zeros((0, rt.graph.vocab_size), np.float32)  # [b, V]: each row's next-token logits
        self._mix_key: tuple | None = None
        self._mix_feeds: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def refresh(self) -> None:
        """Rebuild the stacked adapters at the next mixed step (the runtime's tasks changed)."""
        self._mix_key = None

    def add(self, row: Row) -> None:
        """Prefill ``row`` alone under its task and join its cache to the batch's.
        ConfigError for anything but a fresh :class:`Row` (made by ``Runtime.row``) of this bundle."""
        self._check_new(row)
        ids = np.array([row.prompt], np.int64)
        mask = np.ones_like(ids)
        logits, presents = self.steps.run(ids, mask, self.steps.empty_past(1), self.steps.run_options(row.task))
        self._merge(row, mask, logits, presents)
        row.batch = self

    def _check_new(self, row: Row) -> None:
        if not isinstance(row, Row):
            raise ConfigError(f"Batch.add takes a Row made by Runtime.row(text, task), got {type(row).__name__}")
        if row.batch is not None:
            where = "this batch" if row.batch is self else "another batch"
            raise ConfigError(f"this row is already decoding in {where}: a row joins one batch once")
        if row.finished or row.n:
            raise ConfigError(f"this row has already decoded {row.n} token(s): make a new one with Runtime.row()")
        if row.task is not None and self.rt.tasks.get(row.task.name) is not row.task:
            raise ConfigError(f"the row's task {row.task.name!r} is not a task of this batch's runtime")

    def _merge(self, row: Row, mask: np.ndarray, logits: np.ndarray, presents: list) -> None:
        width = max(self._mask.shape[1], mask.shape[1])
        self._mask = np.concatenate([_left_pad(self._mask, width), _left_pad(mask, width)], 0)
        if self._past:
            pairs = zip(self._past, presents)
            self._past = [np.concatenate([_left_pad(a, width), _left_pad(p, width)], 0) for a, p in pairs]
        else:
            self._past = [np.ascontiguousarray(p) for p in presents]
        self._logits = np.concatenate([self._logits, logits], 0)
        self.rows.append(row)

    def step(self) -> list[tuple[Row, str, bool]]:
        """Sample one token for every row, let finished rows leave, run the graph once for the others.
        -> (row, new text, finished) per row that was in the batch."""
        events, keep, toks = [], [], []
        for r, row in enumerate(self.rows):
            tok, piece = row.emit(self._logits[r])
            events.append((row, piece, row.finished))
            if not row.finished:
                keep.append(r)
                toks.append(tok)
        self._keep(keep)
        if self.rows:
            self._decode(np.array(toks, np.int64)[:, None])
        return events

    def remove(self, rows: list[Row]) -> None:
        """Let ``rows`` leave before they finish (e.g. a client went away); they cannot decode again."""
        gone = {id(r) for r in rows}
        mine = [r for r in self.rows if id(r) in gone]  # a row of another batch is not this batch's to end
        self._keep([i for i, r in enumerate(self.rows) if id(r) not in gone])
        for r in mine:
            r.finished, r.reason = True, r.reason or "removed"

    def _keep(self, keep: list[int]) -> None:
        """Only rows ``keep`` stay; leading cache columns no row attends to are dropped."""
        if len(keep) == len(self.rows):
            return
        for r in set(range(len(self.rows))) - set(keep):
            self.rows[r].batch = None
        self.rows = [self.rows[r] for r in keep]
        mask = self._mask[keep]
        used = np.flatnonzero(mask.any(0))
        start = int(used[0]) if used.size else mask.shape[1]
        self._mask = np.ascontiguousarray(mask[:, start:])
        self._past = [np.ascontiguousarray(p[keep][:, :, start:]) for p in self._past]
        self._logits = self._logits[keep]

    def _decode(self, ids: np.ndarray) -> None:
        self._mask = np.concatenate([self._mask, np.ones((len(self.rows), 1), np.int64)], 1)
        tasks = {id(row.task) for row in self.rows}
        if len(tasks) == 1:
            ro, extra = self.steps.run_options(self.rows[0].task), None
        else:
            ro, extra = self.steps.run_options(None), self._mixed()
        self._logits, self._past = self.steps.run(ids, self._mask, self._past, ro, extra)

    def _mixed(self) -> dict[str, np.ndarray]:
        """The stacked adapters of the rows' tasks and each row's columns (rebuilt when the rows' tasks change)."""
        key = tuple(id(row.task) for row in self.rows)
        if key != self._mix_key:
            self._mix_feeds = self.steps.mixed_inputs([row.task for row in self.rows])[1]
            self._mix_key = key
        return self._mix_feeds  # decode ids are never task tokens: no id shift needed


def _left_pad(x: np.ndarray, width: int) -> np.ndarray:
    """``x`` (mask [b, T] or cache [b, H, T, D]) with zeros prepended along T up to ``width``."""
    axis = 1 if x.ndim == 2 else 2
    missing = width - x.shape[axis]
    if missing == 0:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (missing, 0)
    return np.pad(x, pad)
