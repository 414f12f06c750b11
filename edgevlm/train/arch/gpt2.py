"""GPT-2: learned positions, LayerNorm, fused QKV (Conv1D), tied head."""

from __future__ import annotations

from edgevlm.core.errors import BackboneError

from .base import Arch, Sizes, register

EOS_TOKEN = "<|endoftext|>"


@register
class GPT2(Arch):
    name = "gpt2"
    model_types = ("gpt2",)

    def check_config(self, cfg: dict, source: str) -> None:
        n_embd, n_head = cfg.get("n_embd", 768), cfg.get("n_head", 12)
        if n_embd % n_head:
            raise BackboneError(f"{source}: n_embd={n_embd} is not divisible by n_head={n_head}")
        if cfg.get("activation_function", "gelu_new") != "gelu_new":
            raise BackboneError(f"{source}: activation_function={cfg['activation_function']!r}; expected 'gelu_new'")

    def model_class(self):
        from transformers import GPT2LMHeadModel

        return GPT2LMHeadModel

    def sizes(self, c) -> Sizes:
        return Sizes(
            architecture=self.name,
            model_type=c.model_type,
            n_layer=c.n_layer,
            n_embd=c.n_embd,
            n_head=c.n_head,
            n_kv_head=c.n_head,
            head_dim=c.n_embd // c.n_head,
            vocab_size=c.vocab_size,
            n_positions=c.n_positions,
            norm_eps=float(c.layer_norm_epsilon),
            tie_embeddings=bool(getattr(c, "tie_word_embeddings", True)),
            qkv_bias=True,
        )

    def eos_token(self, tokenizer, config) -> int | None:
        eos = tokenizer.token_to_id(EOS_TOKEN)
        return eos if eos is not None else super().eos_token(tokenizer, config)

    def blocks(self, model):
        return model.transformer.h

    def gather_only(self, model) -> list:
        return [model.transformer.wpe.weight, *super().gather_only(model)]  # + the learned position table
