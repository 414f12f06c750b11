"""Every run of the bundle's graph, and every way a run gets its task's adapter (the twin of ``Steps.java``).

The bundle's single graph serves prefill and decode: on prefill the past
inputs have length 0; afterwards each run's ``present.*`` outputs are fed
back as the next run's ``past_key_values.*`` inputs. On the CPU, ONNX
Runtime's ``run`` hands outputs back as numpy arrays that *share* its
buffers and takes numpy inputs in place, so the cache is never copied in
Python; the graph itself writes past + new into a new present each run.

A task's adapter reaches the graph in one of three ways, all made here:

- :meth:`Steps.run_options`: ONNX Runtime's adapter API, the task's
  ``LoraAdapter`` active in the run's ``RunOptions`` (one task per run);
- :meth:`Steps.bound_inputs`: the adapter's tensors as OrtValues bound as
  graph inputs, for :class:`SharedCache` runs (IOBinding ignores
  ``RunOptions``' active adapters);
- :meth:`Steps.mixed_inputs`: the stacked adapters of several tasks plus
  ``adapter_columns`` placing each row on its task's columns
  (:mod:`edgevlm.runtime.mixing`), for batches whose rows have different tasks.

A graph whose manifest says ``kv_cache: shared`` (GroupQueryAttention) can
keep each layer's past and present in ONE buffer sized for the whole call
(:class:`SharedCache`): each run appends its keys/values in place.

One greedy row (batch 1) decodes on :meth:`Steps.bound_step` instead: its ids,
attention mask and logits are buffers made once per call and bound through
IOBinding (:class:`BoundStep` on the shared cache, :class:`BoundConcat`
otherwise), so a step makes no array and the argmax reads the logits in place.

A step function (:meth:`Steps.step_fn`) is bound to one task when it is made,
so a decode started under one task cannot be continued under another. Steps
keeps only caches of read-only adapter data (under a lock): thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from edgevlm.core import names
from edgevlm.core.adapterfile import read_parameters
from edgevlm.core.errors import BundleError
from edgevlm.runtime.decoder import StepFn
from edgevlm.runtime.mixing import Folded, Mix, fold
from edgevlm.runtime.session import Graph, Task

MIX_CACHE = 4  # task sets whose stacked adapters stay built (mixed batches)


class Steps:
    """Runs the graph of one session for any task; see the module docstring."""

    def __init__(self, session: ort.InferenceSession, graph: Graph, shared: bool, where: str):
        self.session, self.graph, self.where = session, graph, where
        self.past, self.present = names.past_names(graph.n_layer), names.present_names(graph.n_layer)
        self.outputs = [names.LOGITS] + self.present
        optional = {i.name for i in session.get_overridable_initializers()}
        keep = np.ones(1, np.int64)  # the LM head on the last position only (graphs without the option: all)
        self.options = {names.LOGITS_TO_KEEP: keep} if names.LOGITS_TO_KEEP in optional else {}
        self.shared = shared and bool(self.options)  # one cache buffer per layer (kv_cache: shared)
        self._lock = threading.Lock()
        self._bound: dict[Task, tuple[dict, dict]] = {}  # task -> (its adapter arrays, OrtValues on them)
        self._folds: dict[Task, Folded] = {}  # each task's adapter in mixed-batch form, made on first use
        self._mixes: dict[tuple[Task, ...], Mix] = {}  # stacked adapters of the last MIX_CACHE task sets

    # -- one run ------------------------------------------------------------------------------------------

    def run(
        self, ids: np.ndarray, mask: np.ndarray, past: Sequence, ro: ort.RunOptions, inputs: Mapping | None = None
    ) -> tuple[np.ndarray, list]:
        """One graph run. ids [b, s], mask [b, past + s], past: per layer [b, n_kv_head, T, head_dim];
        ``inputs``: extra graph inputs (mixed adapters) -> (last-position logits [b, V] float32, presents)"""
        feeds = {names.INPUT_IDS: ids, names.ATTENTION_MASK: mask, **dict(zip(self.past, past)), **self.options}
        out = self.session.run(self.outputs, {**feeds, **(inputs or {})}, ro)
        return np.array(out[0][:, -1], dtype=np.float32), out[1:]  # copy: a graph without the option gives [b, s, V]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Zero-length past key/values for a prefill: [batch, n_kv_head, 0, head_dim] float32 each."""
        g = self.graph
        return [np.zeros((batch, g.n_kv_head, 0, g.head_dim), np.float32)] * len(self.past)

    # -- how a run gets its task's adapter -----------------------------------------------------------------

    @staticmethod
    def run_options(task: Task | None) -> ort.RunOptions:
        """RunOptions with ``task``'s LoraAdapter active (none: the plain backbone)."""
        ro = ort.RunOptions()
        if task is not None:
            ro.add_active_adapter(task.adapter)
        return ro

    def bound_inputs(self, task: Task | None) -> dict[str, ort.OrtValue]:
        """``task``'s adapter tensors as OrtValues to bind (none for the plain backbone), read from its file once."""
        if task is None:
            return {}
        with self._lock:
            if task not in self._bound:
                arrays = read_parameters(task.file)  # the OrtValues do not own memory: the arrays stay with them
                self._bound[task] = arrays, {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in arrays.items()}
            return self._bound[task][1]

    def mix(self, tasks: tuple[Task, ...]) -> Mix:
        """The stacked adapters of ``tasks`` (fixed order), folded once per task and kept for a few task sets."""
        if not self.graph.mixed:
            raise BundleError(
                f"{self.where}: the graph has no {names.ADAPTER_COLUMNS} input (exported before mixed-task "
                "batches): re-export the bundle to run rows of different tasks together"
            )
        with self._lock:
            mix = self._mixes.pop(tasks, None)
            if mix is None:
                for t in tasks:
                    if t not in self._folds:
                        self._folds[t] = fold(read_parameters(t.file), self.graph.n_layer, self.graph.n_embd)
                mix = Mix([self._folds[t] for t in tasks], self.graph.n_embd)
            self._mixes[tasks] = mix  # most recent last
            while len(self._mixes) > MIX_CACHE:
                del self._mixes[next(iter(self._mixes))]
            return mix

    def forget(self, task: Task) -> None:
        """Drop what was built from ``task``'s adapter (the task was unloaded: Runtime.remove_task)."""
        with self._lock:
            self._bound.pop(task, None), self._folds.pop(task, None)
            self._mixes = {k: v for k, v in self._mixes.items() if task not in k}

    def mixed_inputs(self, row_tasks: Sequence[Task | None]) -> tuple[Mix, dict[str, np.ndarray]]:
        """The rows' tasks as extra graph inputs: stacked adapters and ``adapter_columns`` [b, C] placing each row
        on its own task's columns (None: the plain backbone). Task-token ids need :meth:`Mix.shift_ids`."""
        tasks = tuple(sorted({t for t in row_tasks if t is not None}, key=lambda t: t.name))
        mix = self.mix(tasks)
        where = [None if t is None else tasks.index(t) for t in row_tasks]
        return mix, {**mix.feeds, names.ADAPTER_COLUMNS: mix.columns(where), **mix.lora_feeds(where)}

    # -- step functions for edgevlm.runtime.decoder -----------------------------------------------------------

    def bound_step(self, task: Task | None, capacity: int) -> BoundStep | BoundConcat:
        """One greedy row reaching ``capacity`` positions under ``task``'s adapter, its inputs and logits bound in
        place: on the shared cache (:class:`BoundStep`) or feeding each run's presents back (:class:`BoundConcat`)."""
        inputs = self.bound_inputs(task)
        return BoundStep(self, capacity, inputs) if self.shared else BoundConcat(self, capacity, inputs)

    def step_fn(self, task: Task | None, capacity: int | None = None) -> StepFn:
        """The graph as a step function under ``task``'s adapter. With ``capacity`` (positions the call will
        reach) on a shared-cache graph, one that appends to a :class:`SharedCache` (beam search, which reorders
        its past, passes no capacity)."""
        if capacity is not None and self.shared:
            inputs = self.bound_inputs(task)

            def shared(ids: np.ndarray, mask: np.ndarray, past: SharedCache | None) -> tuple[np.ndarray, SharedCache]:
                cache = SharedCache(self, ids.shape[0], capacity, inputs) if past is None else past
                return cache.run(ids, mask), cache

            return shared
        ro = self.run_options(task)

        def step(ids: np.ndarray, mask: np.ndarray, past: list | None) -> tuple[np.ndarray, list]:
            return self.run(ids, mask, self.empty_past(ids.shape[0]) if past is None else past, ro)

        return step


