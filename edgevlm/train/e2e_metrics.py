"""The E2E NLG Challenge's metrics (tuetschek/e2e-metrics) from their published definitions, multi-reference.

The challenge script scores a system with two programs, and so does this module:

* BLEU-4 and NIST-5 as mteval-v13a computes them (Papineni et al. 2002; Doddington 2002): text
  normalised and tokenised as mteval does, lower-cased (the script runs mteval without ``-c``), corpus
  statistics summed over segments. e2e-metrics writes every row with the most references of any row,
  padding the others with empty references; the padding is reproduced because mteval counts it (an
  empty reference may be the closest length; NIST's mean reference length divides by the number of
  reference sets). BLEU with mteval's smoothing of a zero n-gram count (``1 / (2^k * total)``).
* METEOR, ROUGE-L and CIDEr-D as coco-caption computes them after its PTB tokenisation (lower case,
  punctuation tokens dropped): see :mod:`edgevlm.train.meteor`, :func:`rouge_l`, :func:`cider_d`.

Stdlib only (the METEOR stemmer aside), torch-free. Scores are on the challenge's scales: BLEU, METEOR
and ROUGE-L x100, NIST and CIDEr as they come (the TGen baseline: 65.93, 8.61, 44.83, 68.50, 2.23).
The PTB tokeniser here is a rule-based stand-in for Stanford's (no Java): see :func:`ptb_tokens`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from edgevlm.train.meteor import meteor
from edgevlm.train.refcheck import check_refs

Ngrams = Counter  # n-gram tuple -> count

# mteval-v13a's tokenisation, in its order (after lower-casing ASCII letters)
_MTEVAL = [
    (re.compile(r"([{-~\[-` -&(-+:-@/])"), r" \1 "),  # punctuation and symbols (not ' - . ,)
    (re.compile(r"([^0-9])([.,])"), r"\1 \2 "),  # period and comma unless after a digit
    (re.compile(r"([.,])([^0-9])"), r" \1 \2"),  # period and comma unless before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # a dash after a digit
]
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def mteval_tokens(text: str) -> list[str]:
    """mteval-v13a's NormalizeText (western languages, case folded): entities, punctuation, digits."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for ent, ch in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        text = text.replace(ent, ch)
    text = f" {text} ".translate(_ASCII_LOWER)
    for pattern, repl in _MTEVAL:
        text = pattern.sub(repl, text)
    return text.split()


# A stand-in for coco-caption's PTBTokenizer (Stanford CoreNLP 3.4.1, -lowerCase) and its punctuation filter.
_CONTRACTION = re.compile(r"(?i)\b(ca|wo|do|does|did|is|are|was|were|has|have|had|could|would|should)(n't)\b")
_CLITIC = re.compile(r"(?i)(\w)('s|'re|'ve|'ll|'d|'m)\b")
_CURRENCY = re.compile(r"([$£€¥])")
_ABBREV = re.compile(r"\b(st|mr|mrs|ms|dr|jr|sr|vs|etc)\.(?=\s|$)")
_EDGE_PUNCT = re.compile(r"(?<![0-9])([.,])|([.,])(?![0-9])|([!?;:\"()\[\]{}]|--)")
# coco-caption filters these; its list spells the bracket names upper-case while the tokens come lower-cased,
# so -lrb- and the like stay in, as they do in the challenge's scores.
COCO_PUNCT = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_CLITICS = {"'s", "'re", "'ve", "'ll", "'d", "'m", "n't"}
_PTB_NAMES = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-", "£": "#"}


def ptb_tokens(text: str) -> list[str]:
    """Lower-cased PTB-style tokens without the punctuation tokens coco-caption drops.

    Splits ``n't`` and clitics (``'s``, ``'re`` ...), currency symbols (``£`` becomes ``#`` as in
    CoreNLP) and sentence punctuation, keeping ``2.5``, ``1,000``, ``st.`` and hyphenated words whole;
    brackets become ``-lrb-`` and the like; quotes and hyphens at a word's edge are dropped. Stanford's
    tokeniser has more rules (a longer abbreviation list, URLs); experiments/e2e_metrics measures the
    agreement on E2E text.
    """
    text = _CONTRACTION.sub(r"\1 \2", text.replace("\n", " ").lower())
    text = _CURRENCY.sub(r" \1 ", _CLITIC.sub(r"\1 \2", text))
    text = _ABBREV.sub(r"\1<dot>", text)
    text = _EDGE_PUNCT.sub(lambda m: f" {m.group(0)} ", text).replace("<dot>", ".")
    tokens = [_ptb_edges(_PTB_NAMES.get(t, t)) for t in text.split()]
    return [t for t in tokens if t not in COCO_PUNCT and t.strip(".'`\"") != ""]


