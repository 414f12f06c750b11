"""Peer engines of the latency suite beside edgevlm, optimum and PyTorch: llama.cpp on GGUF conversions.

Present when the ``peers`` extra is installed (``make bench-peers``: llama-cpp-python built from source, and
llama.cpp's converter unpacked, see :mod:`.gguf_models`); otherwise the suite notes why and goes on. Each
llama.cpp format runs twice: as shipped (its OpenMP worker threads spin between operations) and with
``OMP_WAIT_POLICY=PASSIVE`` (``/passive``: they sleep, as edgevlm's ORT threads do by default) — on a
machine with other work the spinning threads lose their cores, which the two rows show side by side.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.errors import ConfigError

from .llamacpp import KIND as LLAMACPP
from .llamacpp import PASSIVE

GGUF_TYPES = ("F32", "Q8_0", "Q4_0")
SHIPPED = {"smollm2-135m": "Q4_1"}  # sizes whose source is a GGUF: its type, run as shipped
WIDTH = {"fp32": ("F32",), "int8": ("Q8_0",), "int4": ("Q4_0", "Q4_1")}  # edgevlm mode -> llama.cpp types


def make_engine(kind: str, fmt: str, path: Path, threads: int, task: str | None = None):
    """The engine object for ``kind`` (edgevlm/pytorch/optimum: :class:`.engines.Engine`; llamacpp: a peer)."""
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


def _gguf(ws, size: str, hf: Path, qtype: str, src: Path | None) -> Path:
    from .gguf_models import gguf_model

    return ws.get(f"{size}-gguf-{qtype}", lambda p: gguf_model(hf, p, qtype, src)) / f"model-{qtype}.gguf"


def peer_ratios(report, size: str, rows: list[dict]) -> None:
    """Decode and prefill of each edgevlm mode against llama.cpp at the same weight width (its faster row), and
    the best edgevlm mode against the best peer overall."""
    by = {r["engine"]: r for r in rows}
    peers = [r for r in rows if r["kind_"] == LLAMACPP]
    if not peers:
        return
    for mode, types in WIDTH.items():
        ours = next((r for r in rows if r["kind_"] == "edgevlm" and r["fmt"] == mode), None)
        theirs = [by[f"llama.cpp {t}{m}"] for t in types for m in ("", PASSIVE) if f"llama.cpp {t}{m}" in by]
        if ours and theirs:
            best = max(theirs, key=lambda r: r["tokens_per_s"])
            _ratio(report, size, ours, best, "same width")
    ours = max((r for r in rows if r["kind_"] == "edgevlm"), key=lambda r: r["tokens_per_s"])
    _ratio(report, size, ours, max(peers, key=lambda r: r["tokens_per_s"]), "best vs best")


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
