"""The E2E challenge's metrics (edgevlm.train.e2e_metrics, edgevlm.train.meteor) against hand-computed values.

The comparison with the reference programs (sacrebleu/nltk, coco-caption, the Meteor 1.5 jar, Stanford's
PTBTokenizer) lives in experiments/e2e_metrics (it needs Java and a 100 MB wheel); here BLEU is checked
against sacrebleu too, a pinned dependency that reproduces mteval-v13a's tokenisation and smoothing.
"""

from __future__ import annotations

import math

import pytest
import sacrebleu

from edgevlm.core.errors import ConfigError
from edgevlm.train import e2e_metrics as em
from edgevlm.train import meteor as mt
from edgevlm.train.evaluate import evaluate
from edgevlm.train.metrics import score
from edgevlm.train.tasks import Example

ROWS = [  # E2E-style outputs: casing, punctuation, £ prices, hyphens, contractions
    (
        "The Eagle is a cheap, family-friendly coffee shop near Burger King.",
        ["The Eagle is a cheap coffee shop.", "Near Burger King, The Eagle serves cheap food; it's family-friendly."],
    ),
    (
        "Aromi isn't kid friendly; prices are £20-25.",
        ["Aromi is not kid friendly and costs £20-25.", "Aromi, costing £20-25, isn't for kids."],
    ),
    (
        "Zizzi serves Japanese food in the city centre.",
        ["In the city centre, Zizzi serves Japanese food.", "Zizzi is a Japanese place in the city centre."],
    ),
]


def test_mteval_tokens_as_mteval_v13a():
    # lower-cased; punctuation split except . , next to digits; a dash after a digit split; ' - kept in words
    assert em.mteval_tokens("Aromi isn't kid-friendly; £20-25, 5.5 stars.") == (
        "aromi isn't kid-friendly ; £20 - 25 , 5.5 stars .".split()
    )


def test_bleu_equals_sacrebleu_lowercased_13a():
    preds, refs = [p for p, _ in ROWS], [r for _, r in ROWS]
    streams = [[r[i] for r in refs] for i in range(2)]
    want = sacrebleu.corpus_bleu(preds, streams, lowercase=True).score
    assert em.bleu(preds, refs) == pytest.approx(want, abs=1e-9)
    assert em.bleu([p.upper() for p in preds], refs) == pytest.approx(want, abs=1e-9)  # case-insensitive


def test_bleu_hand_computed_with_zero_count_smoothing():
    # p1..p4 = 4/5, 2/4, 1/3 and no 4-gram match: mteval counts it as 1 / (2 * 2); equal lengths, BP 1
    got = em.bleu(["the cat sat on mat"], [["the cat sat in mat"]])
    assert got == pytest.approx(100 * (4 / 5 * 2 / 4 * 1 / 3 * 1 / 4) ** 0.25, abs=1e-9)
    assert got == pytest.approx(sacrebleu.corpus_bleu(["the cat sat on mat"], [["the cat sat in mat"]]).score)


def test_bleu_identical_multi_reference_and_empty():
    assert em.bleu(["The Eagle, near Burger King."], [["x y", "the eagle , near burger king ."]]) == pytest.approx(100)
    assert em.bleu([""], [["the eagle"]]) == 0.0
    assert em.bleu(["", "the eagle is cheap"], [["a b"], ["the eagle is cheap"]]) > 0


def test_bleu_pads_references_as_the_official_script():
    # Row 1 has one reference, row 2 two: e2e-metrics pads row 1 with an empty reference, which is the
    # closest length to its 2-word output (|2-0| < |2-6|). Reference length 0 + 4 <= output length 2 + 4:
    # no brevity penalty; precisions 6/6, 4/4, 2/2, 1/1 -> 100. Unpadded, BP = exp(1 - 10/6).
    preds, refs = ["a b", "w x y z"], [["a b c d e f"], ["w x y z", "q"]]
    assert em.bleu(preds, refs) == pytest.approx(100.0)
    unpadded = sacrebleu.corpus_bleu(preds, [["a b c d e f", "w x y z"], [None, "q"]]).score
    assert unpadded == pytest.approx(100 * math.exp(1 - 10 / 6))


