"""The batch-1 greedy loop on bound buffers (``Steps.bound_step`` + ``decoder.greedy_one``): the same tokens and
logits as the step-function paths, in every mode, with and without a task; its buffers are made once (no array
per step, no growth with the number of steps); what it refuses."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from edgevlm.runtime import Runtime, decoder
from edgevlm.runtime.generation import GenerationConfig

PROMPT = [int(i) for i in np.random.default_rng(5).integers(5, 1000, 9)]


def _step_fn_logits(rt: Runtime, task, prompt: list[int], feed: list[int], capacity: int | None) -> list[np.ndarray]:
    """Logits [1, V] of the prefill and of feeding ``feed`` one token at a time through ``Steps.step_fn``."""
    step = rt.steps.step_fn(rt.task(task), capacity)
    ids, mask = np.array([prompt], np.int64), np.ones((1, len(prompt)), np.int64)
    logits, past = step(ids, mask, None)
    out = [logits]
    for t in feed:
        mask = np.ones((1, mask.shape[1] + 1), np.int64)
        logits, past = step(np.array([[t]], np.int64), mask, past)
        out.append(logits)
    return out


def _mode(rt: Runtime, cache: str) -> Runtime:
    """``rt`` decoding as a graph of that cache mode would: "shared", "concat" (presents fed back) or "all" (concat
    and no ``logits_to_keep``, like a graph exported before the option: the prefill's logits are [1, s, V])."""
    rt.steps.shared = cache == "shared"
    if cache == "all":
        rt.steps.options = {}
    return rt


@pytest.mark.parametrize("cache", ["shared", "concat", "all"])
@pytest.mark.parametrize("quant", ["fp32", "int8", "int4"])
def test_bound_logits_equal_the_step_fn_paths(mixed_bundles, quant, cache):
    """Step for step, the bound buffers give the same cache mode's step function's logits bit for bit and the
    other mode's within float rounding; the bound adapter is in effect (IOBinding ignores RunOptions)."""
    rt = _mode(Runtime.load(mixed_bundles["llama"](quant), threads=1), cache)
    feed = [int(i) for i in np.random.default_rng(2).integers(5, 1000, 6)]
    capacity, last = len(PROMPT) + len(feed), {}
    for task in (None, "nlg", "qa"):
        bound = rt.steps.bound_step(rt.task(task), capacity)
        got = [bound.prefill(PROMPT).copy()] + [bound.feed(t).copy() for t in feed]
        same = _step_fn_logits(rt, task, PROMPT, feed, capacity if cache == "shared" else None)
        other = _step_fn_logits(rt, task, PROMPT, feed, None if cache == "shared" else capacity)
        assert all(np.array_equal(a, b) for a, b in zip(got, same)), (quant, task)
        assert max(float(np.abs(a - b).max()) for a, b in zip(got, other)) <= 1e-5, (quant, task)
        last[task] = got[-1]
    assert np.abs(last[None] - last["nlg"]).max() > 1e-2


@pytest.mark.parametrize("cache", ["shared", "concat"])
@pytest.mark.parametrize("quant", ["fp32", "int8", "int4"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_greedy_tokens_equal_the_step_fn_path(mixed_bundles, arch, quant, cache):
    """Public API: generate_tokens (the bound loop) decodes what decoder.tokens gives on the step function, with
    and without a task, with EOS suppressed for a while and with EOS able to end the row."""
    rt = _mode(Runtime.load(mixed_bundles[arch](quant), threads=1), cache)
    for task in (None, "nlg", "dialogue"):
        t = rt.task(task)
        for opts in ({"max_new_tokens": 12, "min_new_tokens": 12}, {"max_new_tokens": 12, "min_new_tokens": 3}):
            cfg = rt.generation_config(task, **opts)
            eos = t.eos_token_id if t else rt.eos_token_id
            want = decoder.generate(rt.steps.step_fn(t, len(PROMPT) + 12), [PROMPT], cfg, eos)[0]
            assert rt.generate_tokens(PROMPT, task, **opts) == want, (arch, quant, task, opts)


class TracedRuns:
    """Wraps a session under tracemalloc. At each graph run: the numpy data blocks alive (count, bytes), and how
    far memory rose between the end of the previous run and this one (the decode loop's Python work; what ONNX
    Runtime allocates inside a run is left out)."""

    def __init__(self, session):
        self._s, self.live, self.rise, self._end = session, [], [], None

    def run_with_iobinding(self, io, *a):
        now, peak = tracemalloc.get_traced_memory()
        if self._end is not None:
            self.rise.append(peak - self._end)
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)])
        self.live.append((len(snap.traces), sum(t.size for t in snap.traces)))
        out = self._s.run_with_iobinding(io, *a)
        tracemalloc.reset_peak()
        self._end = tracemalloc.get_traced_memory()[0]
        return out


