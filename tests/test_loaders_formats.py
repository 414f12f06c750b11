"""Loaders for the formats users hold: IWSLT/WIT3 XML pairs, ParlAI/ConvAI2 text, CNN/DM CSV; splits by unit."""

from __future__ import annotations

import json
import random

import pytest

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example
from edgevlm.train.tasks.loaders import holdout_split, load_examples, source_units, split_by_source

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def wit3(talks: dict, root="srcset") -> str:
    """A WIT3 file: ``talks`` maps docid -> list of (seg id, text); metadata elements as the release has them."""
    docs = []
    for docid, segs in talks.items():
        body = "".join(f'<seg id="{sid}"> {text} </seg>\n' for sid, text in segs)
        docs.append(
            f'<doc docid="{docid}" genre="lectures">\n<url>http://x/{docid}</url>\n<title>T</title>\n{body}</doc>'
        )
    return f"{HEAD}<mteval>\n<{root} setid='t' srclang='german'>\n" + "\n".join(docs) + f"\n</{root}>\n</mteval>\n"


DE = {"7": [("1", "Hallo Welt ."), ("2", "Wie geht &apos;s ?")], "3": [("1", "(Applaus)")]}
EN = {"7": [("1", "Hello world ."), ("2", "How is\n it going ?")], "3": [("1", "(Applause)")]}


def pair(tmp_path, de=DE, en=EN):
    return f"{write(tmp_path / 's.de.xml', wit3(de))}:{write(tmp_path / 'r.en.xml', wit3(en, 'refset'))}"


def test_wit3_pair_aligned_by_docid_and_seg_id(tmp_path):
    en = {"3": EN["3"], "7": EN["7"][::-1]}  # talks and segments in another order: alignment is by id
    ex = load_examples(pair(tmp_path, en=en), "mt")
    assert ex == [
        Example("Hallo Welt .", "Hello world ."),
        Example("Wie geht 's ?", "How is it going ?"),
        Example("(Applaus)", "(Applause)"),
    ]
    assert [e.unit for e in ex] == ["talk 7", "talk 7", "talk 3"] and source_units(ex) == ["talk 7", "talk 3"]
    assert load_examples(pair(tmp_path), "anytask", "iwslt") == ex  # --format wit3 (alias iwslt)


@pytest.mark.parametrize(
    "de, en, msg",
    [
        (DE, {"7": EN["7"][:1], "3": EN["3"]}, r"r\.en\.xml: talk docid=7: no seg id=2 \(present in .*s\.de\.xml\)"),
        (DE, {**EN, "7": EN["7"] + [("9", "x")]}, r"s\.de\.xml: talk docid=7: no seg id=9 \(present in .*r\.en\.xml"),
        (DE, {"7": EN["7"]}, r"r\.en\.xml: no talk docid=3 \(present in .*s\.de\.xml\)"),
        ({"7": [("1", "a"), ("1", "b")]}, EN, r"s\.de\.xml: talk docid=7: duplicate seg id=1"),
        ({"7": [("1", " ")]}, EN, r"s\.de\.xml: talk docid=7 seg id=1: empty segment"),
        ({"": DE["7"]}, EN, r"s\.de\.xml: <doc> number 1 has no docid attribute"),
        ({"7": [("", "a")]}, EN, r"s\.de\.xml: talk docid=7: <seg> number 1 has no id attribute"),
        ({}, EN, r"s\.de\.xml: no <doc> elements"),
    ],
)
def test_wit3_mismatch_is_one_line_naming_file_and_segment(tmp_path, de, en, msg):
    with pytest.raises(DataError, match=msg) as e:
        load_examples(pair(tmp_path, de, en), "mt")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, msg",
    [
        (
            HEAD + "<mteval>\n<srcset>\n<doc docid='1'><seg id='1'>a</doc>\n",
            r"s\.de\.xml:4: malformed XML \(mismatched tag",
        ),
        (HEAD + '<!DOCTYPE m [<!ENTITY a "aaaa">]>\n<mteval/>\n', r"s\.de\.xml: XML with a DTD or entity declarations"),
        (b"<mteval><doc docid='1'>\n<seg id='1'>\xff</seg></doc></mteval>", r"s\.de\.xml:2: malformed XML"),
    ],
)
def test_wit3_bad_xml(tmp_path, text, msg):
    ref = write(tmp_path / "r.en.xml", wit3(EN))
    with pytest.raises(DataError, match=msg):
        load_examples(f"{write(tmp_path / 's.de.xml', text)}:{ref}", "mt")


