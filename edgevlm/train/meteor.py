"""METEOR (Lavie and Denkowski) with Meteor 1.5's English parameters and its exact and stem modules.

What Meteor 1.5 does and this module does too (Denkowski and Lavie 2014, "Meteor Universal"):
unigram matches between hypothesis and reference from the exact module (weight 1.0) and the stem
module (Snowball English stems, weight 0.6); the alignment keeps each word in at most one match and
is chosen by, in order: most matched words, fewest chunks (runs of matches adjacent in both
sentences), smallest sum of |hypothesis index - reference index|; weighted precision P and recall R;
``Fmean = P R / (alpha P + (1 - alpha) R)``; fragmentation penalty ``gamma (chunks / matches)^beta``
(0 when the hypothesis equals the reference, one chunk); ``score = Fmean (1 - penalty)``. 'en'
defaults: alpha 0.85, beta 0.20, gamma 0.60, delta 0.75. With several references a row keeps the
best-scoring one's statistics; the corpus score is the formula on statistics summed over rows, where
a row matched whole in one chunk adds no chunks (as Meteor 1.5's aggregation does).

What differs from Meteor 1.5 and why: its synonym (WordNet synsets) and paraphrase (a 60 MB
paraphrase table) modules need data files that cannot be fetched here, so they are absent, and so is
its English function-word list: every word counts as a content word, which makes delta drop out of
P and R (Meteor's own result with ``-p "0.85 0.2 0.6 0.5" -m "exact stem"``). Scores therefore
come out lower than Meteor 1.5's by what synonyms and paraphrases would have matched.
Meteor finds its alignment with a beam search (beam 40); this one searches with a wider beam.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

ALPHA, BETA, GAMMA = 0.85, 0.20, 0.60  # Meteor 1.5, language 'en', task 'rank' (the default)
WEIGHTS = {"exact": 1.0, "stem": 0.6}
BEAM = 256


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball English stem (the stemmer Meteor ships); nltk is already pinned, through rouge-score."""
    from nltk.stem.snowball import SnowballStemmer

    return _stemmer(SnowballStemmer)(word)


@lru_cache(maxsize=1)
def _stemmer(cls):
    return cls("english").stem


@dataclass
class Stats:
    """Meteor's sufficient statistics of one row (or, summed, of a corpus)."""

    hyp_len: int = 0
    ref_len: int = 0
    hyp_weighted: float = 0.0  # weighted matches (every word a content word)
    ref_weighted: float = 0.0
    matches: int = 0
    chunks: int = 0

    def add(self, o: Stats) -> None:
        whole = o.matches == o.hyp_len == o.ref_len and o.chunks == 1
        self.hyp_len += o.hyp_len
        self.ref_len += o.ref_len
        self.hyp_weighted += o.hyp_weighted
        self.ref_weighted += o.ref_weighted
        self.matches += o.matches
        self.chunks += 0 if whole else o.chunks


def score(s: Stats) -> float:
    """Fmean times (1 - fragmentation penalty), in [0, 1]; 0 without matches."""
    if s.matches == 0 or s.hyp_len == 0 or s.ref_len == 0:
        return 0.0
    p, r = s.hyp_weighted / s.hyp_len, s.ref_weighted / s.ref_len
    fmean = p * r / (ALPHA * p + (1 - ALPHA) * r)
    whole = s.matches == s.hyp_len == s.ref_len and s.chunks <= 1
    frag = 0.0 if whole else s.chunks / s.matches
    return max(0.0, fmean * (1 - GAMMA * frag**BETA))


def _candidates(hyp: list[str], ref: list[str]) -> list[list[tuple[int, float]]]:
    """Per hypothesis word, the reference positions it may match and the module weight (exact over stem)."""
    hs, rs = [stem(w) for w in hyp], [stem(w) for w in ref]
    out = []
    for i, w in enumerate(hyp):
        c = [(j, WEIGHTS["exact"] if w == ref[j] else WEIGHTS["stem"]) for j in range(len(ref)) if hs[i] == rs[j]]
        out.append(c)
    return out


def _needed(hyp: list[str], ref: list[str]) -> tuple[list[int], Counter]:
    """Most matches per stem class (min of its counts on either side) and, per hypothesis position, how
    many words of its class follow it: skipping a word must leave enough to reach the maximum."""
    hs = [stem(w) for w in hyp]
    most = Counter(hs) & Counter(stem(w) for w in ref)
    after, seen = [0] * len(hyp), Counter()
    for i in range(len(hyp) - 1, -1, -1):
        after[i] = seen[hs[i]]
        seen[hs[i]] += 1
    return after, most


def align(hyp: list[str], ref: list[str]) -> Stats:
    """The best alignment's statistics: most matches, then fewest chunks, then smallest distance, then weight."""
    cands, (after, most) = _candidates(hyp, ref), _needed(hyp, ref)
    hs = [stem(w) for w in hyp]
    # state: (chunks, distance, -weight, used ref positions, previous ref position or -2, matches per class)
    beam = [(0, 0, 0.0, frozenset(), -2, Counter())]
    for i in range(len(hyp)):
        nxt: dict = {}
        for chunks, dist, negw, used, prev, got in beam:
            if after[i] >= most[hs[i]] - got[hs[i]]:  # may skip and still reach the maximum
                _keep(nxt, (chunks, dist, negw, used, -2, got))
            if got[hs[i]] >= most[hs[i]]:
                continue
            for j, w in cands[i]:
                if j not in used:
                    g = got.copy()
                    g[hs[i]] += 1
                    state = (chunks + (prev != j - 1), dist + abs(i - j), negw - w, used | {j}, j, g)
                    _keep(nxt, state)
        beam = sorted(nxt.values(), key=lambda s: s[:3])[:BEAM]
    chunks, _, negw, used, _, _ = min(beam, key=lambda s: s[:3])
    m = len(used)
    return Stats(len(hyp), len(ref), -negw, -negw, m, chunks)


def _keep(states: dict, s: tuple) -> None:
    """Keep the better of two states that can continue alike (same used positions, same previous one)."""
    key = (s[3], s[4])
    if key not in states or s[:3] < states[key][:3]:
        states[key] = s


def row_stats(hyp: str, refs: Sequence[str]) -> Stats:
    """Statistics against the best-scoring reference (the first on a tie), as Meteor with several references."""
    h = hyp.split()
    best, best_score = None, -1.0
    for r in refs:
        s = align(h, r.split())
        if score(s) > best_score:
            best, best_score = s, score(s)
    return best


def meteor(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Corpus METEOR x100 of whitespace-tokenised, lower-cased text (the challenge feeds it PTB tokens)."""
    from edgevlm.train.e2e_metrics import check_refs

    check_refs(preds, refs)
    total = Stats()
    for p, r in zip(preds, refs):
        total.add(row_stats(p.lower(), [x.lower() for x in r]))
    return 100.0 * score(total)
