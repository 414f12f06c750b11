"""Loaders for the five public formats and JSONL: good files, format inference, and one clear error per bad record."""

from __future__ import annotations

import json

import pytest

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.loaders import group_by_source, load_examples, split_by_source

E2E_CSV = """mr,ref
"name[Aromi], eatType[pub]","Aromi is a pub."
"name[Aromi], eatType[pub]","There is a pub, Aromi."
"name[Cotto], food[Chinese]","Cotto serves Chinese food,
and more."
"""


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def persona_dialogue(n_utts=2):
    utts = [
        {"history": ["hi", "hello", "how are you?"][: 2 * j + 1], "candidates": ["wrong", f"gold {j}"]}
        for j in range(n_utts)
    ]
    return {"personality": ["i like cats.", "i am a pilot."], "utterances": utts}


def coqa_file():
    return {
        "version": "1.0",
        "data": [
            {
                "id": "x",
                "story": "Anna lives in Rome.\nShe has a dog.",
                "questions": [
                    {"input_text": "Where does Anna live?", "turn_id": 1},
                    {"input_text": "What pet?", "turn_id": 2},
                ],
                "answers": [{"input_text": "Rome", "turn_id": 1}, {"input_text": "a dog", "turn_id": 2}],
                "additional_answers": {
                    "0": [{"input_text": "in Rome", "turn_id": 1}, {"input_text": "a dog", "turn_id": 2}]
                },
            }
        ],
    }


# --- good files -----------------------------------------------------------------------------------


def test_e2e_rows_carry_all_refs_of_their_mr(tmp_path):
    ex = load_examples(write(tmp_path / "dev.csv", E2E_CSV), "nlg")
    assert len(ex) == 3
    assert ex[0].refs == ex[1].refs == ["Aromi is a pub.", "There is a pub, Aromi."]
    assert ex[2].target == "Cotto serves Chinese food,\nand more."  # quoted newline stays inside one record
    grouped = group_by_source(ex)
    assert [g.source for g in grouped] == ["name[Aromi], eatType[pub]", "name[Cotto], food[Chinese]"]
    assert grouped[0].refs == ["Aromi is a pub.", "There is a pub, Aromi."]


def test_personachat_roles_and_gold(tmp_path):
    ex = load_examples(write(tmp_path / "pc.json", json.dumps([persona_dialogue()])), "dialogue")
    assert [e.target for e in ex] == ["gold 0", "gold 1"]
    assert ex[0].source == "i like cats. i am a pilot. <user> hi"
    assert ex[1].source == "i like cats. i am a pilot. <user> hi <system> hello <user> how are you?"


def test_personachat_file_of_splits_needs_a_selector(tmp_path):
    p = write(
        tmp_path / "personachat_self_original.json",
        json.dumps({"train": [persona_dialogue()], "valid": [persona_dialogue(1)]}),
    )
    assert len(load_examples(f"{p}#valid", "dialogue")) == 1
    with pytest.raises(DataError, match=r"splits \['train', 'valid'\]; choose one as .*#train"):
        load_examples(p, "dialogue")
    with pytest.raises(DataError, match="no split 'test'"):
        load_examples(f"{p}#test", "dialogue")


def test_parallel_pair_and_tsv(tmp_path):
    src = write(tmp_path / "train.de", "der hund sieht die katze .\nheute mag der mann das kind .\n")
    tgt = write(tmp_path / "train.en", "the dog sees the cat .\ntoday the man likes the child .\n")
    ex = load_examples(f"{src}:{tgt}", "mt")
    assert ex == [
        Example("der hund sieht die katze .", "the dog sees the cat ."),
        Example("heute mag der mann das kind .", "today the man likes the child ."),
    ]
    tsv = write(tmp_path / "train.tsv", "a b\tx y\n\nc\tz\n")
    assert [(e.source, e.target) for e in load_examples(tsv, "mt")] == [("a b", "x y"), ("c", "z")]


def test_cnndm_jsonl_story_file_and_directory(tmp_path):
    rec = {
        "id": "1",
        "article": "Rome approved a bridge.\nIt costs 5 million.",
        "highlights": "Rome approves bridge .\nCost 5m .",
    }
    ex = load_examples(write(tmp_path / "train.jsonl", json.dumps(rec) + "\n"), "summarization")
    assert ex == [Example("Rome approved a bridge. It costs 5 million.", "Rome approves bridge . Cost 5m .")]
    story = "Rome approved a bridge.\n\nIt costs 5 million.\n\n@highlight\n\nRome approves bridge\n\n"
    story += "@highlight\n\nCost 5m\n"
    d = tmp_path / "stories"
    d.mkdir()
    write(d / "b.story", story)
    write(d / "a.story", story.replace("Rome", "Oslo"))
    ex = load_examples(d, "summarization")
    assert [e.target for e in ex] == ["Oslo approves bridge Cost 5m", "Rome approves bridge Cost 5m"]
    assert load_examples(d / "b.story", "summarization")[0].source == "Rome approved a bridge. It costs 5 million."


