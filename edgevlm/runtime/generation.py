"""Generation settings (validated) and the logits processing that turns one step's logits into tokens (numpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgevlm.core.errors import ConfigError

MAX_BEAMS = 64  # beam search keeps num_beams caches: 4,096 beams took 25 s and 1.5 GB on the tiny model
MAX_LENGTH_PENALTY = 10.0
TOP_P_SHORTLIST = 1024  # top-p first looks at this many best tokens; it sorts the whole row only if they fall short


@dataclass
class GenerationConfig:
    """How to decode. Greedy by default; ``do_sample`` draws with temperature / top-k / top-p from ``seed``.

    ``min_new_tokens`` suppresses EOS until that many tokens exist (as in
    Hugging Face), ``num_beams > 1`` runs beam search, ``stop`` ends the
    output before the first occurrence of any of these strings.
    """

    max_new_tokens: int
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, low in (("max_new_tokens", 1), ("min_new_tokens", 0), ("top_k", 0), ("num_beams", 1)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.min_new_tokens > self.max_new_tokens:
            raise ConfigError(
                f"min_new_tokens={self.min_new_tokens} is larger than max_new_tokens={self.max_new_tokens}"
            )
        if self.num_beams > MAX_BEAMS:
            raise ConfigError(
                f"num_beams must be at most {MAX_BEAMS} (time and memory grow with it), got {self.num_beams}"
            )
        if self.seed is not None and (
            not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0
        ):
            raise ConfigError(f"seed must be a non-negative integer or None, got {self.seed!r}")
        self._check_sampling()
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.stop, (list, tuple)) or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"stop must be a list of non-empty strings, got {self.stop!r}")
        if not all(s.isascii() or _utf8(s) for s in self.stop):  # undecodable argv bytes could never match
            raise ConfigError(f"stop strings must be valid UTF-8 text, got {self.stop!r}")
        self.stop = list(self.stop)

    def _check_sampling(self) -> None:
        if not isinstance(self.do_sample, (bool, np.bool_)):
            raise ConfigError(f"do_sample must be True or False, got {self.do_sample!r}")
        if self.num_beams > 1 and self.do_sample:
            raise ConfigError("num_beams > 1 is beam search; it cannot be combined with do_sample")
        if not (_real(self.temperature) and self.temperature > 0):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature!r}")
        if not (_real(self.top_p) and 0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not (_real(self.length_penalty) and abs(self.length_penalty) <= MAX_LENGTH_PENALTY):
            raise ConfigError(
                f"length_penalty must be a number in [-{MAX_LENGTH_PENALTY:g}, {MAX_LENGTH_PENALTY:g}], "
                f"got {self.length_penalty!r}"
            )


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _real(v) -> bool:
    """A finite int or float that is not a bool (``True`` is not a temperature)."""
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_))
        and (math.isfinite(v))
    )


def suppress_eos(logits: np.ndarray, eos: int | None, n_generated: int, cfg: GenerationConfig) -> np.ndarray:
    """Forbid EOS while fewer than ``min_new_tokens`` tokens exist (in place). logits [b, V]."""
    if eos is not None and n_generated < cfg.min_new_tokens:
        logits[:, eos] = -np.inf
    return logits


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 for stable beam scores. [b, V] -> [b, V]"""
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _best(row: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` largest entries of ``row``, best first. row [V] -> [k]"""
    ids = np.argpartition(-row, k - 1)[:k] if k < row.shape[0] else np.arange(row.shape[0])
    return ids[np.argsort(-row[ids], kind="stable")]


def candidates(row: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """Token ids allowed by top-k, then top-p (the smallest best-first set holding ``top_p`` of the mass). row [V]

    Sorted best first, except the unrestricted case (``top_k=0, top_p=1``), which returns every id in order.
    """
    v = row.shape[0]
    k = min(top_k, v) if top_k else v
    if top_p >= 1.0:
        return _best(row, k) if k < v else np.arange(v)  # the full distribution needs no sorting
    short = k if k < v else min(TOP_P_SHORTLIST, v)  # no top-k: try a shortlist before sorting the whole row
    while True:
        ids = _best(row, short)
        p = np.exp(row[ids] - row[ids[0]])
        total = p.sum() if short == k else np.exp(row - row[ids[0]]).sum()  # mass within top-k (or the whole row)
        cum = np.cumsum(p) / total
        if cum[-1] >= top_p or short == k:
            return ids[: min(int(np.searchsorted(cum, top_p)) + 1, short)]
        short = k


def sample(logits: np.ndarray, cfg: GenerationConfig, rng: np.random.Generator) -> np.ndarray:
    """One token per row: greedy, or a draw after temperature / top-k / top-p. logits [b, V] -> [b] int64"""
    if not cfg.do_sample:
        return logits.argmax(-1).astype(np.int64)
    out = np.empty(logits.shape[0], dtype=np.int64)
    for r, row in enumerate(logits):
        row = row.astype(np.float64) / cfg.temperature
        ids = candidates(row, cfg.top_k, cfg.top_p)
        z = row[ids]
        p = np.exp(z - z.max())
        out[r] = ids[rng.choice(len(ids), p=p / p.sum())]
    return out
