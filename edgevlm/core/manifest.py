"""The bundle manifest as frozen dataclasses (stdlib only): written by the exporter, read by the runtime.

``from_json(obj, where)`` validates types and values and fails with one
line naming the file and the field path (``.../manifest.json:
backbone.n_layer: expected a positive integer, got 'x'``); ``to_json()``
gives the JSON object back. Schema version 1; the optional backbone fields
``architecture``, ``n_kv_head`` and ``head_dim`` default to GPT-2's values,
so bundles written before they existed still load; the optional ``sizes``
(bytes per listed file, checked before hashing) and each task's
``backbone_fingerprint`` (must be ``backbone.fingerprint``) are newer too. Unknown keys are
ignored (older exporters wrote a few informational ones). Paths and
checksums are checked against the directory by :mod:`edgevlm.core.bundle`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edgevlm.core import graphio, names
from edgevlm.core.chat import check_turns
from edgevlm.core.errors import BundleError, ConfigError
from edgevlm.core.prompts import INPUT_FIELD, check_template

SCHEMA_VERSION = 1
QUANT_MODES = ("fp32", "int8", "int4")
ARCHITECTURES = ("gpt2", "llama")  # what the exporter can build; the runtime only needs the graph IO
# How the graph's cache may be fed: "concat" = past [b, Hkv, P, D] in, present [b, Hkv, P + s, D] out (a new
# tensor per run); "shared" = also past and present bound to ONE buffer [b, Hkv, capacity, D] that the graph's
# attention (GroupQueryAttention) appends to in place, the run's length taken from attention_mask.
KV_CACHES = ("concat", "shared")
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")  # as a training task name (core.config)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
FINGERPRINT = re.compile(r"^[0-9a-f]{16,64}$")
_MISSING = object()


def _fail(where: str, path: str, expected: str, got: Any = _MISSING) -> BundleError:
    tail = "missing" if got is _MISSING else f"expected {expected}, got {_short(got)}"
    return BundleError(f"{where}: {path}: {tail}" if path else f"{where}: {tail}")


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


class _Fields:
    """Checked access to one JSON object's fields; errors name ``where`` and the field path."""

    def __init__(self, obj: Any, where: str, path: str = ""):
        if not isinstance(obj, Mapping):
            raise _fail(where, path, "an object", obj)
        self.d, self.where, self.path = obj, where, path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def __call__(self, key: str, check: Callable[[Any], bool], expected: str, default: Any = _MISSING) -> Any:
        """``d[key]`` if ``check`` accepts it; ``default`` when absent (if given); BundleError otherwise."""
        if key not in self.d:
            if default is _MISSING:
                raise _fail(self.where, self.name(key), expected)
            return default
        if not check(self.d[key]):
            raise _fail(self.where, self.name(key), expected, self.d[key])
        return self.d[key]

    def sub(self, key: str) -> _Fields:
        """The nested object ``key`` (required)."""
        return _Fields(self(key, lambda v: True, "an object"), self.where, self.name(key))


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pos(v: Any) -> bool:
    return _int(v) and v > 0


def _str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _token(vocab_size: int) -> Callable[[Any], bool]:
    return lambda v: _int(v) and 0 <= v < vocab_size


POS = "a positive integer"


