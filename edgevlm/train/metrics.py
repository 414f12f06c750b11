"""Evaluation metrics over predictions and (possibly several) references per example; all in [0, 100].

Corpus BLEU (sacrebleu, multi-reference), ROUGE-1/2/L F-measure (rouge-score,
Porter stemming, best reference per example), token F1 and exact match with
SQuAD/CoQA answer normalisation (best reference per example), and perplexity; for
the nlg task also the E2E challenge's metrics (:mod:`edgevlm.train.e2e_metrics`).
Torch-free, so the same code scores the PyTorch model and an ONNX bundle.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

from edgevlm.core.errors import ConfigError
from edgevlm.train.refcheck import check_refs

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def bleu(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing) with all references."""
    import sacrebleu

    check_refs(preds, refs)
    k = max(len(r) for r in refs)
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(k)]  # None: no i-th reference
    return float(sacrebleu.corpus_bleu(list(preds), streams).score)


def rouge(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure; per example the best-scoring reference counts."""
    from rouge_score import rouge_scorer

    check_refs(preds, refs)
    types = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    totals = dict.fromkeys(types, 0.0)
    for p, r in zip(preds, refs):
        best = scorer.score_multi(list(r), p)
        for t in types:
            totals[t] += best[t].fmeasure
    return {t: 100.0 * v / len(preds) for t, v in totals.items()}


def normalize_answer(text: str) -> list[str]:
    """SQuAD/CoQA normalisation: lower case, no punctuation, no articles, split on whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return _ARTICLES.sub(" ", text).split()


def token_f1(pred: str, ref: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (1.0 when both are empty)."""
    p, r = normalize_answer(pred), normalize_answer(ref)
    if not p or not r:
        return float(p == r)
    same = sum((Counter(p) & Counter(r)).values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(r)
    return 2 * prec * rec / (prec + rec)


def f1(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Mean over examples of the best token F1 against any reference."""
    check_refs(preds, refs)
    return 100.0 * sum(max(token_f1(p, x) for x in r) for p, r in zip(preds, refs)) / len(preds)


def exact_match(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Share of predictions equal to some reference after normalisation."""
    check_refs(preds, refs)
    hit = sum(any(normalize_answer(p) == normalize_answer(x) for x in r) for p, r in zip(preds, refs))
    return 100.0 * hit / len(preds)


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """``exp`` of the mean negative log-likelihood (nats) per target token."""
    if n_tokens <= 0:
        raise ConfigError("perplexity needs at least one target token")
    return math.exp(nll_sum / n_tokens)


def score(preds: Sequence[str], refs: Sequence[Sequence[str]], task: str | None = None) -> dict[str, float]:
    """Every text metric: ``bleu``, ``rouge1``, ``rouge2``, ``rougeL``, ``f1``, ``em``; for the ``nlg`` task also
    the E2E challenge's own five (``e2e_bleu``, ``e2e_nist``, ``e2e_meteor``, ``e2e_rougeL``, ``e2e_cider``:
    see :mod:`edgevlm.train.e2e_metrics`), which differ from ``bleu``/``rougeL`` in tokenisation and casing."""
    out = {"bleu": bleu(preds, refs), **rouge(preds, refs), "f1": f1(preds, refs), "em": exact_match(preds, refs)}
    if task == "nlg":
        from edgevlm.train.e2e_metrics import e2e_scores

        out.update(e2e_scores(preds, refs))
    return out
