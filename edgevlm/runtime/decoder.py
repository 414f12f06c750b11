"""The numpy decoder: greedy, seeded sampling and beam search over any step function.

A step function runs the model once::

    step(ids [b, s] int64, mask [b, past + s] int64, past | None) -> (last-position logits [b, V], past)

``past=None`` is the prefill (the step function makes its own empty cache);
``past`` is a list of arrays with the batch first, opaque here except that
beam search reorders its rows. The runtime's :class:`~edgevlm.runtime.steps.Steps`,
the exporter's verifier and the scale check all decode through this module.

Beam search (the same rule as :mod:`edgevlm.train.decoding`, so ``edgevlm eval
--num-beams`` and ``edgevlm run --beams`` agree): a hypothesis scores
``sum(log p) / length ** length_penalty`` (EOS counts towards the length).
Each step takes the ``2 * num_beams`` best extensions; an EOS among the first
``num_beams`` of them ends a hypothesis (the ``num_beams`` best finished ones
are kept), the best non-EOS ones are the next beams. The search stops when
``num_beams`` hypotheses have finished and the best running beam, scored at its
current length, cannot beat the worst of them (Hugging Face's default,
``early_stopping=False``), or at ``max_new_tokens``, where running beams
count as finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np

from edgevlm.runtime.generation import GenerationConfig, log_softmax, sample, suppress_eos

StepFn = Callable[[np.ndarray, np.ndarray, list | None], tuple[np.ndarray, list]]
DONE = -1  # the token yielded for a row that finished on an earlier step


def left_pad(prompts: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded ids and attention mask, both [b, longest] int64 (positions follow the mask in the graph)."""
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad, dtype=np.int64)
    mask = np.zeros((len(prompts), width), dtype=np.int64)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = p
        mask[i, width - len(p) :] = 1
    return ids, mask


