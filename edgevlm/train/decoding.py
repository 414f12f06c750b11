"""The torch decoder for the VLM (training-time evaluation, distillation): batched greedy and beam search.

Both run with the KV cache. Beam search follows the runtime's rule exactly
(:mod:`edgevlm.runtime.decoder` documents it): scores are ``sum(log p) /
length ** length_penalty`` with EOS counted in the length, an EOS ends a
hypothesis only among the ``num_beams`` best candidates, and the search stops
once ``num_beams`` have finished and the best running beam at its current
length cannot beat the worst of them. ``edgevlm eval`` and ``edgevlm run``
therefore return the same beams (tests compare them on one bundle).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from edgevlm.train.model import VLM

StepFn = Callable[[torch.Tensor | None, torch.Tensor | None], torch.Tensor]


@torch.no_grad()
def greedy_batch(
    vlm: VLM, prompts: list[list[int]], task: str | None, max_new_tokens: int, eos: int | None, batch_size: int = 32
) -> list[list[int]]:
    """Greedy continuations of many prompts (EOS excluded; ``eos=None``: exactly ``max_new_tokens``).

    Prompts are batched by similar length, left padded.
    """
    vlm.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    for c in range(0, len(order), batch_size):
        chunk = order[c : c + batch_size]
        for i, gen in zip(chunk, _greedy_chunk(vlm, [prompts[i] for i in chunk], task, max_new_tokens, eos)):
            out[i] = gen
    return out


def greedy(vlm: VLM, prompt: list[int], task: str | None, max_new_tokens: int, eos: int | None) -> list[int]:
    """Greedy continuation of one prompt (EOS excluded)."""
    return greedy_batch(vlm, [prompt], task, max_new_tokens, eos)[0]


def _greedy_chunk(vlm: VLM, prompts: list[list[int]], task, max_new_tokens: int, eos: int | None) -> list[list[int]]:
    pad = 0 if eos is None else eos
    b, t = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((b, t), pad, dtype=torch.long)  # [b, t], left padded
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, t - len(p) :] = torch.tensor(p)
        mask[i, t - len(p) :] = 1
    logits, past = vlm(ids, attention_mask=mask, task=task)  # [b, t, V]
    outs: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(b, dtype=torch.bool)
    for _ in range(max_new_tokens):
        nxt = logits[:, -1].argmax(-1)  # [b]
        if eos is not None:
            done |= nxt == eos
        for i in (~done).nonzero().flatten().tolist():
            outs[i].append(int(nxt[i]))
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((b, 1), dtype=torch.long)], 1)  # [b, t+1]
        logits, past = vlm(torch.where(done, pad, nxt)[:, None], attention_mask=mask, task=task, past_key_values=past)
    return outs


class BeamSearch:
    """Running beams and finished hypotheses of one input (the runtime's ``BeamSearch``, in torch).

    Beams are kept as token lists; a finished hypothesis as (normalised score, tokens), best first.
    """

    def __init__(self, num_beams: int, eos: int | None, length_penalty: float = 1.0):
        self.n, self.eos, self.lp = num_beams, eos, length_penalty
        self.scores = torch.zeros(1, dtype=torch.float64)  # [live rows]: the prompt alone at first
        self.seqs: list[list[int]] = [[]]
        self.length = 0  # tokens in every running beam
        self.finished: list[tuple[float, list[int]]] = []

    def _finish(self, score: float, seq: list[int], length: int) -> None:
        self.finished.append((score / max(length, 1) ** self.lp, seq))
        self.finished.sort(key=lambda h: -h[0])  # stable: an earlier hypothesis wins a tie
        del self.finished[self.n :]

    def step(self, logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every beam by one token. logprobs [rows, V] float64 -> (parent row [n], next token [n])"""
        v = logprobs.shape[1]
        flat = (self.scores[:, None] + logprobs).flatten()  # [rows * V]
        top = flat.topk(min(2 * self.n, flat.numel()))
        parents, toks, scores = [], [], []
        for rank, (s, j) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            b, t = divmod(j, v)
            if s == -math.inf:
                break
            if t == self.eos:
                if rank < self.n:  # EOS counts only among the n best candidates
                    self._finish(s, self.seqs[b], self.length + 1)  # EOS counts towards the length
                continue
            parents.append(b)
            toks.append(t)
            scores.append(s)
            if len(toks) == self.n:
                break
        self.seqs = [self.seqs[b] + [t] for b, t in zip(parents, toks)]
        while len(toks) < self.n:  # fewer live candidates than beams: pad with dead beams
            parents.append(0)
            toks.append(self.eos or 0)
            scores.append(-math.inf)
            self.seqs.append([])
        self.length += 1
        self.scores = torch.tensor(scores, dtype=torch.float64)
        return torch.tensor(parents), torch.tensor(toks)

    def done(self) -> bool:
        """True when no running beam can beat the worst kept hypothesis."""
        if len(self.finished) < self.n:
            return not bool(torch.isfinite(self.scores).any())
        return float(self.scores.max()) / max(self.length, 1) ** self.lp <= self.finished[-1][0]

    def best(self) -> list[int]:
        """Tokens of the best hypothesis (running beams count as finished at the length limit); EOS excluded."""
        for s, seq in zip(self.scores.tolist(), self.seqs):
            if math.isfinite(s):
                self._finish(s, seq, self.length)
        return self.finished[0][1] if self.finished else []


def beam_search(step: StepFn, num_beams: int, max_new_tokens: int, eos: int | None, length_penalty: float = 1.0):
    """Best continuation (EOS excluded) by beam search over ``step``.

    ``step(None, None)`` returns the prompt's next-token log-probs ``[1, V]``;
    ``step(parents, tokens)`` (both ``[n]``) extends row ``parents[i]`` of the
    previous call by ``tokens[i]`` and returns ``[n, V]``.
    """
    if max_new_tokens <= 0:
        return []
    beams, logp = BeamSearch(num_beams, eos, length_penalty), step(None, None)
    for n in range(max_new_tokens):
        parents, tokens = beams.step(logp.double())
        if beams.done() or n + 1 == max_new_tokens:
            break
        logp = step(parents, tokens)
    return beams.best()


@torch.no_grad()
def vlm_beam_search(
    vlm: VLM,
    prompt: list[int],
    task: str | None,
    num_beams: int,
    max_new_tokens: int,
    eos: int | None,
    length_penalty: float = 1.0,
) -> list[int]:
    """Beam search with the VLM's KV cache (reordered to follow the surviving beams)."""
    vlm.eval()
    state: dict = {}

    def step(parents, tokens):
        if parents is None:
            logits, state["past"] = vlm(torch.tensor([prompt]), task=task)  # [1, t, V]
        else:
            state["past"].reorder_cache(parents)  # [1 or n rows] -> [n rows]
            logits, state["past"] = vlm(tokens[:, None], task=task, past_key_values=state["past"])  # [n, 1, V]
        return F.log_softmax(logits[:, -1].double(), -1)  # [n, V]

    return beam_search(step, num_beams, max_new_tokens, eos, length_penalty)
