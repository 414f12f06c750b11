"""Several tasks in one graph run: each row of a batch under its own task's adapter (numpy).

The graph's adapter after layer ``i`` is ``h + up(relu(down(LN(h))) * columns)``
(:mod:`edgevlm.core.names`). For a mixed batch the runtime feeds the batch's
tasks side by side along the bottleneck:

- each task's LayerNorm affine is folded into its down projection
  (``LN_w,b(h) @ Wd + bd = LN(h) @ (w * Wd) + (b @ Wd + bd)``, folded in
  float64), so the graph's own LayerNorm runs with ones and zeros;
- each task's up bias becomes one more column (down weight 0, down bias 1:
  relu gives 1, times the bias row of ``up``), so the graph's up bias is zero;
- ``adapter_columns`` [batch, columns] is 1 on the row's task's columns and
  0 elsewhere, so a row only ever reads its own task (a plain-backbone row
  has no columns: its adapter adds exactly 0);
- the task-embedding tables are stacked; a row's task-token ids are shifted
  by its table's offset;
- LoRA tasks (graphs exported with ``--lora``) have no bottleneck columns and no
  task tokens; their A/B inputs get one slice per row instead
  (``[batch, in, R]``, ``[batch, R, out]``, R the batch's largest rank, each
  row its task's A/B zero-padded, zeros for a row of another method or none):
  ``x @ A`` is a batched MatMul, so a row reads only its own LoRA.

Every backbone weight is read once per step for all rows; each distinct
task's adapter once as well (not once per row). Folding changes the last
bits of the adapter's arithmetic against the single-task path
(``LoraAdapter``), like any change of kernel shape; greedy outputs agree
(measured in ``tests/test_mixed_batches.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevlm.core import names


@dataclass(frozen=True)
class Folded:
    """One task's adapter in mixed-batch form: per layer down [E, B+1], down bias [B+1], up [B+1, E]."""

    down: tuple[np.ndarray, ...]
    down_bias: tuple[np.ndarray, ...]
    up: tuple[np.ndarray, ...]
    embeddings: np.ndarray  # [T, E]
    lora: dict[str, np.ndarray] | None = None  # a LoRA task's inputs [1, in, R] / [1, R, out] (no columns)

    @property
    def columns(self) -> int:
        return int(self.down_bias[0].shape[0])


def fold(tensors: dict[str, np.ndarray], n_layer: int, n_embd: int = 0) -> Folded:
    """A task's adapter tensors (graph layout) in mixed-batch form (module docstring); a LoRA task's file
    (only LoRA inputs) gives zero bottleneck columns, no task tokens and its LoRA tensors."""
    lora = {k: v for k, v in tensors.items() if names.is_lora(k)}
    if lora:  # per layer: down [E, 0], down bias [0], up [0, E]; task embeddings [0, E]
        none = [tuple(np.zeros(s, np.float32) for _ in range(n_layer)) for s in ((n_embd, 0), (0,), (0, n_embd))]
        return Folded(*none, np.zeros((0, n_embd), np.float32), lora)
    down, down_bias, up = [], [], []
    for i in range(n_layer):
        t = {p: tensors[names.adapter_name(i, p)].astype(np.float64) for p in names.ADAPTER_PARTS}
        wd = t["ln.weight"][:, None] * t["down.weight"]  # [E, B]
        down.append(np.concatenate([wd, np.zeros((wd.shape[0], 1))], 1).astype(np.float32))
        down_bias.append(np.append(t["ln.bias"] @ t["down.weight"] + t["down.bias"], 1.0).astype(np.float32))
        up.append(np.concatenate([t["up.weight"], t["up.bias"][None]], 0).astype(np.float32))
    return Folded(tuple(down), tuple(down_bias), tuple(up), tensors[names.TASK_EMBEDDINGS].astype(np.float32))


class Mix:
    """The adapter feeds for one set of tasks (fixed order); :meth:`rows` places rows on them."""

    def __init__(self, folded: list[Folded], n_embd: int):
        self.folded = folded
        n_layer = len(folded[0].down) if folded else 0
        self.starts = np.cumsum([0] + [f.columns for f in folded]).tolist()  # column range of task k
        tables = [f.embeddings for f in folded]
        self.offsets = np.cumsum([0] + [len(t) for t in tables]).tolist()  # task-token id shift of task k
        self.feeds = self._feeds(n_layer, n_embd, tables)

    def _feeds(self, n_layer: int, n_embd: int, tables: list[np.ndarray]) -> dict[str, np.ndarray]:
        width = max(self.starts[-1], 1)  # no task at all: one dead column
        feeds: dict[str, np.ndarray] = {}
        live = self.starts[-1] > 0  # some task has bottleneck columns
        for i in range(n_layer):
            cat = lambda parts, axis, shape: (  # noqa: E731
                np.concatenate(parts, axis) if parts and live else np.zeros(shape, np.float32)
            )
            feeds[names.adapter_name(i, "ln.weight")] = np.ones(n_embd, np.float32)
            feeds[names.adapter_name(i, "ln.bias")] = np.zeros(n_embd, np.float32)
            feeds[names.adapter_name(i, "down.weight")] = cat([f.down[i] for f in self.folded], 1, (n_embd, width))
            feeds[names.adapter_name(i, "down.bias")] = cat([f.down_bias[i] for f in self.folded], 0, (width,))
            feeds[names.adapter_name(i, "up.weight")] = cat([f.up[i] for f in self.folded], 0, (width, n_embd))
            feeds[names.adapter_name(i, "up.bias")] = np.zeros(n_embd, np.float32)
        table = np.concatenate(tables, 0) if sum(len(t) for t in tables) else np.zeros((1, n_embd), np.float32)
        feeds[names.TASK_EMBEDDINGS] = np.ascontiguousarray(table)
        return feeds

    def columns(self, row_tasks: list[int | None]) -> np.ndarray:
        """``adapter_columns`` for rows whose task is index k of this mix (None: the plain backbone). [b, C]"""
        out = np.zeros((len(row_tasks), max(self.starts[-1], 1)), np.float32)
        for r, k in enumerate(row_tasks):
            if k is not None:
                out[r, self.starts[k] : self.starts[k + 1]] = 1.0
        return out

    def lora_feeds(self, row_tasks: list[int | None]) -> dict[str, np.ndarray]:
        """Each row's LoRA A/B (module docstring) when some task of this mix is a LoRA, else nothing (the
        graph's defaults). A [b, in, R], B [b, R, out]"""
        loras = [f.lora for f in self.folded if f.lora]
        if not loras:
            return {}
        out = {}
        for name, ref in loras[0].items():
            is_a = name.endswith(".A")
            rank = max(t[name].shape[2 if is_a else 1] for t in loras)  # this projection's largest rank
            shape = (len(row_tasks), ref.shape[1], rank) if is_a else (len(row_tasks), rank, ref.shape[2])
            out[name] = np.zeros(shape, np.float32)
            for r, k in enumerate(row_tasks):
                t = self.folded[k].lora if k is not None else None
                if t:
                    v = t[name][0]
                    if is_a:
                        out[name][r, :, : v.shape[1]] = v
                    else:
                        out[name][r, : v.shape[0]] = v
        return out

    def shift_ids(self, ids: np.ndarray, row_tasks: list[int | None], vocab: int) -> np.ndarray:
        """Task-token ids (>= ``vocab``) of each row moved to its task's rows of the stacked table. [b, s]"""
        shift = np.array([0 if k is None else self.offsets[k] for k in row_tasks], np.int64)[:, None]
        return np.where(ids >= vocab, ids + shift, ids)
