"""Loading a frozen GPT-2 backbone and its tokenizer from a local directory (or the built-in tiny one)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgevlm.core.errors import BackboneError

EOS_TOKEN = "<|endoftext|>"
CONFIG_KEYS = ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")


@dataclass
class Backbone:
    """A loaded backbone: the HF model, a ``tokenizers.Tokenizer`` and where they came from."""

    model: object
    tokenizer: object
    path: Path
    eos_token_id: int

    @property
    def config_dict(self) -> dict[str, int]:
        return {k: int(getattr(self.model.config, k)) for k in CONFIG_KEYS}

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.model)


def fingerprint(model) -> str:
    """sha256 over the architecture sizes and a sample of the weights (catches a different checkpoint)."""
    import torch

    cfg = {k: int(getattr(model.config, k)) for k in CONFIG_KEYS}
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    tr = model.transformer
    for t in (tr.wte.weight[:16], tr.wpe.weight[:4], tr.ln_f.weight, tr.h[0].attn.c_attn.weight[:4]):
        h.update(t.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def load_tokenizer(directory: Path):
    """``tokenizer.json`` if present, else GPT-2's ``vocab.json`` + ``merges.txt``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if (directory / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(directory / "tokenizer.json"))
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    if vocab.is_file() and merges.is_file():
        tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return tok
    raise BackboneError(f"{directory}: no tokenizer.json or vocab.json+merges.txt found")


def load_backbone(spec: str | Path) -> Backbone:
    """Load ``spec``: ``"tiny"`` (built locally, cached) or a local Hugging Face GPT-2 directory."""
    if str(spec) == "tiny":
        from edgevlm.train.tiny import ensure_tiny

        spec = ensure_tiny()
    path = Path(spec)
    if not path.is_dir():
        raise BackboneError(
            f"backbone directory {path} does not exist (expected 'tiny' or a local Hugging Face GPT-2 directory)"
        )
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise BackboneError(f"{cfg_file}: missing (expected a Hugging Face model directory)")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise BackboneError(f"{cfg_file}: invalid JSON ({e})") from None
    if model_type != "gpt2":
        raise BackboneError(
            f"{cfg_file}: unsupported architecture model_type={model_type!r}; edgevlm supports GPT-2 only"
        )
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(str(path), attn_implementation="eager")
    model.eval()
    tok = load_tokenizer(path)
    eos = tok.token_to_id(EOS_TOKEN)
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None or eos >= model.config.vocab_size:
        raise BackboneError(f"{path}: tokenizer has no {EOS_TOKEN} token inside the model's vocabulary")
    if tok.get_vocab_size() > model.config.vocab_size:
        raise BackboneError(
            f"{path}: tokenizer has {tok.get_vocab_size()} tokens but the model only {model.config.vocab_size}"
        )
    return Backbone(model, tok, path, int(eos))
