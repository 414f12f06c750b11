"""Decoding (batched greedy, beam search) against the reference, and the pluggable evaluation loop."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from edgevlm.core.errors import ConfigError
from edgevlm.core.prompts import build_prompt
from edgevlm.train.decoding import beam_search, greedy, greedy_batch, vlm_beam_search
from edgevlm.train.evaluate import evaluate
from edgevlm.train.layout import find_adapter
from edgevlm.train.tasks import Example, builtin_task
from edgevlm.train.tasks.mini import mini_task

EOS = 0


def table_step(table: dict[tuple, dict[int, float]], vocab: int = 3):
    """A step function over a hand-written next-token table (unlisted prefixes end)."""
    seqs: list[tuple] = [()]

    def step(parents, tokens):
        nonlocal seqs
        if parents is not None:
            seqs = [seqs[p] + (t,) for p, t in zip(parents.tolist(), tokens.tolist())]
        probs = torch.full((len(seqs), vocab), 1e-9)
        for i, s in enumerate(seqs):
            for tok, p in table.get(s, {EOS: 1.0}).items():
                probs[i, tok] = p
        return probs.log()

    return step


TABLE = {(): {1: 0.6, 2: 0.4}, (1,): {1: 0.4, 2: 0.3, EOS: 0.3}, (2,): {EOS: 0.9, 1: 0.05, 2: 0.05}}


def test_beam_search_finds_what_greedy_misses():
    assert beam_search(table_step(TABLE), 1, 10, EOS, length_penalty=0.0) == [1, 1]  # greedy: p = .6 * .4
    assert beam_search(table_step(TABLE), 2, 10, EOS, length_penalty=0.0) == [2]  # p = .4 * .9 is better
    assert beam_search(table_step(TABLE), 2, 1, EOS, length_penalty=0.0) == [1]  # length limit: best unfinished
    assert beam_search(table_step(TABLE), 2, 0, EOS) == []


@pytest.fixture(scope="module")
def model(tiny_dir):
    """The tiny backbone with a randomly perturbed nlg adapter (varied, deterministic outputs)."""
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.model import VLM

    bb = load_backbone(tiny_dir)
    vlm = VLM(bb.model)
    mod = vlm.add_task(builtin_task("nlg"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in mod.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    vlm.eval()
    cfg = builtin_task("nlg")
    prompts = [build_prompt(bb.tokenizer, cfg, e.source, vlm.vocab_size, 400) for e in mini_task("nlg", "valid", 6)]
    return vlm, bb, prompts


def rerun_greedy(vlm, prompt: list[int], n: int, eos: int) -> list[int]:
    """Greedy without a cache: the whole sequence is re-run for every token (the oracle)."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            nxt = int(vlm(torch.tensor([seq]), task="nlg")[0][0, -1].argmax())
            if nxt == eos:
                break
            seq.append(nxt)
    return seq[len(prompt) :]


def test_greedy_batch_matches_reference(model):
    vlm, bb, prompts = model
    prompts = [p[: 6 + 3 * i] + p[-1:] for i, p in enumerate(prompts)]  # different lengths -> left padding
    ref = [rerun_greedy(vlm, p, 12, bb.eos_token_id) for p in prompts]
    assert greedy_batch(vlm, prompts, "nlg", 12, bb.eos_token_id, batch_size=4) == ref
    assert any(len(r) > 0 for r in ref)


def reference_beam(vlm, prompt, k, n, eos):
    """Beam search recomputing every hypothesis from scratch (no cache) as the oracle."""
    seqs: list[list[int]] = [[]]

    def step(parents, tokens):
        nonlocal seqs
        if parents is not None:
            seqs = [seqs[p] + [t] for p, t in zip(parents.tolist(), tokens.tolist())]
        rows = [vlm(torch.tensor([prompt + s]), task="nlg")[0][0, -1] for s in seqs]
        return F.log_softmax(torch.stack(rows).float(), -1)

    with torch.no_grad():
        return beam_search(step, k, n, eos)


def test_beam_search_with_cache_matches_oracle_and_greedy(model):
    vlm, bb, prompts = model
    eos = bb.eos_token_id
    for p in prompts[:2]:
        assert vlm_beam_search(vlm, p, "nlg", 1, 10, eos) == greedy(vlm, p, "nlg", 10, eos)
        assert vlm_beam_search(vlm, p, "nlg", 3, 10, eos) == reference_beam(vlm, p, 3, 10, eos)


def test_evaluate_with_a_plugged_generator(tmp_path):
    rows = [Example("mr1", "a b c d"), Example("mr1", "a b c e"), Example("mr2", "x y z w")]
    answers = {"mr1": "a b c e", "mr2": "x y z q"}
    m = evaluate(rows, lambda s: answers[s], out=tmp_path / "p.jsonl", progress=False)
    assert m["n"] == 2 and m["em"] == pytest.approx(50.0) and m["f1"] == pytest.approx(100 * (1 + 0.75) / 2)
    recs = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert recs[0] == {"source": "mr1", "prediction": "a b c e", "references": ["a b c d", "a b c e"]}
    m1 = evaluate(rows, lambda s: answers[s], limit=1, progress=False)
    assert m1["n"] == 1 and m1["bleu"] == pytest.approx(100.0)


def test_evaluate_uses_batch_method_when_present():
    class Gen:
        calls: list[list[str]] = []

        def __call__(self, s):
            raise AssertionError("batch() should be used")

        def batch(self, xs):
            self.calls.append(xs)
            return ["same"] * len(xs)

    g = Gen()
    m = evaluate([Example(f"s{i}", "same") for i in range(5)], g, batch_size=2, progress=False)
    assert [len(c) for c in g.calls] == [2, 2, 1] and m["em"] == 100.0
    assert math.isclose(m["rougeL"], 100.0)


def test_find_adapter_errors(tmp_path):
    with pytest.raises(ConfigError, match="no adapter.json"):
        find_adapter(tmp_path, None)
    for name in ("nlg", "mt"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter.json").write_text("{}")
    assert find_adapter(tmp_path, "nlg") == tmp_path / "nlg"
    with pytest.raises(ConfigError, match=r"holds adapters for tasks \['mt', 'nlg'\]: pass --task"):
        find_adapter(tmp_path, None)
