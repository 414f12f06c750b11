"""``edgevlm train --method lora``: a peft LoRA per task on the frozen backbone, saved as peft saves it.

The LoRA is peft's own (``LoraConfig`` + ``get_peft_model``), so the output directory
(``adapter_config.json`` + ``adapter_model.safetensors``) is what peft, Hugging Face tools and
``edgevlm export --lora`` read. A LoRA has no task tokens: the prompt is the task's template with its special
tokens written as words (``<mr> {input} <text>`` -> ``mr {input} text``), encoded exactly as the runtime encodes a
LoRA task's input; ``edgevlm_task.json`` beside the peft files carries that template and the task's generation
defaults to the export (peft ignores it). Same data, optimizer, schedule, clipping and seeding as the adapter
trainer; one process on the CPU.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from edgevlm.core.config import TaskConfig, atomic_write_text
from edgevlm.core.errors import ConfigError

TASK_FILE = "edgevlm_task.json"
DEFAULT_TARGETS = {"gpt2": ("c_attn", "c_proj", "c_fc"), "llama": ("q_proj", "k_proj", "v_proj", "o_proj")}


@dataclass(frozen=True)
class LoraSpec:
    """LoRA settings: rank, alpha (peft's ``lora_alpha``; scaling alpha / rank) and target module names."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] | None = None  # None: the architecture's attention projections

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank <= 0:
            raise ConfigError(f"--rank must be a positive integer, got {self.rank!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ConfigError(f"--alpha must be a positive number, got {self.alpha!r}")
        if self.targets is not None and (not self.targets or not all(isinstance(t, str) and t for t in self.targets)):
            raise ConfigError(f"--targets: expected module names such as q_proj v_proj, got {self.targets!r}")


def lora_template(cfg: TaskConfig) -> str:
    """The task's template with each special token as its words (a LoRA has no task-token embeddings)."""
    words = re.sub(r"<([^<>\s]+)>", lambda m: m.group(1).replace("_", " ").replace("-", " "), cfg.template)
    return " ".join(words.split())


def peft_model(model, arch: str, lora: LoraSpec):
    """peft's LoRA around ``model`` (modified in place: peft injects its layers)."""
    from peft import LoraConfig, get_peft_model

    targets = list(lora.targets or DEFAULT_TARGETS["gpt2" if arch == "gpt2" else "llama"])
    cfg = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=targets, lora_dropout=0.0, bias="none",
                     fan_in_fan_out=arch == "gpt2")  # fmt: skip
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:  # peft: a target module not found in the model
        raise ConfigError(f"--targets {' '.join(targets)}: {str(e).splitlines()[0]}") from None


def encode(tokenizer, template: str, source: str, target_ids: list[int], vocab: int, max_len: int):
    """(prompt ids, target ids) within ``max_len``: the runtime's encoding of a LoRA task's input, cut left."""
    from edgevlm.core.prompts import encode_prompt, truncate_left

    target = target_ids[: max_len // 2]
    prompt = encode_prompt(tokenizer, template, source, (), vocab)
    return truncate_left(prompt, max_len - len(target), vocab), target


def encoded_split(backbone, cfg: TaskConfig, examples, max_len: int):
    from edgevlm.train.data import Encoded, encode_target

    v, eos, tok, tpl = backbone.model.config.vocab_size, backbone.eos_token_id, backbone.tokenizer, lora_template(cfg)
    out = []
    for e in examples:
        p, t = encode(tok, tpl, e.source, encode_target(tok, e.target, eos, cfg.max_target_tokens), v, max_len)
        out.append(Encoded(p, t))
    return out


def loss(pm, batch, dtype=None) -> object:
    """Mean cross-entropy at the target positions; the LM head runs only there, under bf16 autocast when
    ``dtype`` is bf16 (as the adapter trainer's :meth:`edgevlm.train.model.VLM.target_loss`)."""
    import torch

    from edgevlm.train.arch import for_model
    from edgevlm.train.data import IGNORE

    ids, mask, labels = batch  # [b, t]
    model = pm.get_base_model()  # the HF model with peft's layers injected
    arch = for_model(model)
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        h = arch.decoder(model)(input_ids=ids, attention_mask=mask).last_hidden_state  # [b, t, E]
        keep = labels[:, 1:] != IGNORE  # [b, t-1]
        logits = arch.head(model)(h[:, :-1][keep])  # [n, V]
    return torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][keep])


def valid_loss(pm, data, pad: int, batch_size: int = 32) -> float:
    import torch

    from edgevlm.train.data import collate

    total = n = 0.0
    with torch.no_grad():
        for k in range(0, len(data), batch_size):
            part = data[k : k + batch_size]
            w = sum(len(e.target) for e in part)
            total, n = total + float(loss(pm, collate(part, pad))) * w, n + w
    return total / max(n, 1)