class SharedCache:
    """One call's cache as one buffer per past/present pair, [b, n_kv_head, capacity, head_dim], bound as both
    the graph's past input and its present output; the graph reads the run's length from ``attention_mask``.
    Logits go to one preallocated [b, 1, V] buffer (``logits_to_keep`` = 1)."""

    def __init__(self, steps: Steps, batch: int, capacity: int, inputs: Mapping[str, ort.OrtValue]):
        g = steps.graph
        shape = (batch, g.n_kv_head, capacity, g.head_dim)
        self.capacity, self._session, self._io = capacity, steps.session, steps.session.io_binding()
        self._buffers = [ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32) for _ in steps.past]
        self.logits = np.empty((batch, 1, g.vocab_size), np.float32)  # [b, 1, V]: every run writes it in place
        self._logits = ort.OrtValue.ortvalue_from_numpy(self.logits)  # does not own memory: self.logits does
        self._io.bind_ortvalue_output(names.LOGITS, self._logits)
        for past, present, buf in zip(steps.past, steps.present, self._buffers):
            self._io.bind_ortvalue_input(past, buf)
            self._io.bind_ortvalue_output(present, buf)
        keep = steps.options.get(names.LOGITS_TO_KEEP)
        if keep is None:
            raise RuntimeError("a shared cache needs a graph with the logits_to_keep option")
        self._keep = ort.OrtValue.ortvalue_from_numpy(keep)  # (bind_cpu_input refuses an overridable initializer)
        self._io.bind_ortvalue_input(names.LOGITS_TO_KEEP, self._keep)
        for name, value in inputs.items():
            self._io.bind_ortvalue_input(name, value)

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One graph run appending to the cache. ids [b, s], mask [b, past + s] -> last-position logits [b, V]"""
        self._run(ids, mask)
        return self.logits[:, -1].copy()  # the caller may keep it past the next run

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> None:
        if mask.shape[1] > self.capacity:
            raise RuntimeError(f"a run of {mask.shape[1]} positions is past the cache's capacity {self.capacity}")
        self._io.bind_cpu_input(names.INPUT_IDS, ids)
        self._io.bind_cpu_input(names.ATTENTION_MASK, mask)
        self._session.run_with_iobinding(self._io)


class BoundStep(SharedCache):
    """Greedy batch-1 decoding on a :class:`SharedCache` with every per-step input preallocated and bound in
    place, so a step allocates no array: ids [1, 1] (bound once, rewritten per token), the attention mask
    [1, capacity] of ones (one row has no padding; rebound per step as its first ``length`` columns) and the
    logits [1, V], a view of the bound output that every run rewrites (read it before the next run)."""

    def __init__(self, steps: Steps, capacity: int, inputs: Mapping[str, ort.OrtValue]):
        super().__init__(steps, 1, capacity, inputs)
        self._ids = np.zeros((1, 1), np.int64)  # [1, 1]: the token fed by the next step
        self._ids_value = ort.OrtValue.ortvalue_from_numpy(self._ids)  # does not own memory: self._ids does
        self._mask = np.ones((1, capacity), np.int64)  # [1, capacity]
        self._mask_at = self._mask.ctypes.data
        self.row = self.logits[:, -1]  # [1, V] view of the bound output
        self.length = 0  # positions in the cache

    def prefill(self, prompt: Sequence[int]) -> np.ndarray:
        """Run the prompt (ids: one array, once); its last-position logits [1, V] (:attr:`row`)."""
        self.length = len(prompt)
        self._run(np.array([prompt], np.int64), self._mask[:, : self.length])
        self._io.bind_ortvalue_input(names.INPUT_IDS, self._ids_value)  # every later run reads self._ids
        return self.row

    def feed(self, token: int) -> np.ndarray:
        """Append ``token``; its logits [1, V] (:attr:`row`, rewritten in place)."""
        _advance(self, token)
        self._io.bind_input(names.ATTENTION_MASK, "cpu", 0, np.int64, (1, self.length), self._mask_at)
        self._session.run_with_iobinding(self._io)
        return self.row


def _advance(bound: BoundStep | BoundConcat, token: int) -> None:
    """A bound row's next position: ``token`` into its bound ids [1, 1]; refused past its capacity."""
    if bound.length >= bound.capacity:
        raise RuntimeError(f"a run of {bound.length + 1} positions is past the cache's capacity {bound.capacity}")
    bound._ids[0, 0] = token
    bound.length += 1