@pytest.mark.parametrize("cache", ["shared", "concat"])
def test_the_loop_makes_no_array_per_step(mixed_bundles, cache):
    """Greedy steps make no array: the numpy data alive at every run after the prefill is the same, and between
    runs memory rises by less than one logits row (4 KiB: what a copy of the row per step would take; the
    concat cache's per-run OrtValue handles, Python objects, stay below). The logits are the bound output."""
    rt = _mode(Runtime.load(mixed_bundles["llama"]("int4"), threads=1), cache)
    n = 32
    bound = rt.steps.bound_step(rt.task("nlg"), len(PROMPT) + n)
    row, bound._session = bound.row, TracedRuns(bound._session)
    tracemalloc.start()
    try:
        steps = sum(1 for _ in decoder.greedy_one(bound, PROMPT, GenerationConfig(n, min_new_tokens=n), None, None))
    finally:
        tracemalloc.stop()
    runs = bound._session
    assert steps == n and len(runs.live) == n  # the prefill and n - 1 steps (rise[0]: the prefill's tail too)
    assert len(set(runs.live[1:])) == 1 and max(runs.rise[1:]) < row.nbytes, (runs.live[:3], runs.rise)
    assert bound.row is row and np.shares_memory(row, bound.logits)
    assert bound.logits.ctypes.data == bound._logits.data_ptr()  # ORT writes into our buffer


def test_greedy_one_follows_tokens_on_a_toy_model():
    """decoder.greedy_one yields decoder.tokens' batch-1 tokens: EOS suppressed by min_new_tokens, then ending
    the row, a stop callback ending it early, ties broken to the lowest id."""
    v, eos = 7, 3
    table = np.random.default_rng(0).normal(size=(v, v)).astype(np.float32)
    table[:, 5] = table[:, 6] = table.max() + 1  # a tie: the lower id wins
    table[5, eos] = table[5, 5] + 1  # after token 5 EOS wins unless suppressed

    class Toy:
        def prefill(self, prompt):
            self.buf = table[prompt[-1]][None].copy()
            return self.buf

        def feed(self, token):
            self.buf[:] = table[token]
            return self.buf

    def step(ids, mask, past):
        return table[ids[:, -1]].copy(), []

    for cfg in (GenerationConfig(max_new_tokens=6, min_new_tokens=4), GenerationConfig(max_new_tokens=6)):
        want = [int(t[0]) for t in decoder.tokens(step, [[1, 2]], cfg, eos)]
        assert list(decoder.greedy_one(Toy(), [1, 2], cfg, eos, None)) == want
    six = GenerationConfig(max_new_tokens=6, min_new_tokens=6)
    assert list(decoder.greedy_one(Toy(), [1, 2], six, eos, None)) == [5] * 6
    seen = []
    assert list(decoder.greedy_one(Toy(), [1], six, eos, lambda: len(seen) == 2 or seen.append(1))) == [5] * 3


@pytest.mark.parametrize("cache", ["shared", "concat"])
def test_a_step_past_the_capacity_is_refused(mixed_bundles, cache):
    rt = _mode(Runtime.load(mixed_bundles["llama"]("fp32"), threads=1), cache)
    bound = rt.steps.bound_step(None, len(PROMPT) + 1)
    bound.prefill(PROMPT)
    bound.feed(7)
    with pytest.raises(RuntimeError, match=f"capacity {len(PROMPT) + 1}"):
        bound.feed(7)
