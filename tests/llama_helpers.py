"""A tiny random Llama-family backbone for the fast suite: grouped-query attention (4 heads, 2 key/value heads),
RMSNorm, rotary embeddings, SwiGLU and a tied LM head, with the built-in tiny tokenizer (1,024 tokens)."""

from __future__ import annotations

import shutil
from pathlib import Path

TINY_LLAMA = dict(
    vocab_size=1024,
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    hidden_act="silu",
)


def make_tiny_llama(out: Path, seed: int = 0, **overrides) -> Path:
    """Write a randomly initialised LlamaForCausalLM (safetensors) + the tiny tokenizer into ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgevlm.train.tiny import ensure_tiny

    tiny = ensure_tiny()
    tok = tiny / "tokenizer.json"
    from tokenizers import Tokenizer

    eos = Tokenizer.from_file(str(tok)).token_to_id("<|endoftext|>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**TINY_LLAMA, **overrides}, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger than HF's 0.02 init, so that the layers matter for the parity tests
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(tok, out / "tokenizer.json")
    return out
