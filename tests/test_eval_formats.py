"""Each public format round-trips: file -> training batch -> `edgevlm train` -> `edgevlm eval` (tiny steps)."""

from __future__ import annotations

import csv
import json

import pytest

from edgevlm.apps import cli
from edgevlm.train.backbone import load_tokenizer
from edgevlm.train.data import IGNORE, collate, encode_example
from edgevlm.train.tasks import builtin_task
from edgevlm.train.tasks.loaders import load_examples
from edgevlm.train.tasks.mini import mini_task

V = 1024


def e2e_file(d):
    path = d / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["mr", "ref"])
        for ex in mini_task("nlg", "valid", 5):
            for ref in ex.refs:
                w.writerow([ex.source, ref])
    return str(path)


def personachat_file(d):
    dialogues = [
        {
            "personality": ["i like cooking .", f"i have a {pet} ."],
            "utterances": [
                {"history": ["hi , how are you ?"], "candidates": ["bye .", "i am fine ."]},
                {
                    "history": ["hi , how are you ?", "i am fine .", "do you have any pets ?"],
                    "candidates": ["no .", f"yes , i have a {pet} ."],
                },
            ],
        }
        for pet in ("dog", "cat", "bird")
    ]
    (d / "pc.json").write_text(json.dumps(dialogues))
    return str(d / "pc.json")


def parallel_files(d):
    ex = mini_task("mt", "valid", 8)
    (d / "train.de").write_text("".join(e.source + "\n" for e in ex))
    (d / "train.en").write_text("".join(e.target + "\n" for e in ex))
    return f"{d / 'train.de'}:{d / 'train.en'}"


def story_dir(d):
    (d / "stories").mkdir()
    for i, ex in enumerate(mini_task("summarization", "valid", 6)):
        (d / "stories" / f"{i:03d}.story").write_text(f"{ex.source}\n\n@highlight\n\n{ex.target}\n")
    return str(d / "stories")


def coqa_file(d):
    convs = []
    for i, p in enumerate(("anna", "ben", "carl")):
        story = f"{p} lives in rome . {p} has a red dog . {p} works as a baker ."
        qs = [f"where does {p} live ?", f"what pet does {p} have ?", f"what is the job of {p} ?"]
        ans = ["rome", "a red dog", "baker"]
        convs.append(
            {
                "id": str(i),
                "story": story,
                "questions": [{"input_text": q, "turn_id": t + 1} for t, q in enumerate(qs)],
                "answers": [{"input_text": a, "turn_id": t + 1} for t, a in enumerate(ans)],
            }
        )
    (d / "coqa.json").write_text(json.dumps({"version": "1.0", "data": convs}))
    return str(d / "coqa.json")


FORMATS = {
    "nlg": e2e_file,
    "dialogue": personachat_file,
    "mt": parallel_files,
    "summarization": story_dir,
    "qa": coqa_file,
}


@pytest.mark.parametrize("task", sorted(FORMATS))
def test_file_to_batch(tmp_path, tiny_dir, task):
    tok = load_tokenizer(tiny_dir)
    cfg = builtin_task(task)
    examples = load_examples(FORMATS[task](tmp_path), task)
    enc = [encode_example(tok, cfg, e, V, 0, 128) for e in examples]
    ids, mask, labels = collate(enc, 0)
    first, last = cfg.template.split()[0], cfg.template.split()[-1]
    for row, e in enumerate(enc):
        assert ids[row, 0] == V + cfg.special_tokens.index(first)
        assert ids[row, len(e.prompt) - 1] == V + cfg.special_tokens.index(last)
        assert labels[row, len(e.prompt) : len(e.prompt) + len(e.target)].tolist() == e.target
        assert (labels[row, : len(e.prompt)] == IGNORE).all() and mask[row].sum() == len(e.prompt) + len(e.target)


def sacrebleu_of(recs: list[dict]) -> float:
    """Corpus BLEU of the written predictions by sacrebleu itself (an expectation independent of eval's scoring:
    every reference stream padded with None where an example has fewer references)."""
    import sacrebleu

    k = max(len(r["references"]) for r in recs)
    streams = [[r["references"][i] if i < len(r["references"]) else None for r in recs] for i in range(k)]
    return sacrebleu.corpus_bleu([r["prediction"] for r in recs], streams).score


@pytest.mark.parametrize("task", sorted(FORMATS))
def test_file_to_train_to_eval(tmp_path, tiny_dir, task, capsys):
    data = FORMATS[task](tmp_path)
    out = tmp_path / "adapter"
    assert (
        cli.main(
            [
                "train",
                "--task",
                task,
                "--data",
                data,
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--eval-every",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert cli.main(["eval", "--adapter", str(out), "--data", data, "--limit", "3", "--max-new-tokens", "6"]) == 0
    printed = capsys.readouterr().out
    assert f"{task}: 3 inputs, greedy decoding" in printed and "ROUGE-L" in printed and "BLEU" in printed
    recs = [json.loads(x) for x in (out / task / "predictions.jsonl").read_text().splitlines()]  # the task's dir
    assert len(recs) == 3 and all(r["references"] and isinstance(r["prediction"], str) for r in recs)
    m = json.loads((out / task / "predictions.metrics.json").read_text())
    assert m["n"] == 3 and m["task"] == task and m["perplexity"] > 1.0
    assert m["bleu"] == pytest.approx(sacrebleu_of(recs), abs=1e-6)  # sacrebleu on the written predictions
    assert f"BLEU {m['bleu']:.2f}" in printed  # the printed score is the file's
    if task == "mt":  # beam search through the CLI, predictions to a chosen file
        assert (
            cli.main(
                [
                    "eval",
                    "--adapter",
                    str(out),
                    "--data",
                    data,
                    "--limit",
                    "2",
                    "--num-beams",
                    "2",
                    "--max-new-tokens",
                    "6",
                    "--out",
                    str(tmp_path / "beam.jsonl"),
                ]
            )
            == 0
        )
        assert "mt: 2 inputs, beam2 decoding" in capsys.readouterr().out
        assert len((tmp_path / "beam.jsonl").read_text().splitlines()) == 2


def test_eval_reports_bad_data_in_one_line(tmp_path, capsys):
    out = tmp_path / "adapter"
    assert (
        cli.main(
            [
                "train",
                "--task",
                "nlg",
                "--data",
                e2e_file(tmp_path),
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    bad.write_text('mr,ref\n"name[A]",\n')
    assert cli.main(["eval", "--adapter", str(out), "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edgevlm eval: error: {bad}:2: empty 'ref'"]
    assert cli.main(["eval", "--adapter", str(out), "--task", "mt"]) == 2
    assert "adapter is for task 'nlg', not 'mt'" in capsys.readouterr().err