def test_coqa_turns_history_and_additional_answers(tmp_path):
    ex = load_examples(write(tmp_path / "coqa-dev.json", json.dumps(coqa_file())), "qa")
    assert [e.source for e in ex] == [
        "Anna lives in Rome. She has a dog. <question> Where does Anna live?",
        "Anna lives in Rome. She has a dog. <question> Where does Anna live? <answer> Rome <question> What pet?",
    ]
    assert ex[0].refs == ["Rome", "in Rome"] and ex[1].refs == ["a dog"]


def test_jsonl_source_target_with_refs(tmp_path):
    p = write(tmp_path / "d.jsonl", json.dumps({"source": "s", "target": "t", "refs": ["t", "u"]}) + "\n\n")
    assert load_examples(p, "anytask") == [Example("s", "t", ["t", "u"])]


def test_format_override_and_aliases(tmp_path):
    p = write(tmp_path / "data.txt", E2E_CSV)
    with pytest.raises(DataError, match=r"cannot infer the data format .*'\.txt'.*pass --format"):
        load_examples(p, "nlg")
    assert len(load_examples(p, "nlg", "e2e")) == len(load_examples(p, "nlg", "csv")) == 3
    with pytest.raises(DataError, match="--format 'xml' is not supported"):
        load_examples(p, "nlg", "xml")


def test_group_and_split_by_source():
    rows = [Example(f"mr{i % 5}", f"ref{i}") for i in range(20)]
    train, held = split_by_source(rows, 2, seed=1)
    assert len(train) + len(held) == 20
    assert not {e.source for e in train} & {e.source for e in held}
    assert len({e.source for e in held}) == 2
    grouped = group_by_source(held)
    assert all(len(g.refs) == 4 for g in grouped)
    with pytest.raises(DataError, match="cannot hold out 5 of 5"):
        split_by_source(rows, 5)


# --- malformed input: one line naming the file and the line/record -------------------------------


@pytest.mark.parametrize(
    "text, msg",
    [
        ("source,target\na,b\n", r"d\.csv:1: E2E CSV header must contain 'mr' and 'ref'"),
        ('mr,ref\n"name[A]",\n', r"d\.csv:2: empty 'ref'"),
        ('mr,ref\n"name[A]",x,extra\n', r"d\.csv:2: expected 2 fields"),
        ('mr,ref\n"name[A]"\n', r"d\.csv:2: expected 2 fields"),
        ("mr,ref\n", r"d\.csv: no records"),
    ],
)
def test_e2e_errors(tmp_path, text, msg):
    with pytest.raises(DataError, match=msg):
        load_examples(write(tmp_path / "d.csv", text), "nlg")


@pytest.mark.parametrize(
    "obj, msg",
    [
        ([{"personality": [], "utterances": []}], r"dialogue 0: 'personality' must be a non-empty list"),
        (
            [persona_dialogue(), {"personality": ["x"], "utterances": [{"history": ["hi"]}]}],
            r"dialogue 1\.utterances\[0\]: 'candidates' must be a non-empty list",
        ),
        (
            [{"personality": ["x"], "utterances": [{"history": ["hi", 3], "candidates": ["a"]}]}],
            r"dialogue 0\.utterances\[0\]: history\[1\] must be a non-empty string",
        ),
        ([], "expected a non-empty list of dialogues"),
    ],
)
def test_personachat_errors(tmp_path, obj, msg):
    with pytest.raises(DataError, match=r"pc\.json.*" + msg):
        load_examples(write(tmp_path / "pc.json", json.dumps(obj)), "dialogue")


def test_json_syntax_error_names_line(tmp_path):
    with pytest.raises(DataError, match=r"pc\.json:3: invalid JSON"):
        load_examples(write(tmp_path / "pc.json", '[\n{"personality": ["x"],\n "utterances" [] }]'), "dialogue")


