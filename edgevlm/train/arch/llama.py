"""The Llama family (Llama, SmolLM/SmolLM2, Mistral, Qwen2): RMSNorm, rotary positions, grouped-query attention,
SwiGLU. Refuses what the exported graph cannot express: sliding-window attention, biases other than Qwen2's
q/k/v bias, other activations, rope_scaling other than the default."""

from __future__ import annotations

from edgevlm.core.errors import BackboneError

from .base import Arch, Sizes, register


def _refuse(source: str, field: str, value, expected: str) -> None:
    raise BackboneError(f"{source}: {field}={value!r} is not supported (expected {expected})")


@register
class Llama(Arch):
    name = "llama"
    model_types = ("llama", "mistral", "qwen2")

    def check_config(self, cfg: dict, source: str) -> None:
        mt = cfg.get("model_type")
        if cfg.get("hidden_act", "silu") != "silu":
            _refuse(source, "hidden_act", cfg["hidden_act"], "'silu'")
        for field in ("attention_bias", "mlp_bias"):
            if cfg.get(field):
                _refuse(source, field, cfg[field], "false")
        scaling = cfg.get("rope_scaling")
        if scaling and scaling.get("rope_type", scaling.get("type")) != "default":
            _refuse(source, "rope_scaling", scaling, "null (plain rotary)")
        if mt == "qwen2" and cfg.get("use_sliding_window"):
            _refuse(source, "use_sliding_window", True, "false")
        window, n_pos = cfg.get("sliding_window"), cfg.get("max_position_embeddings", 0)
        if mt == "mistral" and window is not None and window < n_pos:
            _refuse(source, "sliding_window", window, f"null or >= max_position_embeddings={n_pos}")
        heads = cfg.get("num_attention_heads", 1)
        kv = cfg.get("num_key_value_heads") or heads
        if heads % kv:
            raise BackboneError(f"{source}: num_attention_heads={heads} is not a multiple of num_key_value_heads={kv}")

    def model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def sizes(self, c) -> Sizes:
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        return Sizes(
            architecture=self.name,
            model_type=c.model_type,
            n_layer=c.num_hidden_layers,
            n_embd=c.hidden_size,
            n_head=c.num_attention_heads,
            n_kv_head=c.num_key_value_heads or c.num_attention_heads,
            head_dim=head_dim,
            vocab_size=c.vocab_size,
            n_positions=c.max_position_embeddings,
            norm_eps=float(c.rms_norm_eps),
            rope_theta=float(c.rope_theta),
            rope_scaling=None,
            tie_embeddings=bool(c.tie_word_embeddings),
            qkv_bias=c.model_type == "qwen2",
        )

    def blocks(self, model):
        return model.model.layers