def test_nist_hand_computed():
    # Reference "a b a": info(a) = log2(3/2), info(b) = log2(3), info(a b) = log2(2/1), info(b a) = log2(1/1),
    # info(a b a) = log2(1/1). Output = reference: (2 info(a) + info(b)) / 3 + (1 + 0) / 2 + 0 / 1.
    full = 2 * math.log2(1.5) / 3 + math.log2(3) / 3 + 0.5
    assert em.nist(["a b a"], [["a b a"]]) == pytest.approx(full)
    # Output "a b": (info(a) + info(b)) / 2 + info(a b) / 1, times Doddington's penalty at ratio 2/3 = 0.5
    short = ((math.log2(1.5) + math.log2(3)) / 2 + 1.0) * 0.5
    assert em.nist(["a b"], [["a b a"]]) == pytest.approx(short)
    assert em.nist_length_penalty(2 / 3) == pytest.approx(0.5)
    assert em.nist([""], [["a b a"]]) == 0.0


def test_nist_clips_by_the_most_generous_reference():
    # "a a" against ["a b", "a a c"]: both a's match (the second reference has two); info(a) = log2(5/3),
    # info(a a) = log2(3/1); mean reference length (2 + 3) / 2 = 2.5 -> ratio 0.8, penalty exp(-beta ln(0.8)^2)
    beta = -math.log(0.5) / math.log(1.5) ** 2
    want = (math.log2(5 / 3) + math.log2(3)) * math.exp(-beta * math.log(0.8) ** 2)
    assert em.nist(["a a"], [["a b", "a a c"]]) == pytest.approx(want)


def test_ptb_tokens_as_coco_caption():
    # Stanford CoreNLP 3.4.1's tokens for this line (run in experiments/e2e_metrics), minus coco's punctuation
    got = em.ptb_tokens("The Eagle (riverside) isn't a coffee shop, it's near \"Burger King\"; price range £20-25.")
    assert (
        " ".join(got)
        == "the eagle -lrb- riverside -rrb- is n't a coffee shop it 's near burger king price range # 20-25"
    )
    # quotes and hyphens at word edges come off: Stanford gives "` the portland arms ' at # 20 - # 25 ,"
    assert em.ptb_tokens("near 'The Portland Arms' at £20-£25, not kids-friendly") == (
        "near the portland arms at # 20 # 25 not kids-friendly".split()
    )


def test_rouge_l_coco_caption_style():
    # "the cat sat" vs "the cat sat on the mat": LCS 3, P = 1, R = 1/2 -> F(beta 1.2) = 2.44 * 0.5 / (0.5 + 1.44)
    assert em.rouge_l(["the cat sat"], [["the cat sat on the mat"]]) == pytest.approx(100 * 2.44 * 0.5 / 1.94)
    # coco takes the best precision and the best recall over references separately: P 1 (ref 1), R 1 (ref 2)
    assert em.rouge_l(["the cat sat"], [["the cat sat on the mat", "cat sat"]]) == pytest.approx(100.0)
    assert em.rouge_l(["", "The cat."], [["the cat"], ["the cat"]]) == pytest.approx(50.0)


def test_cider_d_hand_computed():
    # Two rows, no n-gram shared across them: every idf = ln 2 (df 1, or 0 -> 1 for unseen), equal bigram counts.
    # Row 1 identical: cosine 1 for n = 1..4 -> 10. Row 2 "e f g h" vs "e f g x": cosines 3/4, 2/3, 1/2, 0.
    got = em.cider_d(["a b c d", "e f g h"], [["a b c d"], ["e f g x"]])
    assert got == pytest.approx((10 + 10 * (3 / 4 + 2 / 3 + 1 / 2 + 0) / 4) / 2)
    assert em.cider_d(["a b c d"], [["a b c d"]]) == 0.0  # one row: ln(1) = 0, every weight 0
    assert em.cider_d(["", "e f g h"], [["a b c d"], ["e f g h"]]) == pytest.approx(5.0)


