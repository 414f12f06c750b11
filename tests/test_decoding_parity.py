"""One decoding rule, two frameworks: torch (``edgevlm eval``) and numpy (``edgevlm run``) give the same tokens.

First on toy Markov LMs (the algorithms alone, many beam widths and length
penalties), then on the tiny fp32 bundle: the PyTorch VLM with the trained
adapters against the runtime, greedy and beam search with 3 beams.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgevlm.runtime import decoder as decoding
from edgevlm.runtime.generation import GenerationConfig, log_softmax
from edgevlm.train.decoding import beam_search as torch_beam_search
from edgevlm.train.decoding import greedy, vlm_beam_search

EOS = 0


def markov(v: int, seed: int, scale: float = 2.0) -> np.ndarray:
    """A toy LM: next-token log-probs depend on the last token only. [v, v] float64"""
    return log_softmax(np.random.default_rng(seed).normal(size=(v, v)) * scale)


def numpy_step(table: np.ndarray) -> decoding.StepFn:
    """The toy LM as a runtime step function (its past is empty)."""

    def step(ids, mask, past):
        assert mask.shape[1] >= ids.shape[1] and (past is None or ids.shape[1] == 1)
        return table[ids[:, -1]].astype(np.float32), []

    return step


def torch_step(table: np.ndarray, prompt: list[int]):
    """The same toy LM as a torch beam-search step function."""
    t = torch.from_numpy(table.astype(np.float32))

    def step(parents, tokens):
        return t[[prompt[-1]]] if parents is None else t[tokens]

    return step


@pytest.mark.parametrize("seed", range(12))
def test_toy_beams_agree(seed):
    v, prompt = 5 + seed % 4, [1 + seed % 3]
    table = markov(v, seed, scale=1.0 + seed % 3)
    for beams in (1, 2, 3, 4):
        for lp in (0.0, 1.0, 2.0):
            cfg = GenerationConfig(max_new_tokens=7, num_beams=beams, length_penalty=lp)
            want = decoding.beam_search(numpy_step(table), prompt, cfg, EOS)
            got = torch_beam_search(torch_step(table, prompt), beams, 7, EOS, lp)
            assert got == want, (beams, lp)


def test_toy_early_stop_differs_from_first_n_finished():
    """The rule keeps searching after num_beams hypotheses end while a running beam can still win."""
    # From token 1: EOS is likely at once, but 1 -> 2 -> 2 ... is a long run of near-certain tokens.
    p = np.full((4, 4), 1e-6)
    p[1] = [0.300, 0.015, 0.680, 0.005]  # after the prompt: EOS .30 or 2 .68
    p[2] = [0.200, 0.010, 0.005, 0.785]
    p[3] = [0.960, 0.020, 0.015, 0.005]
    table = np.log(p / p.sum(1, keepdims=True))
    cfg = GenerationConfig(max_new_tokens=6, num_beams=2, length_penalty=1.0)
    got = decoding.beam_search(numpy_step(table), [1], cfg, EOS)
    # Two hypotheses end after step 2 ([] and [2]), but [2, 3] still runs and wins: log(.68*.785*.96)/3 = -0.22
    # beats log(.68*.20)/2 = -1.00 and log(.30)/1 = -1.20 (stopping at the first two finished would give [2]).
    assert got == [2, 3]
    assert torch_beam_search(torch_step(table, [1]), 2, 6, EOS, 1.0) == got


@pytest.fixture(scope="module")
def rt(tiny_bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(tiny_bundle("fp32"), threads=2)


@pytest.fixture(scope="module")
def vlm(tiny_dir, trained_adapters):
    from export_helpers import reference_vlm

    return reference_vlm(tiny_dir, trained_adapters)


@pytest.fixture(scope="module")
def prompts(rt) -> dict:
    """task (None: the plain backbone, on plain text) -> encoded validation prompts of the mini tasks."""
    from edgevlm.core.prompts import encode_prompt
    from edgevlm.train.tasks.mini import mini_task

    out = {None: [rt.tokenizer.encode(" " + e.target).ids[:12] for e in mini_task("nlg", "valid", 4)]}
    for name in ("nlg", "dialogue", "qa"):
        t = rt.task(name)
        out[name] = [
            encode_prompt(rt.tokenizer, t.template, e.source[:300], t.special_tokens, rt.graph.vocab_size)
            for e in mini_task(name, "valid", 3)
        ]
    return out


def eos_of(rt, task: str | None) -> int | None:
    return rt.task(task).eos_token_id if task else rt.eos_token_id


@pytest.mark.parametrize("task", [None, "nlg", "dialogue", "qa"])
def test_eval_and_run_agree_greedy_and_beams(rt, vlm, prompts, task):
    """Greedy and 3-beam search: the same tokens from the PyTorch VLM and the runtime on the fp32 bundle."""
    eos, n = eos_of(rt, task), 20
    for p in prompts[task]:
        assert rt.generate_tokens(p, task, max_new_tokens=n, num_beams=3) == vlm_beam_search(vlm, p, task, 3, n, eos)
        assert rt.generate_tokens(p, task, max_new_tokens=n) == greedy(vlm, p, task, n, eos)


@pytest.mark.parametrize("lp", [0.0, 1.0, 2.0])
def test_beams_that_leave_greedy_agree(rt, vlm, prompts, lp):
    """On the plain backbone beam search departs from greedy (beams reorder), and both sides still agree."""
    eos, departed = eos_of(rt, None), 0
    for p in prompts[None]:
        want = vlm_beam_search(vlm, p, None, 3, 20, eos, length_penalty=lp)
        assert rt.generate_tokens(p, None, max_new_tokens=20, num_beams=3, length_penalty=lp) == want
        departed += want != greedy(vlm, p, None, 20, eos)
    assert departed >= 1
