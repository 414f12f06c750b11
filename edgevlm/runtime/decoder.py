"""The bundle's graph as a step function for :mod:`edgevlm.runtime.decoding`.

The bundle's single graph serves prefill and decode: on prefill the past
inputs have length 0; afterwards each run's ``present.*`` outputs are fed
back as the next run's ``past_key_values.*`` inputs. On the CPU, ONNX
Runtime's ``run`` hands outputs back as numpy arrays that *share* its
buffers and takes numpy inputs in place, so the cache is never copied in
Python (this plain path was as fast as IOBinding in the benchmarks).

A step function is bound to one task's ``RunOptions`` (which select the
task's adapter) when it is made, so a decode started under one task cannot
be continued under another; it keeps no other state (thread-safe).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edgevlm.core import names
from edgevlm.runtime.decoding import StepFn


class Decoder:
    """Runs the bundle's graph of one session; :meth:`step_fn` binds it to a task's run options."""

    def __init__(self, session: ort.InferenceSession, n_layer: int, n_kv_head: int, head_dim: int):
        self.session = session
        self.n_kv_head, self.head_dim = n_kv_head, head_dim  # the cache's heads (fewer than the query's with GQA)
        self.past = names.past_names(n_layer)
        self.outputs = [names.LOGITS] + names.present_names(n_layer)
        optional = {i.name for i in session.get_overridable_initializers()}
        keep = np.ones(1, np.int64)  # the LM head on the last position only (graphs without the option: all)
        self.options = {names.LOGITS_TO_KEEP: keep} if names.LOGITS_TO_KEEP in optional else {}

    def _run(self, ids: np.ndarray, mask: np.ndarray, past: list, ro: ort.RunOptions) -> tuple[np.ndarray, list]:
        """One graph run. ids [b, s], mask [b, past + s] -> (last-position logits [b, V], presents)"""
        feeds = {names.INPUT_IDS: ids, names.ATTENTION_MASK: mask, **dict(zip(self.past, past)), **self.options}
        out = self.session.run(self.outputs, feeds, ro)
        return np.array(out[0][:, -1], dtype=np.float32), out[1:]  # copy: a graph without the option gives [b, s, V]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Zero-length past key/values for a prefill: [batch, n_kv_head, 0, head_dim] float32 each."""
        return [np.zeros((batch, self.n_kv_head, 0, self.head_dim), np.float32)] * len(self.past)

    def step_fn(self, run_options: ort.RunOptions) -> StepFn:
        """A step function running the graph under ``run_options`` (past: presents in graph order)."""

        def step(ids: np.ndarray, mask: np.ndarray, past: list | None) -> tuple[np.ndarray, list]:
            return self._run(ids, mask, self.empty_past(ids.shape[0]) if past is None else past, run_options)

        return step
