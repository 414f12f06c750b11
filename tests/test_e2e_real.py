"""Real data: the E2E NLG development set (read from ../shared/data, never copied into the repo).

Split by meaning representation (never by row), train the tiny default a few
hundred steps, evaluate the held-out MRs against all their references.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import E2E_DEV
from test_eval_formats import sacrebleu_of

from edgevlm.apps import cli
from edgevlm.train.tasks.loaders import group_by_source, load_examples, split_by_source

pytestmark = pytest.mark.skipif(
    not E2E_DEV.is_file(), reason=f"E2E development set not found at {E2E_DEV} (see ../shared/data/README.md)"
)
N_HELD = 40


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["mr", "ref"])
        w.writerows((e.source, e.target) for e in rows)
    return str(path)


def test_devset_loads_and_splits_by_mr():
    rows = load_examples(E2E_DEV, "nlg")
    assert len(rows) == 4672 and len(group_by_source(rows)) == 547
    train, held = split_by_source(rows, N_HELD, seed=0)
    assert not {e.source for e in train} & {e.source for e in held}
    grouped = group_by_source(held)
    assert len(grouped) == N_HELD
    for g in grouped:  # every (distinct) reference of an MR is kept with it
        assert set(g.refs) == {e.target for e in held if e.source == g.source}


@pytest.mark.slow
def test_train_then_eval_beats_untrained_adapter(tmp_path, tiny_dir, capsys):
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.evaluate import TorchGenerator, evaluate
    from edgevlm.train.model import VLM
    from edgevlm.train.tasks import builtin_task

    train, held = split_by_source(load_examples(E2E_DEV, "nlg"), N_HELD, seed=0)
    train_csv, held_csv = write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "held.csv", held)
    bb = load_backbone(tiny_dir)
    vlm = VLM(bb.model)
    vlm.add_task(builtin_task("nlg"))  # identity adapter, untrained task embeddings
    before = evaluate(held, TorchGenerator(vlm, bb, builtin_task("nlg")), progress=False)

    out = tmp_path / "nlg"
    assert (
        cli.main(
            [
                "train",
                "--task",
                "nlg",
                "--data",
                train_csv,
                "--valid-data",
                held_csv,
                "--steps",
                "300",
                "--eval-every",
                "100",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert cli.main(["eval", "--adapter", str(out), "--data", held_csv]) == 0
    printed = capsys.readouterr().out
    assert "BLEU" in printed and "ROUGE-L" in printed
    after = json.loads((out / "nlg" / "predictions.metrics.json").read_text())  # the task dir
    recs = [json.loads(x) for x in (out / "nlg" / "predictions.jsonl").read_text().splitlines()]
    assert after["bleu"] == pytest.approx(sacrebleu_of(recs), abs=1e-6)  # sacrebleu on the written predictions
    assert f"BLEU {after['bleu']:.2f}" in printed  # the printed BLEU is the file's
    print(
        f"E2E held-out {N_HELD} MRs: BLEU {before['bleu']:.1f} -> {after['bleu']:.1f}, "
        f"ROUGE-L {before['rougeL']:.1f} -> {after['rougeL']:.1f}"
    )
    assert after["n"] == N_HELD
    # tiny-v2's untrained adapter already writes the E2E form (BLEU ~36, the backbone was pretrained on such pairs):
    # measured 36.3 -> 43.7 after 300 steps; +10 was tiny-v1's margin, when the untrained adapter scored ~0.
    assert after["bleu"] > before["bleu"] + 5 and after["rougeL"] > before["rougeL"] + 3
