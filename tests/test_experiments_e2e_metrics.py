"""experiments/e2e_metrics: ours equal the reference programs on real E2E dev rows (needs Java, pycocoevalcap
in your own venv, and ../shared/data; skipped otherwise)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from experiments.e2e_metrics import compare as c

pytestmark = pytest.mark.experiments  # opt-in: make test-experiments


@pytest.fixture(scope="module")
def rows():
    if not c.DATA.is_file():
        pytest.skip(f"{c.DATA} not found (see ../shared/data/README.md)")
    if shutil.which("java") is None or importlib.util.find_spec("pycocoevalcap") is None:
        pytest.skip("needs java and pycocoevalcap (pip install --no-deps pycocoevalcap, in your own venv)")
    return c.systems(c.load(12))["ref0-drop"]


def test_mteval_side_equals_sacrebleu_and_nltk(rows):
    r = c.mteval_side(*rows)
    assert r["bleu_ours"] == pytest.approx(r["bleu_sacrebleu_lc"], abs=1e-9)
    assert r["nist_ours_single_ref"] == pytest.approx(r["nist_nltk_single_ref"], abs=1e-9)


def test_coco_side_equals_coco_caption_and_meteor_jar(rows):
    r = c.coco_side(*rows)
    assert r["rougeL_ours"] == pytest.approx(r["rougeL_coco_our_tokens"], abs=1e-9)
    assert r["cider_ours"] == pytest.approx(r["cider_coco_our_tokens"], abs=1e-9)
    assert r["meteor_ours"] == pytest.approx(r["meteor_jar_exact_stem_delta0.5_our_tokens"], abs=1e-9)
    assert r["meteor_ours"] < r["meteor_jar_full_1.5_stanford"]  # the modules we lack only add matches
