"""Graph options (optional non-adapter inputs): ``logits_to_keep`` runs the LM head on the last positions only."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgevlm.core import graphio, names
from edgevlm.core.bundle import BACKBONE_FILE
from edgevlm.core.errors import BundleError
from edgevlm.runtime import Runtime


def _feeds(rt: Runtime, ids: np.ndarray) -> dict:
    g = rt.graph
    past = np.zeros((ids.shape[0], g.n_kv_head, 0, g.head_dim), np.float32)
    return {names.INPUT_IDS: ids, names.ATTENTION_MASK: np.ones_like(ids), **dict.fromkeys(rt.steps.past, past)}


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_logits_to_keep_is_the_tail_of_the_full_logits(tiny_bundle, quant):
    rt = Runtime.load(tiny_bundle(quant), threads=1)
    sess = ort.InferenceSession(str(tiny_bundle(quant) / BACKBONE_FILE), providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(0, rt.graph.vocab_size, (2, 9), dtype=np.int64)
    (full,) = sess.run([names.LOGITS], _feeds(rt, ids))  # the default: every position (evaluation, verification)
    assert full.shape == (2, 9, rt.graph.vocab_size)
    for k in (1, 3, 9):
        (kept,) = sess.run([names.LOGITS], {**_feeds(rt, ids), names.LOGITS_TO_KEEP: np.array([k], np.int64)})
        assert kept.shape == (2, k, rt.graph.vocab_size)
        np.testing.assert_allclose(kept, full[:, -k:], rtol=1e-5, atol=1e-5)


def test_runtime_feeds_one_position(tiny_bundle):
    rt = Runtime.load(tiny_bundle("fp32"), threads=1)
    assert rt.steps.options[names.LOGITS_TO_KEEP].tolist() == [1]
    ids = np.arange(5, dtype=np.int64)[None]
    logits, _ = rt.steps.step_fn(None)(ids, np.ones_like(ids), None)
    sess = ort.InferenceSession(str(tiny_bundle("fp32") / BACKBONE_FILE), providers=["CPUExecutionProvider"])
    (full,) = sess.run([names.LOGITS], _feeds(rt, ids))
    np.testing.assert_allclose(logits, full[:, -1], rtol=1e-5, atol=1e-5)


def test_option_with_a_wrong_type_is_refused():
    io = graphio.decoder_io(n_layer=1, n_kv_head=2, head_dim=4, n_embd=8, vocab_size=10)
    ins = {s.name: (s.dtype, list(s.dims)) for s in io.inputs}
    opt = {s.name: (s.dtype, list(s.dims)) for s in io.adapter_inputs}
    outs = {s.name: (s.dtype, list(s.dims)) for s in io.outputs}
    graphio.check_graph_io(io, ins, opt, outs, "g")  # without the option: an older graph, accepted
    graphio.check_graph_io(io, ins, {**opt, names.LOGITS_TO_KEEP: ("int64", [1])}, outs, "g")
    with pytest.raises(BundleError, match="logits_to_keep is declared float32"):
        graphio.check_graph_io(io, ins, {**opt, names.LOGITS_TO_KEEP: ("float32", [1])}, outs, "g")