class BoundConcat:
    """:class:`BoundStep` for a graph without the shared cache (``kv_cache: concat``, or no ``logits_to_keep``):
    the same bound ids / mask / logits buffers, through IOBinding; each run's presents (allocated by ONNX
    Runtime: past + new) are bound as the next run's past, so the cache never passes through numpy."""

    def __init__(self, steps: Steps, capacity: int, inputs: Mapping[str, ort.OrtValue]):
        g = steps.graph
        self.capacity, self._steps, self._session, self._io = capacity, steps, steps.session, steps.session.io_binding()
        self._ids = np.zeros((1, 1), np.int64)  # [1, 1]: the token fed by the next step
        self._ids_value = ort.OrtValue.ortvalue_from_numpy(self._ids)  # does not own memory: self._ids does
        self._mask = np.ones((1, capacity), np.int64)  # [1, capacity]
        self.logits = np.empty((1, 1, g.vocab_size), np.float32)  # [1, 1, V]: decode runs write it in place
        self._logits = ort.OrtValue.ortvalue_from_numpy(self.logits)
        self.row, self.length = self.logits[:, -1], 0  # [1, V] view of the bound output; positions in the cache
        self._io.bind_output(names.LOGITS, "cpu")  # first output (the prefill's [1, s, V] without the option)
        self._empty = np.zeros((1, g.n_kv_head, 0, g.head_dim), np.float32)  # the prefill's past, every layer
        empty = ort.OrtValue.ortvalue_from_numpy(self._empty)
        for past in steps.past:
            self._io.bind_ortvalue_input(past, empty)
        self._keep = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in steps.options.items()}
        for name, value in {**self._keep, **inputs}.items():
            self._io.bind_ortvalue_input(name, value)

    def prefill(self, prompt: Sequence[int]) -> np.ndarray:
        """Run the prompt (ids: one array, once); its last-position logits [1, V] (:attr:`row`)."""
        self.length = len(prompt)
        self._io.bind_cpu_input(names.INPUT_IDS, np.array([prompt], np.int64))
        self.row[:] = self._run().numpy()[:, -1]  # [1, V] of [1, kept, V]: once per call
        self._io.bind_ortvalue_output(names.LOGITS, self._logits)  # decode runs write [1, 1, V] in place
        self._io.bind_ortvalue_input(names.INPUT_IDS, self._ids_value)  # every later run reads self._ids
        return self.row

    def feed(self, token: int) -> np.ndarray:
        """Append ``token``; its logits [1, V] (:attr:`row`, rewritten in place)."""
        _advance(self, token)
        self._run()
        return self.row

    def _run(self) -> ort.OrtValue:
        """One run over the first ``length`` mask columns; its presents become the next run's past."""
        self._io.bind_input(names.ATTENTION_MASK, "cpu", 0, np.int64, (1, self.length), self._mask.ctypes.data)
        for present in self._steps.present:
            self._io.bind_output(present, "cpu")  # a fresh output: ORT allocates past + new
        self._session.run_with_iobinding(self._io)
        out = self._io.get_outputs()  # [logits] + presents, in binding order
        for past, value in zip(self._steps.past, out[1:]):
            self._io.bind_ortvalue_input(past, value)
        return out[0]