def _ptb_edges(tok: str) -> str:
    """Quotes and hyphens at a word's edges come off as their own (dropped) tokens: ``'aromi'`` -> ``aromi``,
    ``wrestlers'`` -> ``wrestlers``, ``20-`` -> ``20``; clitics (``'s``) and bracket names stay."""
    if tok in _CLITICS or tok.startswith("-") and tok.endswith("-"):
        return tok
    core = tok.strip("-")
    if not core.startswith("'") or core.rstrip("'") in _CLITICS:
        return core.rstrip("'") or tok
    return core.strip("'") or tok


def ngrams(tokens: Sequence[str], n: int) -> Ngrams:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _padded(refs: Sequence[Sequence[list[str]]]) -> list[list[list[str]]]:
    """Every row with as many references as the most-referenced row, padded with empty ones (as e2e-metrics)."""
    k = max(len(r) for r in refs)
    return [list(r) + [[]] * (k - len(r)) for r in refs]


def _closest(hyp_len: int, ref_lens: list[int]) -> int:
    """The reference length closest to the hypothesis'; the shorter one on a tie (mteval, sacrebleu)."""
    return min(ref_lens, key=lambda x: (abs(x - hyp_len), x))


def _segment_stats(hyp: list[str], refs: list[list[str]], order: int) -> tuple[list[Ngrams], list[Ngrams]]:
    """(hypothesis n-gram counts, matched n-gram counts clipped by the max count in any reference), n=1..order."""
    hyp_ng, matched = [], []
    for n in range(1, order + 1):
        h = ngrams(hyp, n)
        best: Ngrams = Counter()
        for r in refs:
            best |= ngrams(r, n)  # element-wise max over references
        hyp_ng.append(h)
        matched.append(h & best)
    return hyp_ng, matched


