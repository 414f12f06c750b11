"""GGUF files for the llama.cpp peer, made with llama.cpp's own converter and quantizer.

The converter (``convert_hf_to_gguf.py`` and its ``conversion`` package) ships in the ``llama-cpp-python``
source package (``vendor/llama.cpp``); ``make bench-peers`` unpacks it to ``.venv/peers/llama.cpp`` and
:func:`converter_dir` finds it there (or at ``$EDGEVLM_LLAMA_CPP_SRC``). It runs in its own process on the
same Hugging Face directory the other engines load. The random-weight GPT-2 configurations carry the tiny
backbone's byte-level BPE tokenizer, whose pre-tokenizer hash the converter does not know: it is declared
``gpt-2`` (the same byte-level split), and read as a byte-level BPE vocabulary also for a Llama-family
configuration (the tiny Llama carries the same tokenizer); the benchmark feeds token ids, so llama.cpp's
tokenizer is never used.
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
LORA_FILE = "lora.gguf"  # a model directory's LoRA (the llama.cpp engine's "+lora" formats load it)
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
    cls.set_vocab = cls._set_vocab_gpt2  # a byte-level BPE tokenizer.json (Llama's first tries sentencepiece)
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


_LORA = r"""
import sys, torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
hf, out, rank, targets = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
base = AutoModelForCausalLM.from_pretrained(hf)
fan = base.config.model_type == "gpt2"  # HF Conv1D layers
torch.manual_seed(0)  # A's initialisation
model = get_peft_model(base, LoraConfig(
    r=rank, lora_alpha=2 * rank, target_modules=targets, fan_in_fan_out=fan, lora_dropout=0.0))
g = torch.Generator().manual_seed(0)
with torch.no_grad():  # B is zero at init (a no-op): random, so the adapter changes the output
    for name, t in model.named_parameters():
        if "lora_B" in name:
            t.copy_(torch.randn(t.shape, generator=g) * 0.02)
model.save_pretrained(out)
if fan:  # see lora(): pre-transpose the pairs the converter transposes
    from safetensors.torch import load_file, save_file
    f = out + "/adapter_model.safetensors"
    t = load_file(f)
    for a in [k for k in t if ".lora_A." in k]:
        b = a.replace(".lora_A.", ".lora_B.")
        t[a], t[b] = t[b].T.contiguous(), t[a].T.contiguous()
    save_file(t, f)
"""
GPT2_LORA_TARGETS = "c_attn,c_proj,c_fc"  # every linear layer of a GPT-2 block (HF Conv1D: fan_in_fan_out)
LLAMA_LORA_TARGETS = "q_proj,v_proj"  # PEFT's default for Llama-family models (the common rank-8 LoRA)


def random_peft(hf_dir: Path, out: Path, rank: int = 8, targets: str = GPT2_LORA_TARGETS) -> Path:
    """``out``: a rank-``rank`` PEFT LoRA directory on ``hf_dir`` (alpha = 2 rank, A as PEFT initialises it,
    B random N(0, 0.02^2), both seeded, so the adapter is not a no-op), made in a child process. A GPT-2 LoRA is
    stored pre-transposed for llama.cpp's converter (see :func:`lora`): PEFT cannot load it as is; a
    Llama-family one is plain PEFT."""
    cmd = [sys.executable, "-c", _LORA, str(hf_dir), str(out), str(rank), targets]
    _run(cmd, f"LoRA for {hf_dir} failed (PEFT)")
    return out


def convert_lora(hf_dir: Path, peft_dir: Path, out: Path) -> Path:
    """A PEFT LoRA directory -> GGUF ``out`` (F32) with llama.cpp's ``convert_lora_to_gguf.py``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    cmd = [sys.executable, str(converter_dir() / "convert_lora_to_gguf.py"), "--base", str(hf_dir)]
    _run(cmd + ["--outtype", "f32", "--outfile", str(tmp), str(peft_dir)], f"LoRA for {hf_dir} failed (converter)")
    os.replace(tmp, out)
    return out


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"{what}: {tail}")


def lora(hf_dir: Path, out: Path, rank: int = 8, targets: str = GPT2_LORA_TARGETS) -> Path:
    """A rank-``rank`` PEFT LoRA on ``hf_dir`` (random B, :func:`random_peft`) converted with llama.cpp's
    ``convert_lora_to_gguf.py``: ``out/lora.gguf`` (F32), next to the PEFT directory ``out/peft`` it came from.

    GPT-2's converter transposes every ``c_attn/c_proj/c_fc`` tensor (HF Conv1D weights are [in, out]) and
    applies that to a LoRA pair too, but PEFT stores the pair in Linear orientation (A [r, in], B [out, r])
    even with ``fan_in_fan_out``: unmodified, llama.cpp refuses the result ("incorrect shape") and
    llama-cpp-python 0.3.36 then crashes in decode. So a GPT-2 ``out/peft`` holds each pair as (B^T, A^T), which
    the converter's transpose turns back into (A, B); the test checks llama.cpp's logits against PEFT's."""
    out.mkdir(parents=True, exist_ok=True)
    return convert_lora(hf_dir, random_peft(hf_dir, out / "peft", rank, targets), out / LORA_FILE)