def test_meteor_hand_computed():
    assert mt.meteor(["the cat sat"], [["the cat sat"]]) == pytest.approx(100.0)  # one chunk, whole: no penalty
    assert mt.meteor(["the cat sat", "a dog"], [["the cat sat"], ["a dog"]]) == pytest.approx(100.0)
    # All six words match exactly in two chunks: Fmean 1, penalty 0.6 * (2/6)^0.2
    got = mt.meteor(["the cat sat on the mat"], [["on the mat the cat sat"]])
    assert got == pytest.approx(100 * (1 - 0.6 * (2 / 6) ** 0.2))
    # Stem matches only (weight 0.6): P = R = 0.6, matched whole in one chunk -> 0.6
    assert mt.meteor(["dogs run"], [["dog runs"]]) == pytest.approx(60.0)


def test_meteor_partial_match_and_best_reference():
    # "a b c x" vs "a b c d": 3 exact matches, one chunk; P = R = 3/4; penalty 0.6 * (1/3)^0.2
    one = 100 * 0.75 * (1 - 0.6 * (1 / 3) ** 0.2)
    assert mt.meteor(["a b c x"], [["a b c d"]]) == pytest.approx(one)
    assert mt.meteor(["a b c x"], [["q r s t", "a b c d"]]) == pytest.approx(one)  # the better reference counts
    assert mt.meteor([""], [["a b"]]) == 0.0


def test_meteor_normalizes_as_meteor_norm():
    assert mt.normalize("it 's family-friendly , x-y-z is n't 3/5") == (
        "it ' s family friendly , x y-z is n 't 3 / 5".split()
    )


def test_e2e_scores_and_wiring():
    preds, refs = [p for p, _ in ROWS], [r for _, r in ROWS]
    s = em.e2e_scores(preds, refs)
    assert set(s) == {"e2e_bleu", "e2e_nist", "e2e_meteor", "e2e_rougeL", "e2e_cider"}
    assert all(v > 0 for v in s.values())
    assert score(preds, refs, "nlg")["e2e_cider"] == pytest.approx(s["e2e_cider"])
    assert "e2e_bleu" not in score(preds, refs, "mt")
    examples = [Example(p, r) for p, rs in ROWS for r in rs]
    m = evaluate(examples, lambda src: src, progress=False, task="nlg")  # each source as its own output
    assert m["e2e_bleu"] == pytest.approx(em.bleu(preds, refs))


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="2 predictions but 1 reference lists"):
        em.bleu(["a", "b"], [["a"]])
    with pytest.raises(ConfigError, match="at least one reference"):
        em.cider_d(["a"], [[]])
    with pytest.raises(ConfigError, match="no predictions"):
        mt.meteor([], [])


def test_eval_cli_prints_the_e2e_line_for_nlg():
    from edgevlm.apps.commands.eval import format_metrics

    m = {"bleu": 50.0, "rougeL": 60.0, "e2e_bleu": 51.0, "e2e_nist": 7.0, "e2e_meteor": 40.0, "e2e_rougeL": 61.0}
    lines = format_metrics({**m, "e2e_cider": 2.0}, "bleu").splitlines()
    assert lines[0] == "BLEU 50.00  ROUGE-L 60.00"
    assert lines[1] == (
        "E2E challenge metrics: BLEU 51.00  NIST 7.00  METEOR* 40.00  ROUGE-L 61.00  CIDEr 2.00"
        "  (*exact+stem only: docs/metrics.md)"
    )
    assert format_metrics({"bleu": 1.0}, "bleu") == "BLEU 1.00"  # other tasks: one line
