"""Loading a frozen backbone and its tokenizer: the built-in names (``tiny``, ``smollm2-135m``), a local
Hugging Face directory of a registered architecture, or a ``.gguf`` file (see :mod:`edgevlm.train.sources`).

:class:`Backbone` is the single place that turns an HF config into edgevlm's sizes (``sizes``, through the
architecture record) and that fingerprints the weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgevlm.core.errors import BackboneError
from edgevlm.train.arch import Arch, Sizes, for_model, for_model_type
from edgevlm.train.arch.gpt2 import EOS_TOKEN  # noqa: F401  (the tiny tokenizer's EOS; re-exported)

CONFIG_KEYS = ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")


@dataclass
class Backbone:
    """A loaded backbone: the HF model, a ``tokenizers.Tokenizer``, where they came from and its chat template."""

    model: object
    tokenizer: object
    path: Path
    eos_token_id: int
    chat_template: str | None = None
    _fp: tuple = field(default=(), repr=False)
    source: str = ""  # how it was named: a built-in name, or the absolute path of a directory or .gguf file

    @property
    def arch(self) -> Arch:
        return for_model(self.model)

    @property
    def sizes(self) -> Sizes:
        return self.arch.sizes(self.model.config)

    @property
    def config_dict(self) -> dict[str, int]:
        """The sizes recorded in adapter.json (and the manifest's backbone record)."""
        s = self.sizes
        return {k: int(getattr(s, k)) for k in CONFIG_KEYS}

    @property
    def fingerprint(self) -> str:
        """:func:`fingerprint`, cached until a weight changes in place (tensor version counters)."""
        versions = tuple(p._version for p in self.model.parameters())
        if not self._fp or self._fp[0] != versions:
            self._fp = (versions, fingerprint(self.model))
        return self._fp[1]

    def quantize_weights(self, mode: str) -> None:
        """Replace the weights a ``mode`` bundle quantizes by its blocks, in place, once
        (:mod:`edgevlm.train.quantsim`); :attr:`fingerprint` stays the float weights' (what adapters record and
        the exporter checks against)."""
        from edgevlm.train.quantsim import quantize_model

        fp = self.fingerprint
        quantize_model(self.model, mode)
        self._fp = (tuple(p._version for p in self.model.parameters()), fp)

    def save_tokenizer(self, directory: Path) -> None:
        """tokenizer.json (+ the source's tokenizer_config.json: special tokens, chat template) into ``directory``."""
        import shutil

        self.tokenizer.save(str(Path(directory) / "tokenizer.json"))
        if (self.path / "tokenizer_config.json").is_file():
            shutil.copyfile(self.path / "tokenizer_config.json", Path(directory) / "tokenizer_config.json")


def fingerprint(model) -> str:
    """sha256 over the architecture sizes and every weight tensor (catches another checkpoint of the same shape)."""
    return for_model(model).fingerprint(model)


def check_weights(model, path: Path) -> None:
    """Refuse a checkpoint with NaN or infinite weights (BackboneError naming the tensor)."""
    import torch

    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise BackboneError(f"{path}: weight {name} holds NaN or infinite values; refused")


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


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise BackboneError(f"{path}: missing (expected {what})")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BackboneError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(d, dict):
        raise BackboneError(f"{path}: expected a JSON object")
    return d


def source_of(spec: str | Path) -> str:
    """The backbone's name as adapter.json records it: a built-in name as is, a local path made absolute."""
    from edgevlm.train import sources

    s = str(spec)
    return s if s == "tiny" or s in sources.BUILTIN else str(Path(s).resolve())


def source_name(source: str) -> str:
    """What a bundle may record of ``source`` (it travels to devices): a built-in name, or a file/folder name."""
    return Path(source).name if source else ""


def resolve(spec: str | Path) -> Path:
    """A backbone spec -> a local HF directory (building or converting the built-in ones once, cached)."""
    from edgevlm.train import sources

    s = str(spec)
    if s == "tiny":
        from edgevlm.train.tiny import ensure_tiny

        return ensure_tiny()
    if s in sources.BUILTIN:
        return sources.ensure_gguf(sources.locate_builtin(s))
    if s.endswith(".gguf"):
        return sources.ensure_gguf(Path(s))
    path = Path(s)
    if not path.is_dir():
        raise BackboneError(
            f"backbone {path} does not exist (expected {sources.builtin_names()}, a local Hugging Face directory "
            "or a .gguf file)"
        )
    return path


def load_backbone(spec: str | Path) -> Backbone:
    """Load ``spec`` (see :func:`resolve`) with its architecture record; one-line BackboneError on bad input."""
    path = resolve(spec)
    cfg_file = path / "config.json"
    cfg = read_json(cfg_file, "a Hugging Face model directory")
    arch = for_model_type(cfg.get("model_type"), str(cfg_file))
    arch.check_config(cfg, str(cfg_file))
    try:
        model = arch.model_class().from_pretrained(str(path), attn_implementation="eager", dtype="float32")
    except (OSError, ValueError) as e:  # no or unreadable weight files
        raise BackboneError(f"{path}: cannot load the weights ({str(e).splitlines()[0][:200]})") from None
    model.eval()
    check_weights(model, path)
    tok = load_tokenizer(path)
    tcfg_file = path / "tokenizer_config.json"
    tcfg = read_json(tcfg_file, "tokenizer settings") if tcfg_file.is_file() else {}
    eos = tok.token_to_id(tcfg["eos_token"]) if isinstance(tcfg.get("eos_token"), str) else None
    eos = eos if eos is not None else arch.eos_token(tok, model.config)
    v = arch.sizes(model.config).vocab_size
    if eos is None or eos >= v:
        raise BackboneError(f"{path}: no end-of-sequence token inside the model's vocabulary (tokenizer/config)")
    if tok.get_vocab_size() > v:
        raise BackboneError(f"{path}: tokenizer has {tok.get_vocab_size()} tokens but the model only {v}")
    return Backbone(model, tok, path, int(eos), tcfg.get("chat_template"), source=source_of(spec))
