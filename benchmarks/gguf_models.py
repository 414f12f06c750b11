"""GGUF files for the llama.cpp peer, made with llama.cpp's own converter and quantizer.

The converter (``convert_hf_to_gguf.py`` and its ``conversion`` package) ships in the ``llama-cpp-python``
source package (``vendor/llama.cpp``); ``make bench-peers`` unpacks it to ``.venv/peers/llama.cpp`` and
:func:`converter_dir` finds it there (or at ``$EDGEVLM_LLAMA_CPP_SRC``). It runs in its own process on the
same Hugging Face directory the other engines load. The random-weight GPT-2 configurations carry the tiny
backbone's byte-level BPE tokenizer, whose pre-tokenizer hash the converter does not know: it is declared
``gpt-2`` (the same byte-level split); the benchmark feeds token ids, so llama.cpp's tokenizer is never used.
F32 and Q8_0 come from the converter (``--outtype``); Q4_0 and other k-quants from ``llama_model_quantize``
on the F32 file with llama.cpp's default recipe (which keeps some tensors wider, e.g. the output matrix).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgevlm.core.errors import ConfigError

SRC_ENV = "EDGEVLM_LLAMA_CPP_SRC"
CONVERTER_TYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "Q8_0": "MOSTLY_Q8_0"}  # written by the converter
QUANTIZE_TYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15}  # llama_ftype values for llama_model_quantize

_CONVERT = r"""
import sys
from pathlib import Path
src, hf, out, ftype, pre = sys.argv[1:6]
sys.path[:0] = [src, src + "/gguf-py"]
import gguf, torch
from conversion import get_model_class, ModelBase

cls = get_model_class(ModelBase.load_hparams(Path(hf), False)["architectures"][0])
if pre:  # this process converts one model: declare its pre-tokenizer instead of matching a known hash
    cls.get_vocab_base_pre = lambda self, tokenizer: pre
model = cls(Path(hf), getattr(gguf.LlamaFileType, ftype), Path(out))
if "n_positions" in model.hparams:  # GPT-2 configs saved by transformers 4.57 have n_positions, no n_ctx
    model.hparams.setdefault("n_ctx", model.hparams["n_positions"])
with torch.inference_mode():
    model.write()
"""


def converter_dir() -> Path:
    """The unpacked ``vendor/llama.cpp`` of the llama-cpp-python sdist (converter + its gguf-py)."""
    env = os.environ.get(SRC_ENV)
    cand = Path(env) if env else Path(sys.prefix) / "peers" / "llama.cpp"
    if not (cand / "convert_hf_to_gguf.py").is_file():
        where = f"${SRC_ENV}={env}" if env else str(cand)
        raise ConfigError(f"llama.cpp's converter not found at {where} (run `make bench-peers`, which unpacks it)")
    return cand


def convert(hf_dir: Path, out: Path, ftype: str, pre_tokenizer: str | None = "gpt-2") -> Path:
    """``hf_dir`` -> GGUF ``out`` at ``ftype`` (F32/F16/Q8_0) with llama.cpp's converter, in a child process."""
    if ftype not in CONVERTER_TYPES:
        raise ConfigError(f"converter output type {ftype!r}: expected one of {list(CONVERTER_TYPES)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    args = [str(converter_dir()), str(hf_dir), str(tmp), CONVERTER_TYPES[ftype], pre_tokenizer or ""]
    r = subprocess.run([sys.executable, "-c", _CONVERT, *args], capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"llama.cpp converter failed on {hf_dir} ({ftype}): {tail}")
    os.replace(tmp, out)
    return out


def quantize(src: Path, out: Path, qtype: str, threads: int = 2) -> Path:
    """llama.cpp's own quantizer (``llama_model_quantize``, default recipe) from a GGUF ``src`` (F32/F16, or an
    already quantized file: requantized, as ``llama-quantize --allow-requantize`` does)."""
    import logging

    import llama_cpp

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp logs every tensor at INFO
    if qtype not in QUANTIZE_TYPES:
        raise ConfigError(f"quantization type {qtype!r}: expected one of {list(QUANTIZE_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.allow_requantize = QUANTIZE_TYPES[qtype], threads, True
    tmp = out.with_name(out.name + ".tmp")
    if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params) != 0:
        raise ConfigError(f"llama_model_quantize failed: {src} -> {qtype}")
    os.replace(tmp, out)
    return out


def gguf_model(hf_dir: Path, out_dir: Path, qtype: str, f32: Path | None = None) -> Path:
    """``out_dir/model-<qtype>.gguf`` for ``hf_dir``: converted directly where the converter writes the type
    (unless a source ``f32`` is given), else quantized from ``f32`` (the F32 conversion made in ``out_dir``
    when not given; or any GGUF, e.g. a shipped Q4_1 file, requantized)."""
    out = out_dir / f"model-{qtype}.gguf"
    if qtype in CONVERTER_TYPES and f32 is None:
        return convert(hf_dir, out, qtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    return quantize(f32 or gguf_model(hf_dir, out_dir, "F32"), out, qtype)
