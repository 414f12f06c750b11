"""The real public files in ../shared/data (never copied into the repo): counts from its README, whole-unit splits.

Each file is read in the form users hold it (E2E CSV, IWSLT17 WIT3 XML pair, ConvAI2 ParlAI
text, CNN/DM CSV); a test skips with the path it looked for when the file is absent.
"""

from __future__ import annotations

import csv

import pytest
from conftest import REPO

from edgevlm.train.evaluate import evaluate
from edgevlm.train.tasks.loaders import group_by_source, holdout_split, load_examples, source_units

DATA = REPO.parent / "shared" / "data"
E2E = DATA / "e2e" / "devset.csv"
IWSLT_DE = DATA / "iwslt" / "IWSLT17.TED.tst2016.de-en.de.xml"
IWSLT_EN = DATA / "iwslt" / "IWSLT17.TED.tst2016.en-de.en.xml"
CONVAI2 = DATA / "personachat" / "valid_self_original_no_cands.first800.txt"
CNNDM = DATA / "cnn_dailymail" / "validation_first800.csv"


def need(*paths):
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"shared data not found: {', '.join(missing)} (see ../shared/data/README.md)")


def assert_units_whole(examples):
    """The default held-out split keeps every unit on one side and loses no row."""
    train, held = holdout_split(examples)
    assert held and len(train) + len(held) == len(examples)
    assert not {e.source_unit() for e in train} & {e.source_unit() for e in held}


def test_e2e_devset_rows_and_mrs():
    need(E2E)
    rows = load_examples(E2E, "nlg")
    assert len(rows) == 4672 and len(source_units(rows)) == 547 == len(group_by_source(rows))
    assert_units_whole(rows)


def test_iwslt_wit3_pair_segments_and_talks():
    need(IWSLT_DE, IWSLT_EN)
    ex = load_examples(f"{IWSLT_DE}:{IWSLT_EN}", "mt")
    assert len(ex) == 1133 and len(source_units(ex)) == 13
    assert ex[0].source.startswith("Wir stehen vor einem historischen Wendepunkt")
    assert ex[0].unit == "talk 2227" and ex[0].target.split()[0] in {"We", "We're"}
    assert_units_whole(ex)


def test_convai2_parlai_text_dialogues_and_turns():
    need(CONVAI2)
    ex = load_examples(CONVAI2, "dialogue")
    lines = CONVAI2.read_text(encoding="utf-8").splitlines()
    assert len(source_units(ex)) == 800 == sum(ln.startswith("1 ") for ln in lines)
    assert len(ex) == sum("\t" in ln for ln in lines)  # one example per utterance<TAB>response line
    assert all(" <user> " in e.source and not e.source.startswith("<") for e in ex)  # persona, then the history
    assert_units_whole(ex)


def test_cnndm_csv_rows():
    need(CNNDM)
    ex = load_examples(CNNDM, "summarization")
    with open(CNNDM, encoding="utf-8", newline="") as f:
        ids = [row["id"] for row in csv.DictReader(f)]
    assert len(ex) == 800 == len(set(ids)) and len(source_units(ex)) == 800
    assert all("\n" not in e.target for e in ex)  # highlight bullets joined
    assert_units_whole(ex)


@pytest.mark.parametrize("limit", [1, 7])
def test_eval_limit_scores_the_first_sources_with_all_their_references(limit):
    """``edgevlm eval --limit N``: the first N distinct sources of the file, each against all its references."""
    need(E2E)
    rows = load_examples(E2E, "nlg")
    first = list(dict.fromkeys(r.source for r in rows))[:limit]
    oracle = {r.source: r.target for r in reversed(rows)}  # the first row's reference of each MR
    m = evaluate(rows, lambda s: oracle[s], limit=limit, progress=False)
    assert m["n"] == limit and m["bleu"] == pytest.approx(100.0)
    grouped = group_by_source(rows)[:limit]
    assert [g.source for g in grouped] == first
    assert [len(g.refs) for g in grouped] == [len({r.target for r in rows if r.source == s}) for s in first]