def test_parallel_errors(tmp_path):
    src = write(tmp_path / "a.de", "eins\nzwei\n")
    tgt = write(tmp_path / "a.en", "one\n")
    with pytest.raises(DataError, match=r"not line-aligned: .*a\.de has 2 lines but .*a\.en has 1"):
        load_examples(f"{src}:{tgt}", "mt")
    write(tgt, "one\n \n")
    with pytest.raises(DataError, match=r"a\.en:2: empty line"):
        load_examples(f"{src}:{tgt}", "mt")
    with pytest.raises(DataError, match=r"file .*missing\.en does not exist"):
        load_examples(f"{src}:{tmp_path / 'missing.en'}", "mt")
    with pytest.raises(DataError, match=r"a\.de: cannot infer .*SRC:TGT"):
        load_examples(src, "mt")
    with pytest.raises(DataError, match=r"t\.tsv:2: expected 2 tab-separated fields"):
        load_examples(write(tmp_path / "t.tsv", "a\tb\nno tab here\n"), "mt")
    with pytest.raises(DataError, match=r"t\.tsv:1: empty target"):
        load_examples(write(tmp_path / "t.tsv", "a\t \n"), "mt")


def test_cnndm_errors(tmp_path):
    with pytest.raises(DataError, match=r"c\.jsonl:2: missing or empty 'highlights'"):
        load_examples(
            write(tmp_path / "c.jsonl", '{"article": "a", "highlights": "h"}\n{"article": "a"}\n'), "summarization"
        )
    with pytest.raises(DataError, match=r"c\.jsonl:1: invalid JSON"):
        load_examples(write(tmp_path / "c.jsonl", '{"article": \n'), "summarization")
    with pytest.raises(DataError, match=r"x\.story: no @highlight markers"):
        load_examples(write(tmp_path / "x.story", "just an article\n"), "summarization")
    with pytest.raises(DataError, match=r"y\.story: empty article"):
        load_examples(write(tmp_path / "y.story", "@highlight\n\nh\n"), "summarization")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: directory has no \.story files"):
        load_examples(tmp_path / "empty", "summarization")


@pytest.mark.parametrize(
    "edit, msg",
    [
        (lambda d: d.pop("data"), r"expected CoQA JSON with a non-empty 'data' list"),
        (lambda d: d["data"][0].pop("story"), r"data\[0\]: missing or empty 'story'"),
        (
            lambda d: d["data"][0]["answers"].pop(),
            r"data\[0\]: questions and answers have different turn_ids \(\[2\]\)",
        ),
        (
            lambda d: d["data"][0]["questions"][1].pop("turn_id"),
            r"data\[0\]\.questions\[1\]: missing integer 'turn_id'",
        ),
        (
            lambda d: d["data"][0]["answers"][0].update(input_text=""),
            r"data\[0\]\.answers\[0\]: missing or empty 'input_text'",
        ),
    ],
)
def test_coqa_errors(tmp_path, edit, msg):
    d = coqa_file()
    edit(d)
    with pytest.raises(DataError, match=r"coqa\.json.*" + msg):
        load_examples(write(tmp_path / "coqa.json", json.dumps(d)), "qa")


@pytest.mark.parametrize(
    "text, msg",
    [
        ('{"source": "a", "target": "b"}\nnot json\n', r"d\.jsonl:2: invalid JSON"),
        ('{"source": "a"}\n', r"d\.jsonl:1: missing or empty 'target'"),
        ('["a", "b"]\n', r"d\.jsonl:1: expected a JSON object"),
        ('{"source": "a", "target": "b", "refs": "b"}\n', r"d\.jsonl:1: 'refs' must be a list"),
    ],
)
def test_jsonl_errors(tmp_path, text, msg):
    with pytest.raises(DataError, match=msg):
        load_examples(write(tmp_path / "d.jsonl", text), "mytask")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"data file .*nope\.csv does not exist"):
        load_examples(tmp_path / "nope.csv", "nlg")


def test_training_holdout_keeps_each_source_on_one_side(tmp_path):
    """Without --valid-data, `edgevlm train` holds out 5 % of the sources with all their references."""
    from edgevlm.train.api import task_examples

    rows = [json.dumps({"source": f"name[N{i}]", "target": f"ref {j} of N{i}"}) for i in range(60) for j in range(3)]
    train, valid = task_examples("nlg", str(write(tmp_path / "d.jsonl", "\n".join(rows) + "\n")), None, None)
    held = {e.source for e in valid}
    assert len(held) == 3 and len(valid) == 9 and len(train) == 171
    assert not held & {e.source for e in train}
