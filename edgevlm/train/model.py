"""VLM: a frozen Hugging Face decoder with per-task residual adapters and task embeddings."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from edgevlm.core import names
from edgevlm.core.config import TaskConfig
from edgevlm.core.errors import BackboneError, TaskError


class Adapter(nn.Module):
    """Residual bottleneck adapter ``h + up(relu(down(LN(h))))``; identity at initialisation."""

    def __init__(self, n_embd: int, bottleneck: int, eps: float = 1e-5):
        super().__init__()
        self.ln = nn.LayerNorm(n_embd, eps=eps)
        self.down_weight = nn.Parameter(torch.empty(n_embd, bottleneck))  # [E, B]
        self.down_bias = nn.Parameter(torch.zeros(bottleneck))  # [B]
        self.up_weight = nn.Parameter(torch.zeros(bottleneck, n_embd))  # [B, E]: zero => identity
        self.up_bias = nn.Parameter(torch.zeros(n_embd))  # [E]
        nn.init.normal_(self.down_weight, std=0.02)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.ln(h) @ self.down_weight + self.down_bias)  # [b, s, B]
        return h + z @ self.up_weight + self.up_bias  # [b, s, E]

    def tensors(self, layer: int) -> dict[str, nn.Parameter]:
        """This adapter's parameters under their graph names."""
        parts = (self.ln.weight, self.ln.bias, self.down_weight, self.down_bias, self.up_weight, self.up_bias)
        return {names.adapter_name(layer, p): t for p, t in zip(names.ADAPTER_PARTS, parts)}


class TaskModule(nn.Module):
    """One task's trainable parts: an adapter per block and its task-token embeddings."""

    def __init__(self, cfg: TaskConfig, n_layer: int, n_embd: int, init_embedding: torch.Tensor, eps: float):
        super().__init__()
        self.cfg = cfg
        self.adapters = nn.ModuleList(Adapter(n_embd, cfg.bottleneck, eps) for _ in range(n_layer))
        t = len(cfg.special_tokens)  # init_embedding: [1, E] or [T, E]
        self.task_embeddings = nn.Parameter(init_embedding.detach().clone().expand(t, n_embd).contiguous())  # [T, E]

    def tensors(self) -> dict[str, nn.Parameter]:
        """All trainable tensors under their graph names (the adapter file's contents)."""
        out: dict[str, nn.Parameter] = {}
        for i, a in enumerate(self.adapters):
            out.update(a.tensors(i))
        out[names.TASK_EMBEDDINGS] = self.task_embeddings
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        mine = self.tensors()
        if set(tensors) != set(mine):
            missing, extra = sorted(set(mine) - set(tensors)), sorted(set(tensors) - set(mine))
            raise BackboneError(
                f"{source}: adapter tensors do not match the backbone (missing {missing[:3]}, unexpected {extra[:3]})"
            )
        with torch.no_grad():
            for k, p in mine.items():
                if tuple(tensors[k].shape) != tuple(p.shape):
                    raise BackboneError(
                        f"{source}: tensor {k} has shape {tuple(tensors[k].shape)}, expected {tuple(p.shape)}"
                    )
                p.copy_(tensors[k])