def bleu(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 x100 as mteval-v13a (lower-cased; closest reference length; mteval's zero-count smoothing)."""
    check_refs(preds, refs)
    rows = _padded([[mteval_tokens(x) for x in r] for r in refs])
    match, total, hyp_len, ref_len = [0] * 4, [0] * 4, 0, 0
    for p, rs in zip(preds, rows):
        hyp = mteval_tokens(p)
        hyp_ng, matched = _segment_stats(hyp, rs, 4)
        for n in range(4):
            match[n] += sum(matched[n].values())
            total[n] += sum(hyp_ng[n].values())
        hyp_len += len(hyp)
        ref_len += _closest(len(hyp), [len(r) for r in rs])
    if hyp_len == 0:
        return 0.0
    log_p, smooth = 0.0, 1
    for m, t in zip(match, total):
        if t == 0:
            continue  # mteval: no n-grams of this order adds log 1
        if m == 0:
            smooth *= 2
        log_p += math.log((m or 1 / smooth) / t)
    return 100.0 * math.exp(min(0.0, 1 - ref_len / hyp_len) + log_p / 4)


def nist_info(rows: Sequence[Sequence[list[str]]], order: int = 5) -> dict[tuple, float]:
    """NIST information weights over every reference: log2(count(w1..wn-1) / count(w1..wn)); unigrams over words."""
    counts: Ngrams = Counter()
    words = 0
    for refs in rows:
        for r in refs:
            words += len(r)
            for n in range(1, order + 1):
                counts.update(ngrams(r, n))
    return {g: math.log2((counts[g[:-1]] if len(g) > 1 else words) / c) for g, c in counts.items()}


def nist_length_penalty(ratio: float) -> float:
    """Doddington's brevity penalty: 1 from ratio 1 up, 0.5 at ratio 2/3, exp(-beta * ln(ratio)^2) between."""
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    beta = -math.log(0.5) / math.log(1.5) ** 2
    return math.exp(-beta * math.log(ratio) ** 2)


def nist(preds: Sequence[str], refs: Sequence[Sequence[str]], order: int = 5) -> float:
    """Corpus NIST-5 as mteval-v13a: info-weighted matched n-grams per hypothesis n-gram, summed over n=1..5."""
    check_refs(preds, refs)
    rows = _padded([[mteval_tokens(x) for x in r] for r in refs])
    info = nist_info(rows, order)
    gained, total, hyp_words, ref_words = [0.0] * order, [0] * order, 0, 0
    for p, rs in zip(preds, rows):
        hyp = mteval_tokens(p)
        hyp_ng, matched = _segment_stats(hyp, rs, order)
        for n in range(order):
            gained[n] += sum(info[g] * c for g, c in matched[n].items())
            total[n] += sum(hyp_ng[n].values())
        hyp_words += len(hyp)
        ref_words += sum(len(r) for r in rs)
    score = sum(g / max(t, 1) for g, t in zip(gained, total))
    mean_ref = ref_words / len(rows[0])  # per reference set, the padding included (mteval's nsys)
    return score * nist_length_penalty(hyp_words / mean_ref if mean_ref else 0.0)


def lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row kept)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(preds: Sequence[str], refs: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """coco-caption's ROUGE-L x100: per row the best LCS precision and the best LCS recall over references
    (each maximised on its own), F with beta 1.2, averaged over rows."""
    check_refs(preds, refs)
    total = 0.0
    for p, rs in zip(preds, refs):
        hyp = ptb_tokens(p)
        best_p = best_r = 0.0
        for r in rs:
            ref = ptb_tokens(r)
            n = lcs(hyp, ref)
            best_p = max(best_p, n / len(hyp) if hyp else 0.0)
            best_r = max(best_r, n / len(ref) if ref else 0.0)
        if best_p > 0 and best_r > 0:
            total += (1 + beta**2) * best_p * best_r / (best_r + beta**2 * best_p)
    return 100.0 * total / len(preds)


def _tfidf(tokens: list[str], df: Ngrams, log_docs: float) -> tuple[list[dict], list[float], int]:
    """coco-caption's counts2vec: per n (1..4) tf * (ln(#rows) - ln(max(1, df))), the vector norms, and the
    length it compares (the number of bigrams, as coco-caption's code does)."""
    vecs, norms = [], []
    for n in range(1, 5):
        v = {g: tf * (log_docs - math.log(max(1.0, df[g]))) for g, tf in ngrams(tokens, n).items()}
        vecs.append(v)
        norms.append(math.sqrt(sum(x * x for x in v.values())))
    return vecs, norms, max(len(tokens) - 1, 0)


def _cider_sim(h: tuple, r: tuple, sigma: float) -> float:
    """Mean over n of the clipped cosine similarity, times the Gaussian length penalty exp(-d^2 / 2 sigma^2)."""
    (hv, hn, hl), (rv, rn, rl) = h, r
    penalty = math.exp(-((hl - rl) ** 2) / (2 * sigma**2))
    total = 0.0
    for n in range(4):
        dot = sum(min(x, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, x in hv[n].items())
        if hn[n] != 0 and rn[n] != 0:
            dot /= hn[n] * rn[n]
        total += dot * penalty
    return total / 4


def cider_d(preds: Sequence[str], refs: Sequence[Sequence[str]], sigma: float = 6.0) -> float:
    """coco-caption's CIDEr-D: document frequencies over the evaluated rows' references, clipped tf-idf
    cosine per n-gram order, length penalty, mean over references x10, mean over rows. 0 for one row
    (every idf is ln 1 = 0)."""
    check_refs(preds, refs)
    ref_toks = [[ptb_tokens(x) for x in r] for r in refs]
    df: Ngrams = Counter()
    for rs in ref_toks:
        df.update({g for r in rs for n in range(1, 5) for g in ngrams(r, n)})
    log_docs = math.log(float(len(refs)))
    total = 0.0
    for p, rs in zip(preds, ref_toks):
        h = _tfidf(ptb_tokens(p), df, log_docs)
        total += 10.0 * sum(_cider_sim(h, _tfidf(r, df, log_docs), sigma) for r in rs) / len(rs)
    return total / len(preds)


def e2e_scores(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """The challenge table's five numbers: ``e2e_bleu``, ``e2e_nist``, ``e2e_meteor``, ``e2e_rougeL``, ``e2e_cider``."""
    return {
        "e2e_bleu": bleu(preds, refs),
        "e2e_nist": nist(preds, refs),
        "e2e_meteor": meteor(
            [" ".join(ptb_tokens(p)) for p in preds], [[" ".join(ptb_tokens(x)) for x in r] for r in refs]
        ),
        "e2e_rougeL": rouge_l(preds, refs),
        "e2e_cider": cider_d(preds, refs),
    }
