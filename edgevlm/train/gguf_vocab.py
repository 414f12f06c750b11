"""A GGUF file's tokenizer, read with the ``gguf`` package (memory-mapped: no weights are dequantized) and
rebuilt as a ``tokenizers`` byte-level BPE that encodes exactly as the model was trained (no added BOS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgevlm.core.errors import BackboneError

CONTROL = 3  # llama.cpp token type of special (control) tokens
USER_DEFINED = 4
# tokenizer.ggml.pre -> whether digits are split one by one before GPT-2's byte-level regex (llama.cpp's table)
PRE_DIGITS = {"smollm": True, "starcoder": True, "refact": True, "gpt2": False, "default": False}


@dataclass(frozen=True)
class GGUFVocab:
    architecture: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int
    pad_id: int | None
    add_bos: bool
    pre: str
    chat_template: str | None

    def special_tokens(self) -> list[str]:
        return [t for t, k in zip(self.tokens, self.types) if k in (CONTROL, USER_DEFINED)]


def _field(reader, key: str, path: Path, default=...):
    f = reader.fields.get(key)
    if f is None:
        if default is ...:
            raise BackboneError(f"{path}: GGUF metadata has no {key}")
        return default
    return f.contents()


def read(path: Path) -> GGUFVocab:
    """The vocabulary, merges, special ids and chat template of ``path``; one-line errors for what we cannot use."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise BackboneError(f"{path}: reading GGUF files needs the package 'gguf' (pip install gguf)") from None
    if not path.is_file():
        raise BackboneError(f"backbone file {path} does not exist (expected a .gguf file)")
    try:
        r = GGUFReader(str(path))
    except (ValueError, OSError) as e:
        raise BackboneError(f"{path}: not a readable GGUF file ({e})") from None
    model = _field(r, "tokenizer.ggml.model", path)
    if model != "gpt2":
        raise BackboneError(
            f"{path}: tokenizer.ggml.model={model!r} is not supported (expected 'gpt2', byte-level BPE)"
        )
    pre = _field(r, "tokenizer.ggml.pre", path, "default")
    if pre not in PRE_DIGITS:
        raise BackboneError(
            f"{path}: tokenizer.ggml.pre={pre!r} is not supported (expected one of {sorted(PRE_DIGITS)})"
        )
    return GGUFVocab(
        architecture=_field(r, "general.architecture", path),
        tokens=list(_field(r, "tokenizer.ggml.tokens", path)),
        types=[int(t) for t in _field(r, "tokenizer.ggml.token_type", path)],
        merges=list(_field(r, "tokenizer.ggml.merges", path)),
        bos_id=_field(r, "tokenizer.ggml.bos_token_id", path, None),
        eos_id=int(_field(r, "tokenizer.ggml.eos_token_id", path)),
        pad_id=_field(r, "tokenizer.ggml.padding_token_id", path, None),
        add_bos=bool(_field(r, "tokenizer.ggml.add_bos_token", path, False)),
        pre=pre,
        chat_template=_field(r, "tokenizer.chat_template", path, None),
    )


def tokenizer(v: GGUFVocab):
    """A ``tokenizers.Tokenizer``: byte-level BPE over the GGUF's tokens and merges, its control tokens special."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    bpe = models.BPE(vocab={t: i for i, t in enumerate(v.tokens)}, merges=[tuple(m.split(" ", 1)) for m in v.merges])
    tok = Tokenizer(bpe)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    digits = pre_tokenizers.Digits(individual_digits=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level]) if PRE_DIGITS[v.pre] else byte_level
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    if v.add_bos and v.bos_id is not None:
        bos = v.tokens[v.bos_id]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, v.bos_id)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in v.special_tokens()])
    return tok


def tokenizer_config(v: GGUFVocab) -> dict:
    """tokenizer_config.json for transformers users: the special tokens the model really uses and its template."""
    name = lambda i: None if i is None else v.tokens[i]  # noqa: E731
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name(v.bos_id),
        "eos_token": name(v.eos_id),
        "pad_token": name(v.pad_id),
        "add_bos_token": v.add_bos,
        "add_eos_token": False,
        "chat_template": v.chat_template,
        "clean_up_tokenization_spaces": False,
    }