def test_wit3_needs_a_pair(tmp_path):
    src = write(tmp_path / "s.de.xml", wit3(DE))
    with pytest.raises(DataError, match=r"s\.de\.xml: a WIT3 XML source needs its reference file: pass SRC\.xml:REF"):
        load_examples(src, "mt")
    with pytest.raises(DataError, match=r"s\.de\.xml: the wit3 format needs two files"):
        load_examples(src, "mt", "wit3")
    with pytest.raises(DataError, match=r"only the 'parallel' and 'wit3' formats read \(got --format tsv\)"):
        load_examples(pair(tmp_path), "mt", "tsv")


PERSONA = ["i like cats.", "i am a pilot."]
TURNS = [("hi", "hello"), ("how are you?", "fine , thanks"), ("bye", "see you")]


def parlai(persona=PERSONA, turns=TURNS, cands=False) -> str:
    lines = [f"your persona: {p}" for p in persona]
    lines += [f"{u}\t{r}" + (f"\t\tnope|{r}|other" if cands else "") for u, r in turns]
    return "".join(f"{i} {ln}\n" for i, ln in enumerate(lines, 1))


def test_parlai_turns_match_the_personachat_json_rendering(tmp_path):
    text = parlai() + parlai(["i hate cats."], TURNS[:1])
    ex = load_examples(write(tmp_path / "valid.txt", text), "dialogue")
    flat = [x for u, r in TURNS for x in (u, r)]
    dialogue = {
        "personality": PERSONA,
        "utterances": [{"history": flat[: 2 * j + 1], "candidates": ["x", r]} for j, (_, r) in enumerate(TURNS)],
    }
    as_json = load_examples(write(tmp_path / "pc.json", json.dumps([dialogue])), "dialogue")
    assert ex[:3] == as_json
    assert ex[1].source == "i like cats. i am a pilot. <user> hi <system> hello <user> how are you?"
    assert ex[3] == Example("i hate cats. <user> hi", "hello")
    assert len(source_units(ex)) == 2 and {e.unit for e in ex[:3]} == {ex[0].unit} != {ex[3].unit}


def test_parlai_with_candidates_labels_and_partner_persona(tmp_path):
    plain = load_examples(write(tmp_path / "a_no_cands.txt", parlai()), "dialogue")
    assert load_examples(write(tmp_path / "a.txt", parlai(cands=True)), "dialogue") == plain
    text = "1 your persona: i fly.\n2 partner's persona: i swim.\n3 hi\tyes|yes indeed\n"
    assert load_examples(write(tmp_path / "b.txt", text), "x", "parlai") == [
        Example("i fly. <user> hi", "yes", ["yes", "yes indeed"])
    ]
    assert load_examples(write(tmp_path / "c.txt", parlai()), "dialogue", "convai2") == plain  # .txt: ParlAI text


@pytest.mark.parametrize(
    "text, msg",
    [
        ("1 your persona: a.\nhi\thello\n", r"d\.txt:2: expected a numbered line 'N text'"),
        ("1 your persona: a.\n3 hi\thello\n", r"d\.txt:2: line number 3 does not follow 1"),
        ("2 hi\thello\n", r"d\.txt:1: line number 2 does not follow 0 \(a dialogue starts at 1\)"),
        ("1 your persona: a.\n2 hi hello\n", r"d\.txt:2: expected 'utterance<TAB>response'.*got 1 tab-separated"),
        ("1 hi\thello\n2 your persona: a.\n", r"d\.txt:2: 'your persona:' line after the dialogue's first utterance"),
        ("1 your persona: a.\n1 hi\thello\n", r"d\.txt:1: dialogue has persona lines but no 'utterance<TAB>response'"),
        ("1 hi\t \n", r"d\.txt:1: empty response"),
        ("1 hi\tyo\t\tyo||x\n", r"d\.txt:1: empty candidate"),
        ("1 your persona: a.\n2 hi\thello\n3 caf\xe9\tok\n".encode("latin-1"), r"d\.txt:3: not UTF-8 text"),
    ],
)
def test_parlai_errors(tmp_path, text, msg):
    with pytest.raises(DataError, match=msg):
        load_examples(write(tmp_path / "d.txt", text), "dialogue", "parlai")