def fit(backbone, cfg: TaskConfig, train_set, valid_set, tc, lora: LoraSpec, dtype=None, progress: bool = False):
    """Train one task's LoRA (seeded; AdamW, warmup + linear decay, clipping, the length-grouped batches of
    :func:`edgevlm.train.trainer.step_indices` and the precision of the adapter trainer).
    -> (the peft model, validation losses at the start and the end, last training loss)"""
    import copy

    import torch

    from edgevlm.train.model import frozen_in
    from edgevlm.train.trainer import make_optimizer

    torch.manual_seed(tc.seed)
    pm = peft_model(copy.deepcopy(backbone.model), backbone.sizes.architecture, lora)
    params = [p for p in pm.parameters() if p.requires_grad]
    opt, sched = make_optimizer(params, tc)
    pad = backbone.eos_token_id
    data = encoded_split(backbone, cfg, train_set, tc.max_len)
    valid = encoded_split(backbone, cfg, valid_set, tc.max_len)
    lengths = [len(e.prompt) + len(e.target) for e in data]
    losses, last = [valid_loss(pm.eval(), valid, pad)] if valid else [], None
    pm.train()
    with frozen_in(pm, dtype or torch.float32):
        last = _steps(pm, data, lengths, cfg.name, tc, (params, opt, sched), pad, dtype, progress)
    pm.eval()
    if valid:
        losses.append(valid_loss(pm, valid, pad))
    return pm, losses, last


def _steps(pm, data, lengths, task: str, tc, state, pad: int, dtype, progress: bool) -> float | None:
    """``tc.steps`` optimizer steps; the last training loss."""
    import torch
    from tqdm.auto import tqdm

    from edgevlm.train.data import collate
    from edgevlm.train.trainer import step_indices

    params, opt, sched = state
    last = None
    bar = tqdm(total=tc.steps, desc=f"train {task} (LoRA)", unit="step", disable=not progress)
    for step in range(tc.steps):
        idx = step_indices(lengths, tc.batch_size, tc.seed, task, step)
        step_loss = loss(pm, collate([data[i] for i in idx], pad), dtype)
        opt.zero_grad()
        step_loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.clip)
        opt.step()
        sched.step()
        last = float(step_loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{last:.3f}")
    bar.close()
    return last


def save(pm, cfg: TaskConfig, out: Path, base_name: str, training: dict | None = None) -> Path:
    """peft's own save (adapter_config.json + adapter_model.safetensors) and the task file, into ``out``; the
    task file also records ``training`` (:func:`lora_record`; export reads only the template and defaults)."""
    pm.peft_config["default"].base_model_name_or_path = base_name  # the checkpoint's name, never a local path
    pm.save_pretrained(str(out), save_embedding_layers=False)
    task = {"template": lora_template(cfg), "max_new_tokens": cfg.max_new_tokens, "metric": cfg.metric,
            "max_source_tokens": cfg.max_source_tokens, "training": training or {}}  # fmt: skip
    atomic_write_text(out / TASK_FILE, json.dumps(task, indent=2) + "\n")
    return out


def lora_record(tc, dtype, losses) -> dict:
    """A LoRA run's settings, as adapter.json's ``training`` records an adapter run's: the optimisation (lr,
    steps, batch, quant...), processes and precision, the validation losses; rank, alpha and targets are in
    peft's own adapter_config.json."""
    from dataclasses import asdict

    from edgevlm.train.distributed import precision_name

    return {**asdict(tc), "processes": 1, "precision": precision_name(dtype), "valid_loss": list(losses)}


def train_lora(spec, lora: LoraSpec):
    """:func:`edgevlm.train.api.train` for ``--method lora``: one peft LoRA directory ``OUT/<task>/`` per task."""
    from edgevlm.train.api import TaskResult, TrainResult, check_out, load_spec_backbone, spec_examples
    from edgevlm.train.layout import task_dir

    for flag, bad in (("--full", spec.full), ("--resume", spec.resume), ("--quant", spec.quant != "fp32")):
        if bad:
            raise ConfigError(f"{flag} is not supported with --method lora (LoRA trains on the fp32 backbone)")
    check_out(spec)
    import torch

    from edgevlm.train.distributed import pick_dtype, precision_name

    backbone, tc = load_spec_backbone(spec), spec.train_config()
    dtype = pick_dtype(spec.precision, torch.device("cpu"))
    if spec.progress:
        print(f"LoRA rank {lora.rank}, alpha {lora.alpha:g}; cpu, {precision_name(dtype)}", file=sys.stderr)
    n_params = sum(p.numel() for p in backbone.model.parameters())
    results = []
    for cfg, tr, va in spec_examples(spec, backbone):
        pm, losses, last = fit(backbone, cfg, tr, va, tc, lora, dtype, spec.progress)
        n = sum(p.numel() for p in pm.parameters() if p.requires_grad)
        path = save(pm, cfg, task_dir(spec.out, cfg.name), backbone.path.name, lora_record(tc, dtype, losses))
        results.append(TaskResult(cfg, path, n, round(100.0 * n / n_params, 4), tuple(losses), last))
    return TrainResult(spec.out, tuple(results))
