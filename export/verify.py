"""Run an exported graph with ONNX Runtime and compare it with the PyTorch VLM (export-time self-check and tests)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgevlm.core import graphio, names


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
    src = model if isinstance(model, str) else (str(model) if hasattr(model, "is_file") else model.SerializeToString())
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


def greedy(
    sess, cfg: Mapping, prompt: list[int], n_new: int, adapter=None, run_options=None, cache: bool = True
) -> list[int]:
    """Greedy continuation of ``prompt`` (``n_new`` tokens, no EOS stop); without ``cache`` the prefix is re-run each step."""
    ids = list(prompt)
    logits, past = step(sess, [ids], np.ones((1, len(ids))), empty_past(cfg), adapter, run_options)
    out = []
    for _ in range(n_new):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        ids.append(nxt)
        if cache:
            logits, past = step(sess, [[nxt]], np.ones((1, len(ids))), past, adapter, run_options)
        else:
            logits, _ = step(sess, [ids], np.ones((1, len(ids))), empty_past(cfg), adapter, run_options)
    return out


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
            worst = max(worst, float(np.abs(logits - ref.numpy()).max()))
            if k == n_decode:
                break
            nxt = torch.tensor([[int(ref[0, -1].argmax())]])
            total = len(prompt) + k + 1
            ref, cache = vlm(nxt, task=task, past_key_values=cache)
            logits, past = step(sess, nxt.numpy(), np.ones((1, total)), past, adapter)
    return worst
