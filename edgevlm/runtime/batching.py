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
kernels run at another batch size). Not thread-safe: one thread drives a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from edgevlm.core import names
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
        self.rt, self.rows = rt, []
        self._past: list[np.ndarray] = []  # per graph past input: [b, n_kv_head, T, head_dim]
        self._mask = np.zeros((0, 0), np.int64)  # [b, T]
        self._logits = np.zeros((0, rt.graph.vocab_size), np.float32)  # [b, V]: each row's next-token logits
        self._past_names = names.past_names(rt.graph.n_layer)
        self._outputs = [names.LOGITS] + names.present_names(rt.graph.n_layer)
        self._mix_key: tuple | None = None
        self._mix_feeds: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: Row) -> None:
        """Prefill ``row`` alone under its task and join its cache to the batch's."""
        ids = np.array([row.prompt], np.int64)
        mask = np.ones_like(ids)
        past = self.rt._decoder.empty_past(1)
        out = self._run(ids, mask, past, self.rt._run_options(row.task), {})
        self._merge(row, mask, out)

    def _merge(self, row: Row, mask: np.ndarray, out: list) -> None:
        width = max(self._mask.shape[1], mask.shape[1])
        self._mask = np.concatenate([_left_pad(self._mask, width), _left_pad(mask, width)], 0)
        presents = out[1:]
        if self._past:
            pairs = zip(self._past, presents)
            self._past = [np.concatenate([_left_pad(a, width), _left_pad(p, width)], 0) for a, p in pairs]
        else:
            self._past = [np.ascontiguousarray(p) for p in presents]
        self._logits = np.concatenate([self._logits, np.asarray(out[0][:, -1], np.float32)], 0)
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
        """Let ``rows`` leave before they finish (e.g. a client went away)."""
        gone = {id(r) for r in rows}
        self._keep([i for i, r in enumerate(self.rows) if id(r) not in gone])

    def _keep(self, keep: list[int]) -> None:
        """Only rows ``keep`` stay; leading cache columns no row attends to are dropped."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[r] for r in keep]
        mask = self._mask[keep]
        used = np.flatnonzero(mask.any(0))
        start = int(used[0]) if used.size else mask.shape[1]
        self._mask = np.ascontiguousarray(mask[:, start:])
        self._past = [np.ascontiguousarray(p[keep][:, :, start:]) for p in self._past]
        self._logits = self._logits[keep]

    def _decode(self, ids: np.ndarray) -> None:
        self._mask = np.concatenate([self._mask, np.ones((len(self.rows), 1), np.int64)], 1)
        tasks = {id(row.task): row.task for row in self.rows}
        if len(tasks) == 1:
            ro, extra = self.rt._run_options(self.rows[0].task), {}
        else:
            ro, extra = ort.RunOptions(), self._mixed(ids)
        out = self._run(ids, self._mask, self._past, ro, extra)
        self._past = out[1:]
        self._logits = np.asarray(out[0][:, -1], np.float32)

    def _mixed(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The stacked adapters of the rows' tasks and each row's columns (rebuilt when the tasks change)."""
        tasks = sorted({row.task.name for row in self.rows if row.task is not None})
        key = (tuple(tasks), tuple(row.task.name if row.task else None for row in self.rows))
        if key != self._mix_key:
            mix = self.rt._mix(tuple(tasks))
            where = [None if row.task is None else tasks.index(row.task.name) for row in self.rows]
            self._mix_feeds = {**mix.feeds, names.ADAPTER_COLUMNS: mix.columns(where)}
            self._mix_key = key
        return self._mix_feeds  # decode ids are never task tokens: no id shift needed

    def _run(self, ids, mask, past, ro: ort.RunOptions, extra: dict) -> list:
        feeds = {names.INPUT_IDS: ids, names.ATTENTION_MASK: mask, **dict(zip(self._past_names, past)), **extra}
        feeds.update(self.rt._decoder.options)  # logits of the last position only (what [:, -1] reads)
        return self.rt.session.run(self._outputs, feeds, ro)


def _left_pad(x: np.ndarray, width: int) -> np.ndarray:
    """``x`` (mask [b, T] or cache [b, H, T, D]) with zeros prepended along T up to ``width``."""
    axis = 1 if x.ndim == 2 else 2
    missing = width - x.shape[axis]
    if missing == 0:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (missing, 0)
    return np.pad(x, pad)