class VLM(nn.Module):
    """Frozen Hugging Face decoder (any registered architecture) serving several tasks; ``task=None`` is the
    plain backbone. Adapters attach through forward-hook handles that :meth:`close` removes (also on leaving a
    ``with VLM(...)`` block); nothing is set on the HF modules.

    Task tokens are task-local ids ``>= vocab_size`` (see :mod:`edgevlm.core.prompts`).
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        from edgevlm.train.arch import for_model

        self.arch = for_model(backbone)
        self.sizes = self.arch.sizes(backbone.config)
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.tasks = nn.ModuleDict()
        self._active: TaskModule | None = None
        self.train_dtype = torch.float32  # or torch.bfloat16: autocast in target_loss (measured faster on AVX512-BF16)
        self._handles = [
            block.register_forward_hook(functools.partial(self._adapt, i))
            for i, block in enumerate(self.arch.blocks(backbone))
        ]

    def close(self) -> None:
        """Detach the adapters from the backbone (idempotent); the backbone is the plain HF model again."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> VLM:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def config(self):
        return self.backbone.config

    @property
    def vocab_size(self) -> int:
        return self.sizes.vocab_size

    def add_task(self, cfg: TaskConfig, init_ids: list[list[int]] | None = None) -> TaskModule:
        """Add a fresh (identity) adapter and task embeddings for ``cfg``.

        Task token k starts as the mean embedding of the vocabulary ids ``init_ids[k]`` (see
        :func:`edgevlm.train.data.token_init_ids`: its name, so a pretrained model reads ``<response>`` as
        "response" from step 0), or of the whole table when ``init_ids`` is None or the entry is empty."""
        if cfg.name in self.tasks:
            raise TaskError(f"task {cfg.name!r} already exists in this model")
        s, wte = self.sizes, self.arch.embeddings(self.backbone).weight
        if init_ids is not None and len(init_ids) != len(cfg.special_tokens):
            raise TaskError(f"task {cfg.name!r}: init_ids has {len(init_ids)} entries, expected one per special token")
        mean = wte.mean(0, keepdim=True)  # [1, E]
        rows = init_ids or [[]] * len(cfg.special_tokens)
        init = [wte[list(ids)].mean(0, keepdim=True) if ids else mean for ids in rows]  # T x [1, E]
        mod = TaskModule(cfg, s.n_layer, s.n_embd, torch.cat(init) if init else mean, s.norm_eps)
        self.tasks[cfg.name] = mod.to(wte.device)
        return mod

    def task(self, name: str) -> TaskModule:
        if name not in self.tasks:
            raise TaskError(f"unknown task {name!r}; available: {sorted(self.tasks)}")
        return self.tasks[name]

    def _adapt(self, layer: int, module, inputs, output):
        if self._active is None:
            return output
        h = self.arch.block_output(output)  # [b, s, E]
        return self.arch.block_output(output, self._active.adapters[layer](h))

    @contextlib.contextmanager
    def _using(self, task: str | None) -> Iterator[None]:
        if not self._handles and task is not None:
            raise TaskError("this VLM was closed: its adapters are no longer attached")
        prev, self._active = self._active, (self.task(task) if task is not None else None)
        try:
            yield
        finally:
            self._active = prev

    def embed(self, input_ids: torch.Tensor, task: str | None) -> torch.Tensor:
        """Token embeddings; ids >= vocab_size read the task's embedding table. [b, s] -> [b, s, E]"""
        v = self.vocab_size
        is_task = input_ids >= v
        if is_task.any() and task is None:
            raise TaskError("input contains task tokens but no task was selected")
        emb = self.arch.embeddings(self.backbone)(input_ids.clamp(max=v - 1))  # [b, s, E]
        if task is not None:
            table = self.task(task).task_embeddings  # [T, E]
            if is_task.any() and int(input_ids.max()) - v >= table.shape[0]:
                raise TaskError(f"task token id out of range for task {task!r}")
            tid = (input_ids - v).clamp(min=0, max=table.shape[0] - 1)
            emb = torch.where(is_task.unsqueeze(-1), table[tid], emb)
        return emb

    def hidden(self, input_ids, attention_mask=None, task=None, past_key_values=None):
        """Final-normed hidden states [b, s, E] and the new cache; positions follow the attention mask
        (left padding safe). The LM head is left to the caller, so training pays for it only at targets."""
        if attention_mask is None:
            past = 0 if past_key_values is None else past_key_values.get_seq_length()
            attention_mask = torch.ones(
                input_ids.shape[0], past + input_ids.shape[1], dtype=torch.long, device=input_ids.device
            )
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]  # [b, s]
        with self._using(task):
            out = self.arch.decoder(self.backbone)(
                inputs_embeds=self.embed(input_ids, task),
                attention_mask=attention_mask,
                position_ids=pos,
                past_key_values=past_key_values,
                use_cache=True,
            )
        return out.last_hidden_state, out.past_key_values

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head: [..., E] -> [..., V]."""
        return self.arch.head(self.backbone)(hidden)

    def forward(self, input_ids, attention_mask=None, task=None, past_key_values=None):
        """Logits [b, s, V] and the new cache; positions follow the attention mask (left padding safe)."""
        h, past = self.hidden(input_ids, attention_mask, task, past_key_values)
        return self.head(h), past

    def target_loss(self, input_ids, attention_mask, labels, task: str | None, ignore: int) -> torch.Tensor:
        """Mean next-token cross-entropy where ``labels[:, 1:] != ignore``; the head runs only there. [b, t]

        With ``train_dtype = torch.bfloat16`` the forward runs under autocast on the inputs' device (weights
        stay fp32); decoding always runs in fp32, like the exported graph."""
        bf16 = self.train_dtype == torch.bfloat16
        with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=bf16):
            h, _ = self.hidden(input_ids, attention_mask, task)  # [b, t, E]
            keep = labels[:, 1:] != ignore  # [b, t-1]
            logits = self.head(h[:, :-1][keep])  # [n, V]
        return F.cross_entropy(logits.float(), labels[:, 1:][keep])

    def frozen_in(self, dtype: torch.dtype):
        """:func:`frozen_in` on this model's backbone."""
        return frozen_in(self.backbone, dtype)

    def backbone_params(self) -> int:
        return sum(p.numel() for p in self.backbone.parameters())

    def trainable_share(self, task: str) -> tuple[int, float]:
        """(extra parameters of ``task``, their share of the backbone in %)."""
        n = sum(p.numel() for p in self.task(task).parameters())
        return n, 100.0 * n / self.backbone_params()


@contextlib.contextmanager
def frozen_in(model: nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Hold ``model``'s frozen float matrices in ``dtype`` (bf16) inside the block, restored exactly on exit.

    Under bf16 autocast every matmul casts its fp32 weight again on each call, forward and backward; a frozen
    weight's cast never changes, so it is done once here (the same rounding autocast applies). Only matrices
    (projections, tables): norms and biases stay fp32 as autocast expects them. Trainable tensors (adapters,
    task embeddings, LoRA factors, any weight that requires grad) stay fp32 master weights."""
    kept: dict[nn.Parameter, torch.Tensor] = {}
    if dtype != torch.float32:
        for p in model.parameters():
            if not p.requires_grad and p.is_floating_point() and p.dim() >= 2 and p not in kept:
                kept[p], p.data = p.data, p.data.to(dtype)
    try:
        yield
    finally:
        for p, data in kept.items():
            p.data = data
