"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from edgevlm.core.errors import ConfigError
from edgevlm.train import metrics


def test_bleu_hand_computed():
    # 1-4 gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths, so no brevity penalty.
    got = metrics.bleu(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert got == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-6)


def test_bleu_brevity_penalty():
    # All n-grams match; hypothesis length 5, reference length 6: BP = exp(1 - 6/5).
    got = metrics.bleu(["the cat sat on the"], [["the cat sat on the mat"]])
    assert got == pytest.approx(100 * math.exp(1 - 6 / 5), abs=1e-6)


def test_bleu_multi_reference_with_varying_counts():
    preds = ["the cat sat on the mat", "a dog ran in the park"]
    single = metrics.bleu(preds, [["the cat sat on a mat"], ["a dog ran in a park"]])
    multi = metrics.bleu(preds, [["the cat sat on a mat", "the cat sat on the mat"], ["a dog ran in the park"]])
    assert multi == pytest.approx(100.0)  # each prediction equals one of its references
    assert single < 60


def test_rouge_hand_computed():
    r = metrics.rouge(["the cat sat"], [["the cat sat on the mat"]])
    assert r["rouge1"] == pytest.approx(100 * 2 / 3)  # P = 3/3, R = 3/6
    assert r["rouge2"] == pytest.approx(100 * 2 * 1 * 0.4 / 1.4)  # P = 2/2, R = 2/5
    assert r["rougeL"] == pytest.approx(100 * 2 / 3)  # LCS = 3


def test_rouge_best_reference_and_stemming():
    r = metrics.rouge(["cats running"], [["a dog", "cat run"]])
    assert r["rouge1"] == pytest.approx(100.0) and r["rougeL"] == pytest.approx(100.0)


def test_token_f1_squad_normalisation():
    assert metrics.token_f1("The cat!", "a cat sat") == pytest.approx(2 / 3)  # [cat] vs [cat, sat]
    assert metrics.token_f1("", "") == 1.0
    assert metrics.token_f1("the", "cat") == 0.0  # prediction normalises to nothing
    assert metrics.f1(["in Rome", "blue"], [["Rome", "in Rome"], ["red"]]) == pytest.approx(50.0)


def test_exact_match():
    assert metrics.exact_match(["The Cat.", "dog"], [["cat"], ["a cat", "the dogs"]]) == pytest.approx(50.0)


def test_perplexity():
    assert metrics.perplexity(2 * math.log(4), 2) == pytest.approx(4.0)
    with pytest.raises(ConfigError):
        metrics.perplexity(1.0, 0)


def test_score_keys_and_errors():
    s = metrics.score(["x y"], [["x y"]])
    assert set(s) == {"bleu", "rouge1", "rouge2", "rougeL", "f1", "em"}
    assert s["f1"] == s["em"] == s["rougeL"] == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="2 predictions but 1 reference lists"):
        metrics.bleu(["a", "b"], [["a"]])
    with pytest.raises(ConfigError, match="at least one reference"):
        metrics.f1(["a"], [[]])