@dataclass(frozen=True)
class BackboneRecord:
    """The frozen backbone graph: its file, sizes and quantization (``n_kv_head``/``head_dim`` for GQA)."""

    file: str
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    n_positions: int
    quantization: str
    architecture: str = "gpt2"
    n_kv_head: int = 0  # 0: n_head (filled in on construction)
    head_dim: int = 0  # 0: n_embd // n_head
    fingerprint: str = ""  # of the fp32 weights: adapters fit every quantization of the same backbone
    source: str = ""  # the checkpoint's name (never a local path)
    kv_cache: str = "concat"  # one of KV_CACHES (bundles before 2026-12-01: concat)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_kv_head", self.n_kv_head or self.n_head)
        object.__setattr__(self, "head_dim", self.head_dim or self.n_embd // self.n_head)

    def io(self) -> graphio.DecoderIO:
        """The graph IO this backbone's graph must declare."""
        return graphio.decoder_io(self.n_layer, self.n_kv_head, self.head_dim, self.n_embd, self.vocab_size)

    @classmethod
    def from_json(cls, obj: Any, where: str, path: str = "backbone") -> BackboneRecord:
        f = _Fields(obj, where, path)
        sizes = {k: f(k, _pos, POS) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")}
        n_kv = f("n_kv_head", _pos, POS, sizes["n_head"])
        if sizes["n_head"] % n_kv:
            raise _fail(where, f"{path}.n_kv_head", f"a divisor of n_head={sizes['n_head']}", n_kv)
        if "head_dim" not in f.d and sizes["n_embd"] % sizes["n_head"]:
            raise BundleError(f"{where}: {path}.head_dim: missing (n_embd is not divisible by n_head)")
        return cls(
            file=f("file", _str, "a file name"),
            **sizes,
            quantization=f("quantization", lambda v: v in QUANT_MODES, f"one of {list(QUANT_MODES)}"),
            architecture=f("architecture", lambda v: v in ARCHITECTURES, f"one of {list(ARCHITECTURES)}", "gpt2"),
            n_kv_head=n_kv,
            head_dim=f("head_dim", _pos, POS, sizes["n_embd"] // sizes["n_head"]),
            fingerprint=f("fingerprint", lambda v: v == "" or _fingerprint(v), "a hex fingerprint", ""),
            source=f("source", lambda v: isinstance(v, str), "a string", ""),
            kv_cache=f("kv_cache", lambda v: v in KV_CACHES, f"one of {list(KV_CACHES)}", "concat"),
        )

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class TokenizerRecord:
    """The tokenizer file, its end-of-text id and the plain backbone's (``task=None``) prompt template."""

    file: str
    eos_token_id: int | None = None
    chat_template: str | None = None  # e.g. an instruct model's turn markup around one ``{input}``
    chat_turns: dict | None = None  # the text between a conversation's messages (edgevlm.core.chat)

    @classmethod
    def from_json(cls, obj: Any, where: str, vocab_size: int, path: str = "tokenizer") -> TokenizerRecord:
        f = _Fields(obj, where, path)
        one_input = f"a string with {INPUT_FIELD} once"
        template = f("chat_template", _opt(lambda v: _str(v) and v.count(INPUT_FIELD) == 1), one_input, None)
        turns = f("chat_turns", _opt(check_turns), "an object of transition texts (edgevlm.core.chat)", None)
        if turns is not None and template != turns["start:user"] + INPUT_FIELD + turns["user:end"]:
            raise BundleError(f"{where}: {path}.chat_turns: does not match {path}.chat_template (edited by hand?)")
        return cls(
            file=f("file", _str, "a file name"),
            eos_token_id=f("eos_token_id", _opt(_token(vocab_size)), f"a token id below {vocab_size}", None),
            chat_template=template,
            chat_turns=dict(turns) if turns is not None else None,
        )

    def to_json(self) -> dict:
        out = {"file": self.file, "eos_token_id": self.eos_token_id, "chat_template": self.chat_template}
        return out if self.chat_turns is None else {**out, "chat_turns": dict(self.chat_turns)}


@dataclass(frozen=True)
class GenerationDefaults:
    """A task's decoding defaults: how many tokens to generate, how much source text to keep."""

    max_new_tokens: int
    max_source_tokens: int | None = None

    @classmethod
    def from_json(cls, obj: Any, where: str, path: str) -> GenerationDefaults:
        f = _Fields(obj, where, path)
        return cls(
            max_new_tokens=f("max_new_tokens", _pos, POS),
            max_source_tokens=f("max_source_tokens", _opt(_pos), f"{POS} or null", None),
        )

    def to_json(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "max_source_tokens": self.max_source_tokens}


@dataclass(frozen=True)
class TaskEntry:
    """One task: its adapter file, adapter size, task tokens, prompt template and generation defaults."""

    adapter_file: str
    bottleneck: int
    special_tokens: tuple[str, ...]
    special_token_ids: tuple[int, ...]  # task-local ids vocab_size + k
    template: str
    eos_token_id: int
    generation: GenerationDefaults
    metric: str | None = None
    trainable_params: int = 0
    trainable_share: float = 0.0  # percent of the backbone's parameters
    backbone_fingerprint: str = ""  # of the backbone the adapter was trained on ("": a bundle's, older export)
    backbone_source: str = ""  # that backbone's name (a built-in name or a file/folder name; "": older export)
    method: str = "adapter"  # names.METHODS: the bottleneck adapter (bundles before LoRA tasks) or a LoRA

    @classmethod
    def from_json(cls, obj: Any, where: str, vocab_size: int, path: str) -> TaskEntry:
        f = _Fields(obj, where, path)
        method = f("method", lambda v: v in names.METHODS, f"one of {list(names.METHODS)}", "adapter")
        if method == "lora":  # a LoRA has no task tokens
            specials = f("special_tokens", _str_list_or_empty, "a list of distinct strings")
        else:
            specials = f("special_tokens", _str_list, "a non-empty list of distinct strings")
        ids = [vocab_size + k for k in range(len(specials))]
        f("special_token_ids", lambda v: v == ids, f"vocab_size + k = {ids}")
        template = f("template", _str, f"a string with {INPUT_FIELD} once")
        try:
            check_template(template, specials)
        except ConfigError as e:
            raise BundleError(f"{where}: {path}.template: {e}") from None
        return cls(
            adapter_file=f("adapter_file", _str, "a file name"),
            bottleneck=f("bottleneck", _pos, POS),
            special_tokens=tuple(specials),
            special_token_ids=tuple(ids),
            template=template,
            eos_token_id=f("eos_token_id", _token(vocab_size), f"a token id below {vocab_size}"),
            generation=GenerationDefaults.from_json(f.sub("generation").d, where, f.name("generation")),
            metric=f("metric", _opt(_str), "a metric name or null", None),
            trainable_params=f("trainable_params", lambda v: _int(v) and v >= 0, "a count >= 0", 0),
            trainable_share=f("trainable_share", _share, "a percentage in [0, 100]", 0.0),
            backbone_fingerprint=f(
                "backbone_fingerprint", lambda v: v == "" or _fingerprint(v), "a hex fingerprint", ""
            ),
            backbone_source=f("backbone_source", lambda v: isinstance(v, str) and len(v) <= 255, "a name", ""),
            method=method,
        )

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(special_tokens=list(self.special_tokens), special_token_ids=list(self.special_token_ids))
        return {**d, "generation": self.generation.to_json()}


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_str(s) for s in v) and len(set(v)) == len(v)


def _str_list_or_empty(v: Any) -> bool:
    return v == [] or _str_list(v)


def _fingerprint(v: Any) -> bool:
    return isinstance(v, str) and bool(FINGERPRINT.match(v))


def _share(v: Any) -> bool:
    return (isinstance(v, float) or _int(v)) and 0 <= v <= 100


@dataclass(frozen=True)
class Manifest:
    """A bundle's ``manifest.json``: backbone, tokenizer, tasks by name, file checksums and the export log."""

    backbone: BackboneRecord
    tokenizer: TokenizerRecord
    tasks: Mapping[str, TaskEntry]
    files: Mapping[str, str] = field(default_factory=dict)  # relative path -> sha256
    sizes: Mapping[str, int] = field(default_factory=dict)  # relative path -> bytes (checked before hashing)
    export_log: Mapping[str, Any] = field(default_factory=dict, compare=False)  # informational: timings, op counts
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", MappingProxyType(dict(self.tasks)))
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))
        object.__setattr__(self, "sizes", MappingProxyType(dict(self.sizes)))

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Manifest:
        f = _Fields(obj, where)
        version = f("schema_version", _int, f"schema version {SCHEMA_VERSION}")
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"{where}: schema_version {version!r} is not supported (this edgevlm reads {SCHEMA_VERSION})"
            )
        bb = BackboneRecord.from_json(f.sub("backbone").d, where)
        if f("io", lambda v: True, "an object") != bb.io().names():
            raise BundleError(f"{where}: io: names do not match this edgevlm's graph layout for n_layer={bb.n_layer}")
        tasks = f.sub("tasks").d
        bad = next((k for k in tasks if not (isinstance(k, str) and TASK_NAME.match(k))), None)
        if bad is not None:
            raise _fail(where, "tasks", "task names of letters, digits, '_' or '-'", bad)
        entries = {k: TaskEntry.from_json(v, where, bb.vocab_size, f"tasks.{k}") for k, v in tasks.items()}
        for k, e in entries.items():
            if e.backbone_fingerprint and e.backbone_fingerprint != bb.fingerprint:
                raise BundleError(f"{where}: tasks.{k}.backbone_fingerprint: not backbone.fingerprint (other backbone)")
        files = f("files", _checksums, "an object of file -> sha256 (at least one)")
        sizes = f("sizes", _sizes, "an object of file -> byte count", {})
        return cls(
            backbone=bb,
            tokenizer=TokenizerRecord.from_json(f.sub("tokenizer").d, where, bb.vocab_size),
            tasks=entries,
            files=files,
            sizes=sizes,
            export_log=f("export_log", lambda v: isinstance(v, Mapping), "an object", {}),
        )

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "backbone": self.backbone.to_json(),
            "tokenizer": self.tokenizer.to_json(),
            "io": self.backbone.io().names(),
            "tasks": {k: t.to_json() for k, t in self.tasks.items()},
            "files": dict(self.files),
            "sizes": dict(self.sizes),
            "export_log": dict(self.export_log),
        }

    def referenced_files(self) -> list[str]:
        """Every file the manifest points at (each must be listed under ``files``)."""
        return [self.backbone.file, self.tokenizer.file] + [t.adapter_file for t in self.tasks.values()]


def _sizes(v: Any) -> bool:
    return isinstance(v, Mapping) and all(isinstance(k, str) and _int(n) and n >= 0 for k, n in v.items())


def _checksums(v: Any) -> bool:
    return isinstance(v, Mapping) and bool(v) and all(isinstance(s, str) and SHA256.match(s) for s in v.values())
