"""Peer engines of the latency suite beside edgevlm, optimum and PyTorch: llama.cpp on GGUF conversions, and
onnxruntime-genai on its own builder's int4 model (:mod:`.ortgenai`; Llama-family sizes only: its builder has no
GPT-2).

Present when the ``peers`` extra is installed (``make bench-peers``: llama-cpp-python built from source, and
llama.cpp's converter unpacked, see :mod:`.gguf_models`); otherwise the suite notes why and goes on. Each
llama.cpp format runs twice: as shipped (its OpenMP worker threads spin between operations) and with
``OMP_WAIT_POLICY=PASSIVE`` (``/passive``: they sleep, as edgevlm's ORT threads do by default) — on a
machine with other work the spinning threads lose their cores, which the two rows show side by side.
onnxruntime-genai runs the same way: as shipped (ORT's threads spin) and ``/passive`` (they sleep).
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.errors import ConfigError

from . import ortgenai
from .engines import SPIN
from .llamacpp import KIND as LLAMACPP
from .llamacpp import PASSIVE

GGUF_TYPES = ("F32", "Q8_0", "Q4_0")
SHIPPED = {"smollm2-135m": "Q4_1"}  # sizes whose source is a GGUF: its type, run as shipped
WIDTH = {"fp32": ("F32",), "int8": ("Q8_0",), "int4": ("Q4_0", "Q4_1")}  # edgevlm mode -> llama.cpp types
GENAI_SIZES = ("smollm2-135m",)  # sizes onnxruntime-genai's builder takes (Llama family; it has no GPT-2)
GENAI_FORMATS = ("int4", "int4" + ortgenai.PASSIVE)


def make_engine(kind: str, fmt: str, path: Path, threads: int, task: str | None = None):
    """The engine object for ``kind`` (edgevlm/pytorch/optimum: :class:`.engines.Engine`; llamacpp, ortgenai:
    a peer)."""
    if kind == ortgenai.KIND:
        return ortgenai.OrtGenaiEngine(kind, fmt, Path(path), threads, task)
    if kind == LLAMACPP:
        from .llamacpp import LlamaCppEngine

        return LlamaCppEngine(kind, fmt, Path(path), threads, task)
    from .engines import Engine

    return Engine(kind, fmt, Path(path), threads, task)


def unavailable() -> str | None:
    """Why the llama.cpp peer cannot run here (None when it can)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return "llama.cpp peer skipped: llama-cpp-python is not installed (the peers extra; `make bench-peers`)"
    from .gguf_models import converter_dir

    try:
        converter_dir()
    except ConfigError as e:
        return f"llama.cpp peer skipped: {e}"
    return None


def llamacpp_engines(ws, size: str, hf: Path, threads: int, pbar) -> list:
    """GGUF F32/Q8_0/Q4_0 of the same Hugging Face directory (a GGUF-sourced size: its own file and the
    others requantized from it), each as shipped and ``/passive``."""
    from .gguf_models import gguf_model

    pbar.set_postfix_str(f"{size}: GGUF conversions")
    if size in SHIPPED:  # the model's own GGUF as shipped, and requantized from it
        from edgevlm.train.sources import locate_builtin

        src, shipped = Path(locate_builtin(size)), SHIPPED[size]
        models = {shipped: src}
        models.update({t: _gguf(ws, size, hf, t, src) for t in GGUF_TYPES[1:] if t != shipped})
    else:
        f32 = ws.get(f"{size}-gguf-F32", lambda p: gguf_model(hf, p, "F32")) / "model-F32.gguf"
        models = {t: _gguf(ws, size, hf, t, None if t == "Q8_0" else f32) for t in GGUF_TYPES[1:]}
        models = {"F32": f32, **models}
    return [make_engine(LLAMACPP, t + mode, path, threads) for t, path in models.items() for mode in ("", PASSIVE)]


def genai_engines(ws, size: str, hf: Path, threads: int, pbar) -> list:
    """onnxruntime-genai's int4 model of ``hf`` (its builder), as shipped and ``/passive``."""
    pbar.set_postfix_str(f"{size}: onnxruntime-genai builder")
    model = ws.get(f"{size}-genai-int4", lambda p: ortgenai.build(hf, p))
    return [make_engine(ortgenai.KIND, f, model, threads) for f in GENAI_FORMATS]


def _gguf(ws, size: str, hf: Path, qtype: str, src: Path | None) -> Path:
    from .gguf_models import gguf_model

    return ws.get(f"{size}-gguf-{qtype}", lambda p: gguf_model(hf, p, qtype, src)) / f"model-{qtype}.gguf"


def peer_ratios(report, size: str, rows: list[dict]) -> None:
    """Decode and prefill of each edgevlm row against each peer (llama.cpp, onnxruntime-genai) at the same weight
    width and the same thread policy (sleeping or spinning, :func:`policy`), and the best edgevlm row against the
    best peer row overall."""
    peers = [r for r in rows if r["kind_"] in (LLAMACPP, ortgenai.KIND)]
    if not peers:
        return
    for ours in (r for r in rows if r["kind_"] == "edgevlm" and r["fmt"].split("/")[0] in WIDTH):
        for kind in (LLAMACPP, ortgenai.KIND):
            theirs = [r for r in peers if r["kind_"] == kind and width(r) == ours["fmt"].split("/")[0]]
            theirs = [r for r in theirs if policy(r) == policy(ours)]
            if theirs:
                best = max(theirs, key=lambda r: r["tokens_per_s"])
                _ratio(report, size, ours, best, f"same width, threads {policy(ours)}")
    ours = max((r for r in rows if r["kind_"] == "edgevlm"), key=lambda r: r["tokens_per_s"])
    _ratio(report, size, ours, max(peers, key=lambda r: r["tokens_per_s"]), "best vs best")


def policy(row: dict) -> str:
    """How a row's worker threads wait: "spin" (edgevlm ``/spin``, a peer as shipped) or "sleep" (edgevlm's
    default, a peer's ``/passive``)."""
    if row["kind_"] == "edgevlm":
        return "spin" if row["fmt"].endswith(SPIN) else "sleep"
    return "sleep" if PASSIVE in row["fmt"] else "spin"


def width(row: dict) -> str | None:
    """The edgevlm mode of a peer row's weights (llama.cpp: its GGUF type; onnxruntime-genai: its precision)."""
    base = row["fmt"].split("/")[0].split("+")[0]
    if row["kind_"] == ortgenai.KIND:
        return base
    return next((mode for mode, types in WIDTH.items() if base in types), None)


def _ratio(report, size: str, ours: dict, peer: dict, what: str) -> None:
    x = ours["tokens_per_s"] / peer["tokens_per_s"]
    pre = {k: peer[k] / ours[k] for k in ("prefill_short_ms", "prefill_long_ms")}  # > 1: ours is faster
    report.add(
        f"[{size}] {ours['engine']} vs {peer['engine']} ({what}): decode {x:.2f}x "
        f"({ours['tokens_per_s']:.1f} vs {peer['tokens_per_s']:.1f} tokens/s); prefill speed "
        f"{pre['prefill_short_ms']:.2f}x (short prompt), {pre['prefill_long_ms']:.2f}x (long)",
        kind="peer_ratio",
        size=size,
        engine=ours["engine"],
        peer=peer["engine"],
        what=what,
        decode_x=x,
        prefill_short_x=pre["prefill_short_ms"],
        prefill_long_x=pre["prefill_long_ms"],
    )
