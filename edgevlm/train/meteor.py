"""METEOR 1.5 (Denkowski and Lavie 2014, "Meteor Universal") for English, exact and stem modules only.

Done as Meteor 1.5 (``-l en -norm``) does it, and checked equal to its jar (experiments/e2e_metrics):
text normalised as ``-norm`` acts on tokenised text (:func:`normalize`); unigram matches from the exact
module (scoring weight 1.0) and the stem module (different words with the same Snowball English stem,
weight 0.6); the alignment from Meteor's beam search (width 40) over the reference, ranking partial
alignments by matched words (exact 1, stem 0 after Java's int narrowing), then fewer chunks, then
distance; weighted precision P and recall R; ``Fmean = P R / (alpha P + (1 - alpha) R)``;
fragmentation penalty ``gamma (chunks / matches)^beta``, 0 for a row matched whole in one chunk;
``score = Fmean (1 - penalty)`` with the 'en' defaults alpha 0.85, beta 0.20, gamma 0.60. With several
references a row keeps the best-scoring one's statistics; the corpus score is the formula on statistics
summed over rows, where a row matched whole in one chunk adds no chunks (as Meteor's aggregation does).

What differs from Meteor 1.5, and why: its synonym module (WordNet synsets, weight 0.8), its
paraphrase module (a 60 MB paraphrase table, weight 0.6) and its English function-word list (delta
0.75 weighs content words 3:1 over function words) are data files of the LGPL Meteor distribution,
which a pure-Python package cannot carry or fetch at run time; so those modules are absent and every
word counts as a content word, which makes delta drop out of P and R. This equals Meteor 1.5 run with
``-m "exact stem" -w "1.0 0.6" -p "0.85 0.2 0.6 0.5"``; full Meteor 1.5 scores higher (on E2E dev
text by 0.9-1.8 points: see experiments/e2e_metrics/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from edgevlm.train.refcheck import check_refs

ALPHA, BETA, GAMMA = 0.85, 0.20, 0.60  # Meteor 1.5, language 'en', task 'rank' (the default)
EXACT, STEM = 0, 1  # module ids
WEIGHTS = (1.0, 0.6)  # scoring weights per module, 'en'
RANK_WEIGHTS = (1.0, 0.5)  # the weights Meteor ranks partial alignments with
BEAM = 40  # Meteor's default beam


_LEADING_QUOTE = re.compile(r"(^|\s)'(?=\w)")
_INNER_QUOTE = re.compile(r"(\w)'")
_HYPHEN = re.compile(r"(\w)-(\w)")
_SYMBOLS = re.compile(r"([/+:&_@*()\[\]{};?!])|(?<![0-9]),|,(?![0-9])")


def normalize(text: str) -> list[str]:
    """Meteor 1.5's ``-norm`` as it acts on PTB tokens (observed on the 1.5 jar): lower case; a leading
    apostrophe split off (``'s`` -> ``' s``), then a word's inner one (``n't`` -> ``n 't``); a hyphen
    between two word characters becomes a space (``family-friendly`` -> ``family friendly``, pairwise:
    ``x-y-z`` -> ``x y-z``); symbols and commas outside numbers split off."""
    text = _INNER_QUOTE.sub(r"\1 '", _LEADING_QUOTE.sub(r"\1' ", text.lower()))
    text = _SYMBOLS.sub(lambda m: f" {m.group(0)} ", _HYPHEN.sub(r"\1 \2", text))
    return text.split()


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


def _candidates(hyp: list[str], ref: list[str]) -> list[list[tuple[int, int]]]:
    """Per reference position, its possible matches ``(hypothesis position, module)``: the exact module's
    first, then the stem module's (different words with the same stem), as Meteor's matchers list them.
    Identical sentences get exact matches only (Meteor's guard against beam-search errors)."""
    only_exact = hyp == ref
    hs, rs = [stem(w) for w in hyp], [stem(w) for w in ref]
    out = []
    for j, r in enumerate(ref):
        c = [(i, EXACT) for i, h in enumerate(hyp) if h == r]
        if not only_exact:
            c += [(i, STEM) for i, h in enumerate(hyp) if h != r and hs[i] == rs[j]]
        out.append(c)
    return out


@dataclass
class _Path:
    """A partial alignment of Meteor's beam search, walking the reference left to right."""

    matches: dict  # reference position -> (hypothesis position, module)
    used: set  # hypothesis positions taken
    total: int = 0  # Meteor's ranking total (an int field: see _rank_gain)
    chunks: int = 0
    distance: int = 0
    last_end: int = -1  # hypothesis position after the open chunk's last match, -1 when none is open

    def copy(self) -> _Path:
        return _Path(dict(self.matches), set(self.used), self.total, self.chunks, self.distance, self.last_end)

    def take(self, j: int, i: int, module: int) -> None:
        self.matches[j] = (i, module)
        self.used.add(i)
        self.total += _rank_gain(module)
        self.chunks += self.last_end not in (-1, i)
        self.last_end = i + 1


def _rank_gain(module: int) -> int:
    """What one match adds to the ranking total: each side's length times the ranking weight (exact 1,
    other modules 0.5), added to Meteor's int fields, whose narrowing keeps whole words only: a stem
    match adds nothing to the ranking (it still counts in the score). Checked against the jar."""
    return 2 * int(RANK_WEIGHTS[module])


def _fixed(cands: list[list[tuple[int, int]]], n_hyp: int) -> _Path:
    """The start path: a reference word with one possible match whose two words have no other is fixed."""
    cov1 = [0] * n_hyp
    for c in cands:
        for i, _ in c:
            cov1[i] += 1
    path = _Path({}, set())
    for j, c in enumerate(cands):
        if len(c) == 1 and cov1[c[0][0]] == 1:
            path.matches[j] = c[0]
            path.used.add(c[0][0])
    return path


def _step(path: _Path, j: int, cands: list[tuple[int, int]], out: list) -> None:
    """Extend one path at reference position j: its fixed match, or each free candidate, or a skip."""
    if j in path.matches:  # fixed at the start
        i, module = path.matches[j]
        path.take(j, i, module)
        path.distance += abs(j - i)
        out.append(path)
        return
    for i, module in cands:
        if i in path.used:
            continue
        new = path.copy()
        new.take(j, i, module)
        path.distance += abs(j - i)  # Meteor 1.5 adds it to the parent path, not the new one; kept for equality
        out.append(new)
    if path.last_end != -1:
        path.chunks += 1
        path.last_end = -1
    out.append(path)


def _rank(p: _Path) -> tuple:
    return (-p.total, p.chunks, p.distance)


def _chunks(matches: dict, n_ref: int) -> int:
    """Runs of matches adjacent in both sentences."""
    chunks, last = 0, None
    for j in range(n_ref):
        m = matches.get(j)
        if m is not None and (last is None or m[0] != last + 1):
            chunks += 1
        last = m[0] if m is not None else None
    return chunks


def align(hyp: list[str], ref: list[str]) -> Stats:
    """Meteor 1.5's alignment (beam search of width BEAM over the reference, ranked by matched words, then
    fewer chunks, then smaller distance) and its statistics."""
    cands = _candidates(hyp, ref)
    paths = [_fixed(cands, len(hyp))]
    for j in range(len(ref)):
        nxt: list = []
        for path in sorted(paths, key=_rank)[:BEAM]:  # stable, as Java's sort
            _step(path, j, cands[j], nxt)
        paths = nxt
    final = sorted(paths, key=_rank)[:BEAM]
    for p in final:  # close the open chunk
        p.chunks += p.last_end != -1
    best = min(final, key=_rank)  # the first of equals, as a stable sort
    weighted = sum(WEIGHTS[m] for _, m in best.matches.values())
    return Stats(len(hyp), len(ref), weighted, weighted, len(best.matches), _chunks(best.matches, len(ref)))


def row_stats(hyp: str, refs: Sequence[str]) -> Stats:
    """Statistics against the best-scoring reference (the first on a tie), as Meteor with several references."""
    h = normalize(hyp)
    best, best_score = None, -1.0
    for r in refs:
        s = align(h, normalize(r))
        if score(s) > best_score:
            best, best_score = s, score(s)
    return best


def meteor(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Corpus METEOR x100 of tokenised text after Meteor's ``-norm`` (the challenge feeds it PTB tokens)."""
    check_refs(preds, refs)
    total = Stats()
    for p, r in zip(preds, refs):
        total.add(row_stats(p, r))
    return 100.0 * score(total)
