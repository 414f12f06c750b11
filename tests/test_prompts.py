"""Prompt builders: segment tokens in place, truncation policies, the target kept."""

from __future__ import annotations

import pytest

from edgevlm.core.errors import ConfigError
from edgevlm.core.prompts import build_prompt, encode_prompt, split_turns
from edgevlm.train.backbone import EOS_TOKEN, load_tokenizer
from edgevlm.train.data import encode_example
from edgevlm.train.tasks import BUILTIN_TASKS, Example, builtin_task
from edgevlm.train.tasks.mini import mini_task

V = 1024


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return load_tokenizer(tiny_dir)


def specials(ids, cfg):
    return [cfg.special_tokens[t - V] for t in ids if t >= V]


def text(tok, ids):
    return tok.decode([t for t in ids if t < V]).strip()


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_equals_plain_encoding_when_it_fits(tok, task):
    cfg = builtin_task(task)
    for ex in mini_task(task, "valid", 5):
        assert build_prompt(tok, cfg, ex.source, V, 10_000) == encode_prompt(
            tok, cfg.template, ex.source, cfg.special_tokens, V
        )


def test_split_turns_groups_exchanges():
    cfg = builtin_task("qa")
    ctx, turns = split_turns("story . <question> q1 <answer> a1 <question> q2", cfg.special_tokens)
    assert ctx == "story . " and turns == ["<question> q1 <answer> a1", "<question> q2"]
    ctx, turns = split_turns(
        "p1 . <user> u1 <system> s1 <user> u2 <system> s2 <user> u3", builtin_task("dialogue").special_tokens
    )
    assert turns == ["<user> u1 <system> s1", "<user> u2 <system> s2", "<user> u3"]


def test_dialogue_window_keeps_persona_and_newest_turns(tok):
    cfg = builtin_task("dialogue")
    persona = "i like cats . i am a pilot ."
    turns = " ".join(f"<user> question number {i} ? <system> answer number {i} ." for i in range(10))
    src = f"{persona} {turns} <user> what is your job ?"
    full = build_prompt(tok, cfg, src, V, 10_000)
    ids = build_prompt(tok, cfg, src, V, len(full) - 30)
    assert len(ids) <= len(full) - 30
    s = specials(ids, cfg)
    assert (
        s[0] == "<persona>" and s[-2:] == ["<user>", "<system>"] and ids[-1] == V + cfg.special_tokens.index("<system>")
    )
    kept = text(tok, ids)
    assert kept.startswith(persona) and kept.endswith("what is your job ?")
    assert "answer number 9" in kept and "question number 0" not in kept  # oldest exchanges dropped first
    assert s.count("<user>") == s.count("<system>")  # whole exchanges only (+ the newest user turn and the tail)


def test_coqa_document_cut_at_400_tokens_question_kept(tok):
    cfg = builtin_task("qa")
    story = " ".join(f"anna lives in rome number {i} ." for i in range(200))
    src = f"{story} <question> where does anna live ? <answer> rome <question> what pet does anna have ?"
    ids = build_prompt(tok, cfg, src, V, 10_000)
    doc_end = ids.index(V + cfg.special_tokens.index("<question>"))
    assert ids[0] == V and doc_end - 1 == cfg.max_source_tokens == 400  # <document> + its first 400 tokens
    assert text(tok, ids[1:doc_end]).startswith("anna lives in rome number 0 .")
    assert specials(ids, cfg) == ["<document>", "<question>", "<answer>", "<question>", "<answer>"]
    assert text(tok, ids).endswith("where does anna live ? rome what pet does anna have ?")


def test_newest_turn_cut_from_the_left_when_alone_too_long(tok):
    cfg = builtin_task("dialogue")
    src = "i like cats . <user> " + " ".join(f"word{i}" for i in range(100))
    ids = build_prompt(tok, cfg, src, V, 20)
    assert len(ids) == 20 and specials(ids, cfg) == ["<persona>", "<user>", "<system>"]
    assert text(tok, ids).endswith("word99")


@pytest.mark.parametrize(
    "task, src_words, tgt_words, max_src, max_tgt",
    [
        ("summarization", 900, 300, 400, 130),
        ("mt", 300, 300, 100, 100),
    ],
)
def test_source_and_target_caps(tok, task, src_words, tgt_words, max_src, max_tgt):
    cfg = builtin_task(task)
    eos = tok.token_to_id(EOS_TOKEN)
    ex = Example(
        " ".join(["the council approved a bridge ."] * (src_words // 6)),
        " ".join(["rome approves bridge ."] * (tgt_words // 4)),
    )
    enc = encode_example(tok, cfg, ex, V, eos, 1024)
    assert len(enc.prompt) == max_src + 2 and enc.prompt[0] == V and enc.prompt[-1] == V + 1
    assert len(enc.target) == max_tgt + 1 and enc.target[-1] == eos
    assert text(tok, enc.prompt).startswith("the council approved")  # the article keeps its beginning


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_target_survives_truncation(tok, task):
    cfg = builtin_task(task)
    eos = tok.token_to_id(EOS_TOKEN)
    ex = mini_task(task, "valid", 1)[0]
    long = Example(" ".join([ex.source] * 20), ex.target)
    enc = encode_example(tok, cfg, long, V, eos, 96)
    assert len(enc.prompt) + len(enc.target) <= 96
    assert tok.decode(enc.target[:-1]).strip() == ex.target and enc.target[-1] == eos
    assert enc.prompt[-1] == V + cfg.special_tokens.index(cfg.template.split()[-1])  # the tail marker ends the prompt
    assert enc.prompt[0] == V  # the leading segment token survives


def test_budget_too_small_for_task_tokens(tok):
    with pytest.raises(ConfigError, match="cannot hold the task tokens"):
        build_prompt(tok, builtin_task("qa"), "doc <question> q <answer> a <question> q2", V, 2)
