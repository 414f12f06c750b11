"""The bundle's graph as a step function for :mod:`edgevlm.runtime.decoding`.

The bundle's single graph serves prefill and decode: on prefill the past
inputs have length 0; afterwards each run's ``present.*`` outputs are fed
back as the next run's ``past_key_values.*`` inputs. On the CPU, ONNX
Runtime's ``run`` hands outputs back as numpy arrays that *share* its
buffers and takes numpy inputs in place, so the cache is never copied in
Python; the graph itself still writes past + new into a new present each run.

A graph whose manifest says ``kv_cache: shared`` (GroupQueryAttention) can
instead keep each layer's past and present in ONE buffer sized for the whole
call (:class:`SharedCache`): each run appends its keys/values in place and
reads the cache once, nothing is copied. That path runs through IOBinding,
which ignores ``RunOptions``' active adapters, so the task's adapter tensors
are bound as inputs instead.

A step function is bound to one task (its ``RunOptions`` or its bound adapter
inputs) when it is made, so a decode started under one task cannot be
continued under another; it keeps no state between calls (thread-safe).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

from edgevlm.core import names
from edgevlm.runtime.decoding import StepFn


class Decoder:
    """Runs the bundle's graph of one session; :meth:`step_fn` binds it to a task's run options."""

    def __init__(self, session: ort.InferenceSession, n_layer: int, n_kv_head: int, head_dim: int):
        self.session = session
        self.n_kv_head, self.head_dim = n_kv_head, head_dim  # the cache's heads (fewer than the query's with GQA)
        self.past, self.present = names.past_names(n_layer), names.present_names(n_layer)
        self.outputs = [names.LOGITS] + self.present
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

    def shared_step_fn(self, inputs: Mapping[str, ort.OrtValue], capacity: int) -> StepFn:
        """A step function on a :class:`SharedCache` of ``capacity`` positions made at prefill (its "past"),
        with ``inputs`` (a task's adapter tensors; empty: the plain backbone) bound for every run. Only for
        graphs whose manifest says ``kv_cache: shared``; beam search (which reorders the past) uses :meth:`step_fn`."""

        def step(ids: np.ndarray, mask: np.ndarray, past: SharedCache | None) -> tuple[np.ndarray, SharedCache]:
            cache = SharedCache(self, ids.shape[0], capacity, inputs) if past is None else past
            return cache.run(ids, mask), cache

        return step


class SharedCache:
    """One call's cache as one buffer per past/present pair, [b, n_kv_head, capacity, head_dim], bound as both
    the graph's past input and its present output; the graph reads the run's length from ``attention_mask``.
    Logits go to one preallocated [b, 1, V] buffer (``logits_to_keep`` = 1)."""

    def __init__(self, dec: Decoder, batch: int, capacity: int, inputs: Mapping[str, ort.OrtValue]):
        shape = (batch, dec.n_kv_head, capacity, dec.head_dim)
        self.capacity, self._session, self._io = capacity, dec.session, dec.session.io_binding()
        self._buffers = [ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32) for _ in dec.past]
        vocab = dec.session.get_outputs()[0].shape[-1]
        self._logits = ort.OrtValue.ortvalue_from_shape_and_type((batch, 1, vocab), np.float32)
        self._io.bind_ortvalue_output(names.LOGITS, self._logits)
        for past, present, buf in zip(dec.past, dec.present, self._buffers):
            self._io.bind_ortvalue_input(past, buf)
            self._io.bind_ortvalue_output(present, buf)
        keep = dec.options.get(names.LOGITS_TO_KEEP)
        if keep is None:
            raise RuntimeError("a shared cache needs a graph with the logits_to_keep option")
        self._keep = ort.OrtValue.ortvalue_from_numpy(keep)  # (bind_cpu_input refuses an overridable initializer)
        self._io.bind_ortvalue_input(names.LOGITS_TO_KEEP, self._keep)
        for name, value in inputs.items():
            self._io.bind_ortvalue_input(name, value)

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One graph run appending to the cache. ids [b, s], mask [b, past + s] -> last-position logits [b, V]"""
        if mask.shape[1] > self.capacity:
            raise RuntimeError(f"a run of {mask.shape[1]} positions is past the cache's capacity {self.capacity}")
        self._io.bind_cpu_input(names.INPUT_IDS, ids)
        self._io.bind_cpu_input(names.ATTENTION_MASK, mask)
        self._session.run_with_iobinding(self._io)
        return self._logits.numpy()[:, -1].copy()