CNN_CSV = (
    "article,highlights,id\n"
    '"Rome approved a bridge.\nIt costs ""5"" million.","Rome approves bridge .\nCost 5m .",a1\n'
    '"Oslo, a city, votes.","Oslo votes .",b2\n'
)


def test_cnndm_csv_quoted_multiline_fields_and_bom(tmp_path):
    ex = load_examples(write(tmp_path / "v.csv", CNN_CSV, "utf-8-sig"), "summarization")
    assert ex == [
        Example('Rome approved a bridge. It costs "5" million.', "Rome approves bridge . Cost 5m ."),
        Example("Oslo, a city, votes.", "Oslo votes ."),
    ]
    assert load_examples(write(tmp_path / "w.csv", CNN_CSV), "anytask") == ex  # inferred from the header
    e2e = load_examples(write(tmp_path / "e.csv", 'mr,ref\n"name[A]",A.\n', "utf-8-sig"), "nlg")
    assert e2e == [Example("name[A]", "A.", ["A."])]  # BOM is not part of the 'mr' header


@pytest.mark.parametrize(
    "text, msg",
    [
        (CNN_CSV + '"An article\nover lines",,c3\n', r"v\.csv:6: empty 'highlights'"),
        (CNN_CSV + '"An article\nover lines",x\n', r"v\.csv:6: expected 3 fields, got a row with a different count"),
        ("article,summary\na,b\n", r"v\.csv:1: CNN/DM CSV header must contain 'article' and 'highlights'"),
        (CNN_CSV.encode() + b'"caf\xe9",x,c3\n', r"v\.csv:6: not UTF-8 text"),
        ("article,highlights\n", r"v\.csv: no records"),
    ],
)
def test_cnndm_csv_errors(tmp_path, text, msg):
    with pytest.raises(DataError, match=msg):
        load_examples(write(tmp_path / "v.csv", text), "summarization")


def test_invalid_utf8_names_file_and_line_in_every_text_format(tmp_path):
    bad = b'{"source": "a", "target": "b"}\n{"source": "\xc3(", "target": "b"}\n'
    with pytest.raises(DataError, match=r"d\.jsonl:2: not UTF-8 text"):
        load_examples(write(tmp_path / "d.jsonl", bad), "x")
    with pytest.raises(DataError, match=r"e\.csv:3: not UTF-8 text"):
        load_examples(write(tmp_path / "e.csv", b"mr,ref\na,b\n\xff,c\n"), "nlg")
    src, tgt = write(tmp_path / "a.de", b"eins\n\xffzwei\n"), write(tmp_path / "a.en", "one\ntwo\n")
    with pytest.raises(DataError, match=r"a\.de:2: not UTF-8 text"):
        load_examples(f"{src}:{tgt}", "mt")


def units_rows(n_units=12, per_unit=4):
    """Rows of ``n_units`` units whose sources all differ (one per turn/segment), as dialogue and IWSLT give."""
    return [Example(f"turn {u}.{k}", f"r{k}", unit=f"u{u}") for u in range(n_units) for k in range(per_unit)]


@pytest.mark.parametrize("seed", range(5))
def test_split_by_unit_never_puts_a_unit_on_both_sides(seed):
    rows = units_rows()
    random.Random(seed).shuffle(rows)
    train, held = split_by_source(rows, 3, seed=seed)
    assert len(train) + len(held) == len(rows)
    assert not {e.unit for e in train} & {e.unit for e in held}
    assert len({e.unit for e in held}) == 3 and len(held) == 12  # whole units: every turn of each goes along
    with pytest.raises(DataError, match="cannot hold out 12 of 12 distinct source units"):
        split_by_source(rows, 12)


def test_holdout_split_share_and_single_unit():
    train, held = holdout_split(units_rows(60, 2))
    assert len({e.unit for e in held}) == 3 and len(held) == 6 and len(train) == 114
    one = units_rows(1, 5)
    assert holdout_split(one) == (one, [])


def test_training_holdout_keeps_dialogues_whole(tmp_path):
    """`edgevlm train --data dialogues.txt` without --valid-data: held-out dialogues go whole."""
    from edgevlm.train.api import task_examples

    text = "".join(parlai([f"i am number {d}."], TURNS) for d in range(40))
    train, valid = task_examples("dialogue", str(write(tmp_path / "d.txt", text)), None, None)
    assert len(valid) == 2 * len(TURNS) and len(train) == 38 * len(TURNS)  # 5 % of 40 dialogues, 3 turns each
    assert not {e.unit for e in train} & {e.unit for e in valid}
