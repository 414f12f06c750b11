"""Runtime decoding pieces on plain numpy: sampling filters, beam search, incremental detokenization, stop strings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgevlm.core.errors import ConfigError
from edgevlm.runtime.decoder import BeamSearch
from edgevlm.runtime.generation import GenerationConfig, candidates, log_softmax, sample, suppress_eos
from edgevlm.runtime.textstream import OutputText, StopMatcher, TextStream, token_bytes


def reference_candidates(row: np.ndarray, top_k: int, top_p: float) -> set[int]:
    """Brute force: full sort, top-k, then the smallest prefix holding top_p of the (top-k) mass."""
    order = np.argsort(-row, kind="stable")
    if top_k:
        order = order[:top_k]
    p = np.exp(row[order] - row[order[0]])
    cum = np.cumsum(p) / p.sum()
    n = int(np.argmax(cum >= top_p)) + 1 if top_p < 1 else len(order)
    return set(order[:n].tolist())


@pytest.mark.parametrize(
    "v,top_k,top_p", [(50, 0, 0.9), (50, 5, 1.0), (50, 5, 0.5), (3000, 0, 0.95), (3000, 0, 0.3), (3000, 2000, 0.99)]
)
def test_candidates_match_brute_force(v, top_k, top_p):
    rng = np.random.default_rng(v + top_k)
    for scale in (0.1, 1.0, 5.0):  # flat rows push top-p past the shortlist
        row = rng.normal(size=v) * scale
        got = candidates(row, top_k, top_p)
        assert set(got.tolist()) == reference_candidates(row, top_k, top_p)


def test_sampling_follows_the_tempered_distribution():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32))
    cfg = GenerationConfig(max_new_tokens=1, do_sample=True, temperature=2.0)
    rng = np.random.default_rng(0)
    draws = np.array([sample(logits, cfg, rng)[0] for _ in range(20000)])
    want = np.array([0.1, 0.2, 0.3, 0.4]) ** 0.5
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws), want / want.sum(), atol=0.015)


def test_sampling_respects_top_k_and_seed():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 100)).astype(np.float32)
    cfg = GenerationConfig(max_new_tokens=1, do_sample=True, top_k=3, seed=7)
    a = [sample(logits, cfg, np.random.default_rng(7)) for _ in range(3)]
    assert all((x == a[0]).all() for x in a)  # same seed, same draws
    draws = np.stack([sample(logits, cfg, rng) for _ in range(300)])  # [300, 3]
    for r in range(3):
        assert set(draws[:, r]) <= set(np.argsort(-logits[r])[:3].tolist())


def test_greedy_and_min_new_tokens():
    logits = np.array([[0.0, 5.0, 1.0]], dtype=np.float32)
    cfg = GenerationConfig(max_new_tokens=4, min_new_tokens=2)
    assert sample(suppress_eos(logits.copy(), 1, 1, cfg), cfg, None)[0] == 2  # EOS (1) suppressed before 2 tokens
    assert sample(suppress_eos(logits.copy(), 1, 2, cfg), cfg, None)[0] == 1


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_new_tokens=0),
        dict(max_new_tokens=2, min_new_tokens=3),
        dict(temperature=0.0),
        dict(top_p=1.5),
        dict(top_k=-1),
        dict(num_beams=2, do_sample=True),
        dict(seed=-1),
        dict(stop=[""]),
        dict(max_new_tokens=True),
    ],
)
def test_bad_generation_options(bad):
    with pytest.raises(ConfigError):
        GenerationConfig(**{"max_new_tokens": 4, **bad})


def markov(v: int, seed: int) -> np.ndarray:
    """A toy LM: next-token log-probs depend on the last token only. [v, v]"""
    return log_softmax(np.random.default_rng(seed).normal(size=(v, v)) * 2)


def brute_force(table: np.ndarray, first: np.ndarray, eos: int, max_new: int) -> list[int]:
    """Best sum of log-probs over every continuation ending in EOS or at the length limit."""
    best, best_seq = -np.inf, []
    for n in range(1, max_new + 1):
        for seq in itertools.product(range(table.shape[0]), repeat=n):
            if eos in seq[:-1] or (n < max_new and seq[-1] != eos):
                continue
            s = first[seq[0]] + sum(table[a, b] for a, b in zip(seq, seq[1:]))
            if s > best:
                best, best_seq = s, [t for t in seq if t != eos]
    return best_seq


@pytest.mark.parametrize("seed", range(5))
def test_beam_search_is_exact_with_enough_beams(seed):
    v, eos, max_new = 4, 0, 4
    table, first = markov(v, seed), markov(v, seed + 100)[0]
    beams = BeamSearch(v**max_new, eos, length_penalty=0.0)
    logp = np.repeat(first[None], beams.n, 0)
    for n in range(max_new):
        parents, tokens = beams.step(logp)
        if beams.done() or n + 1 == max_new:
            break
        logp = table[tokens]
    assert beams.best() == brute_force(table, first, eos, max_new)


def test_one_beam_is_greedy():
    table, first = markov(6, 3), markov(6, 4)[0]
    beams, logp, greedy, tok = BeamSearch(1, None), first[None], [], int(first.argmax())
    for _ in range(5):
        greedy.append(tok)
        tok = int(table[tok].argmax())
    for _ in range(5):
        _, tokens = beams.step(logp)
        logp = table[tokens]
    assert beams.best() == greedy


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))


def test_stream_pieces_equal_decode(tokenizer):
    table = token_bytes(tokenizer, tokenizer.get_vocab_size())
    texts = [" héllo wörld 🙂 naïve café", " 日本語のテキスト", " plain ascii, with punctuation!"]
    rng = np.random.default_rng(0)
    seqs = [tokenizer.encode(t).ids for t in texts] + [
        rng.integers(0, tokenizer.get_vocab_size(), 40).tolist() for _ in range(20)
    ]
    for ids in seqs:
        s = TextStream(table)
        pieces = [s.push(i) for i in ids] + [s.flush()]
        assert "".join(pieces) == tokenizer.decode(ids)
        assert all("\ufffd" not in p for p in pieces[:-1]) or "\ufffd" in tokenizer.decode(ids)


def test_multibyte_character_waits_for_its_last_byte(tokenizer):
    table = token_bytes(tokenizer, tokenizer.get_vocab_size())
    ids = tokenizer.encode(" 🙂").ids
    assert len(ids) > 2  # the emoji spans several byte-level tokens
    s = TextStream(table)
    pieces = [s.push(i) for i in ids]
    assert pieces[:-1] == [" "] + [""] * (len(ids) - 2) and pieces[-1] == "🙂"


def test_special_tokens_are_skipped(tokenizer):
    eos = tokenizer.token_to_id("<|endoftext|>")
    table = token_bytes(tokenizer, tokenizer.get_vocab_size())
    assert table[eos] == b""


def test_stop_string_split_across_pieces():
    m = StopMatcher(["END", "\n\n"])
    out = []
    for piece in ["hello E", "N", "x wor", "ld E", "ND more"]:
        text, hit = m.push(piece)
        out.append(text)
        if hit:
            break
    assert "".join(out) == "hello ENx world " and hit


def test_output_text_trims_and_stops(tokenizer):
    table = token_bytes(tokenizer, tokenizer.get_vocab_size())
    row = OutputText(table, ["."])
    ids = tokenizer.encode(" the cat sat. on the mat").ids
    text = "".join(row.push(i) for i in ids if not row.done) + row.finish()
    assert text == "the cat sat" and row.done
    row = OutputText(table, [])
    assert "".join(row.push(i) for i in ids) + row.finish() == "the cat sat. on the mat"