class Sequences:
    """One call's decoding state: the step function, its past and one attention-mask buffer.

    The mask lives in a buffer allocated at prefill, so a step does O(1)
    Python work besides the model run (a view when the batch is 1).
    """

    def __init__(self, step: StepFn, prompts: list[list[int]], max_new: int, pad: int):
        ids, mask = left_pad(prompts, pad)
        b, s = ids.shape
        self._step = step
        self.mask = np.ones((b, s + max_new), np.int64)  # [b, prompt + max_new]: left padding zeros, then ones
        self.mask[:, :s] = mask
        self.length = s  # columns of mask in use
        self.logits, self.past = step(ids, mask, None)  # [b, V], the step function's cache

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per row. tokens [b] -> logits [b, V]"""
        if self.length >= self.mask.shape[1]:
            raise RuntimeError("decode step past the length reserved at prefill")
        self.length += 1
        view = self.mask[:, : self.length]
        view = view if view.flags.c_contiguous else np.ascontiguousarray(view)
        self.logits, self.past = self._step(tokens.astype(np.int64).reshape(-1, 1), view, self.past)
        return self.logits

    def reorder(self, rows: np.ndarray) -> None:
        """Row i continues from row ``rows[i]`` (one gather of the mask and the past)."""
        self.mask = self.mask[rows]
        self.past = [p[rows] for p in self.past]
        self.logits = self.logits[rows]


def tokens(
    step: StepFn,
    prompts: list[list[int]],
    cfg: GenerationConfig,
    eos: int | None,
    stopped: Callable[[], np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """Greedy or sampled decoding of a left-padded batch; yields each step's token per row [b].

    A row ends at ``eos`` (yielded once) or when ``stopped()`` (called after
    each yield, [b] bool) says so; it then yields :data:`DONE`. Sampling draws
    from ``np.random.default_rng(cfg.seed)``.
    """
    rng, pad = np.random.default_rng(cfg.seed), 0 if eos is None else eos
    seqs = Sequences(step, prompts, cfg.max_new_tokens, pad)
    finished = np.zeros(len(prompts), dtype=bool)
    logits = seqs.logits
    for n in range(cfg.max_new_tokens):
        nxt = sample(suppress_eos(logits, eos, n, cfg), cfg, rng)  # [b]
        yield np.where(finished, DONE, nxt)
        if eos is not None:
            finished |= nxt == eos
        if stopped is not None:
            finished |= stopped()
        if finished.all() or n + 1 == cfg.max_new_tokens:
            return
        logits = seqs.advance(np.where(finished, pad, nxt))


class BoundStep(Protocol):
    """One row's model with its inputs and logits bound in place (:class:`edgevlm.runtime.steps.BoundStep`):
    both methods return the same [1, V] logits buffer, rewritten by every run."""

    def prefill(self, prompt: Sequence[int]) -> np.ndarray: ...

    def feed(self, token: int) -> np.ndarray: ...


def greedy_one(
    step: BoundStep, prompt: Sequence[int], cfg: GenerationConfig, eos: int | None, stopped: Callable[[], bool] | None
) -> Iterator[int]:
    """Greedy decoding of one prompt: :func:`tokens`' tokens for a batch of one, as ints, with no array made per
    step (the argmax reads the bound logits in place). Ends after ``eos`` (yielded), when ``stopped()`` or at
    ``cfg.max_new_tokens``."""
    logits = step.prefill(prompt)  # [1, V]
    for n in range(cfg.max_new_tokens):
        tok = int(suppress_eos(logits, eos, n, cfg).argmax())  # one row: the flat index is the token
        yield tok
        if tok == eos or (stopped is not None and stopped()) or n + 1 == cfg.max_new_tokens:
            return
        logits = step.feed(tok)


def generate(step: StepFn, prompts: list[list[int]], cfg: GenerationConfig, eos: int | None) -> list[list[int]]:
    """Each prompt's new token ids (EOS excluded): beam search when ``cfg.num_beams > 1``, else :func:`tokens`."""
    if cfg.num_beams > 1:
        return [beam_search(step, p, cfg, eos) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    for nxt in tokens(step, prompts, cfg, eos):
        for row, t in zip(out, nxt.tolist()):
            if t != DONE and t != eos:
                row.append(t)
    return out


def greedy(step: StepFn, prompts: list[list[int]], max_new_tokens: int, eos: int | None) -> list[list[int]]:
    """Greedy continuations (EOS excluded; ``eos=None``: exactly ``max_new_tokens`` each)."""
    return generate(step, prompts, GenerationConfig(max_new_tokens=max_new_tokens), eos)


def beam_search(step: StepFn, prompt: list[int], cfg: GenerationConfig, eos: int | None) -> list[int]:
    """The best hypothesis for one prompt (EOS excluded) under the module's stopping rule."""
    seqs = Sequences(step, [prompt], cfg.max_new_tokens, 0 if eos is None else eos)
    seqs.reorder(np.zeros(cfg.num_beams, dtype=np.int64))  # every beam starts from the prompt
    beams, logits = BeamSearch(cfg.num_beams, eos, cfg.length_penalty), seqs.logits
    for n in range(cfg.max_new_tokens):
        parents, toks = beams.step(suppress_eos(log_softmax(logits), eos, n, cfg))
        if beams.done() or n + 1 == cfg.max_new_tokens:
            break
        seqs.reorder(parents)
        logits = seqs.advance(toks)
    return beams.best()


class BeamSearch:
    """The bookkeeping of :func:`beam_search`: ``num_beams`` running beams and the finished hypotheses.

    Tokens are kept as back-pointers (one parent and one token per beam per
    step), and a finished hypothesis as (step, beam), so a step costs
    O(beams) and not O(beams x length); tokens are read back once, at the end.
    """

    def __init__(self, num_beams: int, eos: int | None, length_penalty: float = 1.0):
        self.n, self.eos, self.lp = num_beams, eos, length_penalty
        self.scores = np.full(num_beams, -np.inf)
        self.scores[0] = 0.0  # every beam starts from the same prompt: only one of them is live
        self.parents: list[np.ndarray] = []  # per step [n]: which beam each beam came from
        self.tokens: list[np.ndarray] = []  # per step [n]: the token each beam appended
        self.finished: list[tuple[float, int, int]] = []  # (normalised score, step, beam), best first

    def _history(self, beam: int, upto: int) -> list[int]:
        out = []
        for t in range(upto - 1, -1, -1):
            out.append(int(self.tokens[t][beam]))
            beam = int(self.parents[t][beam])
        return out[::-1]

    def _finish(self, step: int, beam: int, score: float, length: int) -> None:
        """Keep the hypothesis ending with ``beam`` after ``step`` tokens, if it is among the n best."""
        self.finished.append((score / max(length, 1) ** self.lp, step, beam))
        self.finished.sort(key=lambda h: -h[0])  # stable: an earlier hypothesis wins a tie
        del self.finished[self.n :]

    def step(self, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every beam by one token. logprobs [n, V] -> (parent beam [n], next token [n])"""
        v = logprobs.shape[1]
        flat = (self.scores[:, None] + logprobs).ravel()  # [n * V]
        k = min(2 * self.n, flat.size)
        top = np.argpartition(-flat, k - 1)[:k]
        top = top[np.argsort(-flat[top], kind="stable")]
        parents, toks, scores = [], [], []
        for rank, j in enumerate(top):
            b, t, s = int(j // v), int(j % v), float(flat[j])
            if s == -np.inf:
                break
            if t == self.eos:
                if rank < self.n:  # EOS counts only among the n best candidates
                    self._finish(len(self.tokens), b, s, len(self.tokens) + 1)  # EOS counts towards the length
                continue
            parents.append(b)
            toks.append(t)
            scores.append(s)
            if len(toks) == self.n:
                break
        while len(toks) < self.n:  # fewer live candidates than beams: pad with dead beams
            parents.append(0)
            toks.append(self.eos or 0)
            scores.append(-np.inf)
        self.parents.append(np.array(parents))
        self.tokens.append(np.array(toks))
        self.scores = np.array(scores)
        return self.parents[-1], self.tokens[-1]

    def done(self) -> bool:
        """True when no running beam can beat the worst kept hypothesis (see the module docstring)."""
        if len(self.finished) < self.n:
            return not np.isfinite(self.scores).any()
        return self.scores.max() / max(len(self.tokens), 1) ** self.lp <= self.finished[-1][0]

    def best(self) -> list[int]:
        """Tokens of the best hypothesis (running beams count as finished at the length limit); EOS excluded."""
        for b in range(self.n):
            if np.isfinite(self.scores[b]):
                self._finish(len(self.tokens), b, float(self.scores[b]), len(self.tokens))
        return self._history(self.finished[0][2], self.finished[0][1]) if self.finished else []
