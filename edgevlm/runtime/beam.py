"""Beam search bookkeeping for one input (numpy): running beams, finished hypotheses, the cache order."""

from __future__ import annotations

import numpy as np


class BeamSearch:
    """``num_beams`` running beams; a hypothesis scores ``sum(log p) / length ** length_penalty``.

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
        """True when no running beam can beat the worst kept hypothesis (Hugging Face's default heuristic)."""
        if len(self.finished) < self.n:
            return not np.isfinite(self.scores).any()
        return self.scores.max() / max(len(self.tokens), 1) ** self.lp <= self.finished[-1][0]

    def best(self) -> list[int]:
        """Tokens of the best hypothesis (running beams count as finished at the length limit); EOS excluded."""
        for b in range(self.n):
            if np.isfinite(self.scores[b]):
                self._finish(len(self.tokens), b, float(self.scores[b]), len(self.tokens))
        return self._history(self.finished[0][2], self.finished[0][1]) if self.finished else []
