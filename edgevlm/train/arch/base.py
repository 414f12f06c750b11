"""The architecture record: how edgevlm finds a Hugging Face decoder's parts and sizes (one module per family).

Each family module subclasses :class:`Arch` and registers itself under the HF ``model_type`` values it covers
(the builder style of peft / onnxruntime-genai). Everything else in edgevlm asks the record, never the HF
config's own attribute names, so adding a family touches only its module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from edgevlm.core.errors import BackboneError


@dataclass(frozen=True)
class Sizes:
    """What the adapters, the exporter's graph and the manifest need to know about a backbone."""

    architecture: str  # the family: "gpt2" | "llama"
    model_type: str  # the HF model_type it came from
    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    head_dim: int
    vocab_size: int
    n_positions: int
    norm_eps: float
    rope_theta: float | None = None
    rope_scaling: dict | None = None
    tie_embeddings: bool = True
    qkv_bias: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Arch:
    """Base record; subclasses fill in the family-specific parts."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]

    def check_config(self, cfg: dict, source: str) -> None:
        """Raise BackboneError (one line naming ``source`` and the field) for configs the graph cannot express."""

    def model_class(self):
        raise NotImplementedError

    def sizes(self, config) -> Sizes:
        raise NotImplementedError

    def eos_token(self, tokenizer, config) -> int | None:
        """The id that ends a generation (None: not known from the tokenizer/config)."""
        return config.eos_token_id if isinstance(config.eos_token_id, int) else None

    def blocks(self, model):
        """The decoder blocks, in order (an adapter follows each)."""
        raise NotImplementedError

    def embeddings(self, model):
        """The token embedding module ([V, E] weight)."""
        return model.get_input_embeddings()

    def decoder(self, model):
        """The HF base model: input embeddings -> final-normed hidden states [b, s, E]."""
        return model.base_model

    def head(self, model):
        """The LM head: hidden states [.., E] -> logits [.., V]."""
        return model.get_output_embeddings()

    def gather_only(self, model) -> list:
        """Parameters of which a decoded token reads one row (lookup tables): the input embedding unless the head
        shares it (read whole as the head then)."""
        emb, head = self.embeddings(model).weight, self.head(model).weight
        return [] if emb is head else [emb]

    @staticmethod
    def block_output(output, hidden=None):
        """A block's hidden states, or (with ``hidden``) the output with them replaced (tensor or tuple)."""
        if hidden is None:
            return output[0] if isinstance(output, tuple) else output
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden

    def fingerprint(self, model) -> str:
        """sha256 over the sizes and every weight tensor (name, dtype, shape, bytes): another checkpoint of the
        same shape cannot pass. Tied weights are hashed once."""
        h = hashlib.sha256(json.dumps(self.sizes(model.config).to_dict(), sort_keys=True).encode())
        for name, p in model.named_parameters():  # deterministic module order, duplicates (ties) removed
            t = p.detach().contiguous().cpu()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(dtype=_byte_dtype()).numpy().data)
        return h.hexdigest()[:32]


def _byte_dtype():
    import torch

    return torch.uint8


_REGISTRY: dict[str, Arch] = {}


def register(cls: type[Arch]) -> type[Arch]:
    """Class decorator: make ``cls`` the record for each of its ``model_types``."""
    inst = cls()
    for mt in cls.model_types:
        _REGISTRY[mt] = inst
    return cls


def supported() -> list[str]:
    return sorted(_REGISTRY)


def for_model_type(model_type: Any, source: str) -> Arch:
    """The record for ``model_type`` (from ``source``, a config.json); BackboneError naming the field if none."""
    if model_type not in _REGISTRY:
        raise BackboneError(f"{source}: unsupported architecture model_type={model_type!r} (supported: {supported()})")
    return _REGISTRY[model_type]


def for_model(model) -> Arch:
    """The record for a loaded HF model."""
    return for_model_type(getattr(model.config, "model_type", None), "model config")
