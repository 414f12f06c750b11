"""Tensor names shared by trainer, exporter and runtime (stdlib only).

Every graph input/output and every adapter parameter is named here and
nowhere else. Adapter tensors use the *graph* layout (``x @ W``), so an
``adapter.safetensors`` file maps 1:1 onto ONNX Runtime adapter parameters.

Per layer ``i`` the residual adapter is ``h + (relu(LN(h) @ Wd + bd)) @ Wu + bu``:

=============================  ==================  =========
name                           shape               identity
=============================  ==================  =========
``adapter.{i}.ln.weight``      [n_embd]            ones
``adapter.{i}.ln.bias``        [n_embd]            zeros
``adapter.{i}.down.weight``    [n_embd, B]         zeros
``adapter.{i}.down.bias``      [B]                 zeros
``adapter.{i}.up.weight``      [B, n_embd]         zeros
``adapter.{i}.up.bias``        [n_embd]            zeros
``task_embeddings``            [T, n_embd]         zeros
=============================  ==================  =========

``B`` (bottleneck) and ``T`` (number of task tokens) are symbolic in the
graph; the "no task" default uses ``B = T = 1``. Task tokens are
task-local ids ``vocab_size + k`` for the task's k-th special token.

Mixed-task batches (one task per row, one forward pass): the runtime feeds
the tasks' adapters side by side along the bottleneck (each task's LayerNorm
affine folded into its down projection, its up bias as one extra column) and
``adapter_columns`` [batch, bottleneck] says which columns are each row's
(1) and which are not (0); the ReLU output is multiplied by it, so every row
sees only its own task's columns. Its default (ones, [1, 1]) leaves the
single-task path unchanged. Task tokens of the k-th table of the concatenated
``task_embeddings`` are shifted by that table's offset.
"""

from __future__ import annotations

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
LOGITS = "logits"
LOGITS_TO_KEEP = "logits_to_keep"  # optional graph input [1]: logits of the last k positions (default 0: all)
TASK_EMBEDDINGS = "task_embeddings"
ADAPTER_COLUMNS = "adapter_columns"  # [batch, bottleneck] float32: 1 = this row's task column (mixed batches)

BATCH_DIM = "batch"
SEQ_DIM = "sequence"
PAST_DIM = "past_sequence"
TOTAL_DIM = "total_sequence"
KEPT_DIM = "kept_sequence"  # logits' positions: the last logits_to_keep of sequence (all by default)
BOTTLENECK_DIM = "bottleneck"
TASK_TOKENS_DIM = "task_tokens"
COLUMN_ROWS_DIM = "column_rows"  # adapter_columns: batch rows, or 1 (broadcast) for the single-task default
COLUMNS_DIM = "columns"  # adapter_columns: the concatenated bottleneck

ADAPTER_PARTS = ("ln.weight", "ln.bias", "down.weight", "down.bias", "up.weight", "up.bias")


def past_key(i: int) -> str:
    return f"past_key_values.{i}.key"


def past_value(i: int) -> str:
    return f"past_key_values.{i}.value"


def present_key(i: int) -> str:
    return f"present.{i}.key"


def present_value(i: int) -> str:
    return f"present.{i}.value"


def adapter_name(i: int, part: str) -> str:
    if part not in ADAPTER_PARTS:
        raise ValueError(f"unknown adapter part {part!r}; expected one of {ADAPTER_PARTS}")
    return f"adapter.{i}.{part}"


def past_names(n_layer: int) -> list[str]:
    """Past key/value input names in graph order: key0, value0, key1, ..."""
    return [n for i in range(n_layer) for n in (past_key(i), past_value(i))]


def present_names(n_layer: int) -> list[str]:
    return [n for i in range(n_layer) for n in (present_key(i), present_value(i))]


def adapter_names(n_layer: int) -> list[str]:
    """All swappable adapter input names (per-layer adapters, then task embeddings)."""
    return [adapter_name(i, p) for i in range(n_layer) for p in ADAPTER_PARTS] + [TASK_EMBEDDINGS]


def adapter_shape(name: str, n_embd: int, bottleneck: int, n_task_tokens: int) -> tuple[int, ...]:
    """Concrete shape of adapter tensor ``name`` for given sizes."""
    if name == TASK_EMBEDDINGS:
        return (n_task_tokens, n_embd)
    part = name.split(".", 2)[2]
    return {
        "ln.weight": (n_embd,),
        "ln.bias": (n_embd,),
        "down.weight": (n_embd, bottleneck),
        "down.bias": (bottleneck,),
        "up.weight": (bottleneck, n_embd),
        "up.bias": (n_embd,),
    }[part]


def symbolic_adapter_shape(name: str, n_embd: int) -> list:
    """Graph-declared shape: ints for fixed dims, strings for symbolic ones."""
    return list(adapter_shape(name, n_embd, BOTTLENECK_DIM, TASK_TOKENS_DIM))  # type: ignore[arg-type]


def identity_value(name: str) -> float:
    """Fill value of the identity ("no task") default for ``name``."""
    return 1.0 if name.endswith("ln.weight") else 0.0


# LoRA tasks (peft adapters): per targeted graph projection ``p`` (its weight's name without ``.weight``,
# e.g. ``model.layers.0.self_attn.qkv_proj``) the graph adds ``x @ A @ B`` to the projection's output,
# A = ``lora.{p}.A`` [lora_rows, in, lora_rank.{p}], B = ``lora.{p}.B`` [lora_rows, lora_rank.{p}, out]: each
# projection has its own rank (a task's file: rank-1 zeros where it targets nothing); peft's scaling is folded
# into B; a packed projection such as q/k/v gets its parts' ranks side by side, B block-diagonal.
# ``lora_rows`` is 1 for one task (broadcast over the batch) or the batch in a mixed run (each row its own
# task's A/B, zero-padded to the largest rank). Identity default: zeros [1, in, 1] / [1, 1, out]. Only graphs
# exported with a LoRA task have these inputs.
LORA_PREFIX = "lora."
LORA_ROWS_DIM = "lora_rows"
LORA_RANK_DIM = "lora_rank"  # + "." + projection: one symbolic rank per projection


def lora_rank_dim(proj: str) -> str:
    return f"{LORA_RANK_DIM}.{proj}"


METHODS = ("adapter", "lora")  # a task's method: the paper's bottleneck adapter or a LoRA


def lora_name(proj: str, part: str) -> str:
    if part not in ("A", "B"):
        raise ValueError(f"unknown LoRA part {part!r}; expected 'A' or 'B'")
    return f"{LORA_PREFIX}{proj}.{part}"


def is_lora(name: str) -> bool:
    return name.startswith(LORA_PREFIX)
