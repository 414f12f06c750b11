"""Backbones of real sizes with random weights, for size, memory and speed checks without a model hub.

Each entry of :data:`SIZES` is a Hugging Face configuration (``model_type``
plus its own fields), so the table is data and any registered architecture
can have rows. The tokenizer is the tiny backbone's: the vocabulary stays the
real model's size, the text is noise. Used by the benchmarks
(``edgevlm.benchmarks.fixtures``) and the export scale check
(``experiments/export_scale/scale_check.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgevlm.core.errors import ConfigError

_GPT2 = dict(model_type="gpt2", vocab_size=50257, n_positions=1024, bos_token_id=0, eos_token_id=0)
SIZES: dict[str, dict] = {
    "gpt2-small": dict(_GPT2, n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(_GPT2, n_layer=24, n_head=16, n_embd=1024),  # 355M
}


def save_random(out: str | Path, size: str, seed: int = 0) -> Path:
    """Write a Hugging Face directory ``out`` (must not exist): config, random safetensors, tokenizer.json."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from edgevlm.train.tiny import ensure_tiny

    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r}; expected one of {list(SIZES)}")
    fields = dict(SIZES[size])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields)).eval()
    out = Path(out)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(ensure_tiny() / "tokenizer.json", out / "tokenizer.json")
    return out
