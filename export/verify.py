"""Run an exported graph with ONNX Runtime and compare it with the PyTorch VLM (export-time self-check and tests)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgevlm.core import graphio, names, onnxproto
from edgevlm.runtime import decoder as decoding


def session(model, threads: int | None = None, low_memory: bool = False):
    """A CPU InferenceSession from a path or ModelProto (ORT's initializer-as-input warnings silenced).

    ``low_memory`` skips weight pre-packing (no second copy of the weights; slower matmuls).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if low_memory:
        so.add_session_config_entry("session.disable_prepacking", "1")
    if threads:
        so.intra_op_num_threads = threads
    if isinstance(model, (str, Path)):
        onnxproto.check_external_data(Path(model))  # the runtime's check: data files stay beside the graph
    src = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def empty_past(cfg, batch: int = 1) -> list[np.ndarray]:
    """Zero-length past key/values for the prefill, shaped as the declared graph IO says. ``cfg``: the sizes
    (a manifest's backbone record or a mapping with n_layer, n_head, n_embd, vocab_size[, n_kv_head, head_dim])."""
    return [np.zeros(s.shape(batch=batch, past_sequence=0), np.float32) for s in graphio.decoder_io_of(cfg).past]


def feeds(
    ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray], adapter: Mapping[str, np.ndarray] | None = None
) -> dict:
    """Graph feeds: ids/mask [b, s]/[b, T], past in names.past_names order, optionally explicit adapter tensors."""
    f = {names.INPUT_IDS: ids.astype(np.int64), names.ATTENTION_MASK: mask.astype(np.int64)}
    f.update(zip(names.past_names(len(past) // 2), past))
    f.update(adapter or {})
    return f


def step(sess, ids, mask, past, adapter=None, run_options=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """One graph run: (logits [b, s, V], present key/values)."""
    out = sess.run(None, feeds(np.asarray(ids), np.asarray(mask), past, adapter), run_options)
    return out[0], out[1:]


def step_fn(sess, cfg: Mapping, adapter=None, run_options=None, cache: bool = True) -> decoding.StepFn:
    """``sess`` as a step function for :mod:`edgevlm.runtime.decoder` (adapter by tensors or run options).

    Without ``cache`` its "past" is the ids so far and every step re-runs the whole sequence from an empty
    cache: the reference that cached decoding must equal.
    """

    def cached(ids, mask, past):
        logits, present = step(
            sess, ids, mask, empty_past(cfg, len(ids)) if past is None else past, adapter, run_options
        )
        return logits[:, -1], present

    def rerun(ids, mask, past):
        seen = ids if past is None else np.concatenate([past[0], ids], 1)  # [b, T]
        logits, _ = step(sess, seen, mask, empty_past(cfg, len(ids)), adapter, run_options)
        return logits[:, -1], [seen]

    return cached if cache else rerun


def greedy(
    sess, cfg: Mapping, prompt: list[int], n_new: int, adapter=None, run_options=None, cache: bool = True
) -> list[int]:
    """Greedy continuation of ``prompt`` (``n_new`` tokens, no EOS stop) by the runtime's decoder; without
    ``cache`` the prefix is re-run each step."""
    return decoding.greedy(step_fn(sess, cfg, adapter, run_options, cache), [prompt], n_new, None)[0]


def torch_vs_graph(
    sess, vlm, cfg: Mapping, prompt: list[int], task: str | None, adapter=None, n_decode: int = 3
) -> float:
    """Max |logit difference| between the graph and the VLM on the prefill and ``n_decode`` cached greedy steps."""
    import torch

    ids = torch.tensor([prompt])
    worst = 0.0
    with torch.no_grad():
        ref, cache = vlm(ids, task=task)
        logits, past = step(sess, ids.numpy(), np.ones(ids.shape), empty_past(cfg), adapter)
        for k in range(n_decode + 1):
            diff = float(np.abs(logits - ref.numpy()).max())
            if worst == worst and not diff <= worst:  # once NaN, stays NaN (max() would drop it)
                worst = diff
            if k == n_decode:
                break
            nxt = torch.tensor([[int(ref[0, -1].argmax())]])
            total = len(prompt) + k + 1
            ref, cache = vlm(nxt, task=task, past_key_values=cache)
            logits, past = step(sess, nxt.numpy(), np.ones((1, total)), past, adapter)
    return worst
