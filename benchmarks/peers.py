"""Peer engines of the latency suite beside edgevlm, optimum and PyTorch: llama.cpp on GGUF conversions, and
onnxruntime-genai on its own builder's int4 model (:mod:`.ortgenai`; Llama-family sizes only: its builder has no
GPT-2).

Present when the ``peers`` extra is installed (``make bench-peers``: llama-cpp-python built from source, and
llama.cpp's converter unpacked, see :mod:`.gguf_models`); otherwise the suite notes why and goes on. Each
llama.cpp format runs twice: as shipped (its OpenMP worker threads spin between operations) and with
``OMP_WAIT_POLICY=PASSIVE`` (``/passive``: they sleep, as edgevlm's ORT threads do by default) — on a
machine with other work the spinning threads lose their cores, which the two rows show side by side.
onnxruntime-genai runs the same way: as shipped (ORT's threads spin) and ``/passive`` (they sleep).

With their adapters on (Llama-family sizes, :data:`LORA_SIZES`): each peer also runs with a LoRA active, the
common default shape (PEFT rank 8, alpha 16, on ``q_proj``/``v_proj``; B random N(0, 0.02^2) so it is not a
no-op; untrained: only its cost matters), one PEFT directory per work dir for both peers. onnxruntime-genai
loads it as an ``og.Adapters`` file (``int4+lora``); llama.cpp as a converted ``lora.gguf`` applied at run
time, not merged (``Q4_0+lora``, ``Q8_0+lora``; see :mod:`.llamacpp`). :func:`peer_ratios` sets edgevlm with
its task active against both, and against genai with no adapter, at issue 25's targets.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.core.errors import ConfigError

from . import ortgenai
from .engines import SPIN
from .gguf_models import LLAMA_LORA_TARGETS
from .llamacpp import KIND as LLAMACPP
from .llamacpp import PASSIVE

GGUF_TYPES = ("F32", "Q8_0", "Q4_0")
SHIPPED = {"smollm2-135m": "Q4_1"}  # sizes whose source is a GGUF: its type, run as shipped
WIDTH = {"fp32": ("F32",), "int8": ("Q8_0",), "int4": ("Q4_0", "Q4_1")}  # edgevlm mode -> llama.cpp types
GENAI_SIZES = ("smollm2-135m",)  # sizes onnxruntime-genai's builder takes (Llama family; it has no GPT-2)
GENAI_FORMATS = ("int4", "int4" + ortgenai.PASSIVE)
LORA_SIZES = ("smollm2-135m",)  # Llama-family sizes whose peers also run with a LoRA active
LORA_RANK, LORA_TARGETS = 8, LLAMA_LORA_TARGETS  # PEFT's default LoRA shape for Llama-family models
LORA_GGUF_TYPES = ("Q4_0", "Q8_0")
# issue 25's targets with a task active: edgevlm int4 (a task active) >= x times each peer (same thread policy)
TASK_TARGETS = {(ortgenai.KIND, False): 0.9, (ortgenai.KIND, True): 1.25, (LLAMACPP, True): 1.1}


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


def all_engines(ws, size: str, hf: Path, threads: int, pbar) -> list:
    """The peers that can run here: llama.cpp, onnxruntime-genai (:data:`GENAI_SIZES`), and for
    :data:`LORA_SIZES` each with its LoRA active too."""
    out, lora = [], size in LORA_SIZES
    if unavailable() is None:
        out += llamacpp_engines(ws, size, hf, threads, pbar)
        out += llamacpp_lora_engines(ws, size, hf, threads, pbar, out) if lora else []
    if size in GENAI_SIZES and ortgenai.unavailable() is None:
        out += genai_engines(ws, size, hf, threads, pbar)
        out += genai_lora_engines(ws, size, hf, threads, pbar) if lora else []
    return out


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


def peft_lora(ws, size: str, hf: Path) -> Path:
    """The size's random PEFT LoRA (:data:`LORA_RANK` on :data:`LORA_TARGETS`), built once per work dir."""
    from .gguf_models import random_peft

    return ws.get(f"{size}-peft-lora-r{LORA_RANK}", lambda p: random_peft(hf, p, LORA_RANK, LORA_TARGETS))


def genai_lora_engines(ws, size: str, hf: Path, threads: int, pbar) -> list:
    """onnxruntime-genai int4 built with the size's LoRA as an adapter file, active (``+lora``), as shipped and
    ``/passive``."""
    pbar.set_postfix_str(f"{size}: onnxruntime-genai builder with a LoRA")
    peft = peft_lora(ws, size, hf)
    model = ws.get(f"{size}-genai-int4-lora-r{LORA_RANK}", lambda p: ortgenai.build(hf, p, adapter=peft))
    return [make_engine(ortgenai.KIND, f + ortgenai.LORA, model, threads) for f in GENAI_FORMATS]


def llamacpp_lora_engines(ws, size: str, hf: Path, threads: int, pbar, plain: list) -> list:
    """llama.cpp Q4_0 and Q8_0 (the model files of the ``plain`` llama.cpp engines) with the size's LoRA
    (``lora.gguf``, llama.cpp's converter) applied, as shipped and ``/passive``: each in a work-dir folder that
    links the model file beside its ``lora.gguf``."""
    from .gguf_models import LORA_FILE, convert_lora
    from .llamacpp import LORA

    pbar.set_postfix_str(f"{size}: LoRA GGUF")
    peft = peft_lora(ws, size, hf)
    lora = ws.get(f"{size}-lora-gguf-r{LORA_RANK}", lambda p: convert_lora(hf, peft, p / LORA_FILE)) / LORA_FILE
    engines = []
    models = {e.fmt: Path(e.path) for e in plain if e.kind == LLAMACPP}
    for t in (t for t in LORA_GGUF_TYPES if t in models):
        model = models[t]
        d = ws.get(f"{size}-gguf-{t}-lora-r{LORA_RANK}", lambda p, m=model: _beside(m, lora, p))
        engines += [make_engine(LLAMACPP, t + mode + LORA, d / model.name, threads) for mode in ("", PASSIVE)]
    return engines


def _beside(model: Path, lora: Path, out: Path) -> None:
    """``out`` with links to ``model`` and to ``lora`` (named as the engine looks for it)."""
    from .gguf_models import LORA_FILE

    out.mkdir(parents=True)
    (out / model.name).symlink_to(model.resolve())
    (out / LORA_FILE).symlink_to(lora.resolve())


def _gguf(ws, size: str, hf: Path, qtype: str, src: Path | None) -> Path:
    from .gguf_models import gguf_model

    return ws.get(f"{size}-gguf-{qtype}", lambda p: gguf_model(hf, p, qtype, src)) / f"model-{qtype}.gguf"


def peer_ratios(report, size: str, rows: list[dict]) -> None:
    """Decode and prefill of each edgevlm row against each peer (llama.cpp, onnxruntime-genai) at the same weight
    width and the same thread policy (sleeping or spinning, :func:`policy`): the peer with no adapter, and (an
    edgevlm row with a task active) the peer with its LoRA active (:func:`has_lora`); then the best edgevlm row
    against the best peer row with no adapter. Comparisons that issue 25 sets a target for carry it
    (:data:`TASK_TARGETS`, edgevlm int4 with a task active)."""
    peers = [r for r in rows if r["kind_"] in (LLAMACPP, ortgenai.KIND)]
    if not peers:
        return
    for ours in (r for r in rows if r["kind_"] == "edgevlm" and r["fmt"].split("/")[0] in WIDTH):
        for lora in (False, True) if ours.get("task") else (False,):
            for kind in (LLAMACPP, ortgenai.KIND):
                theirs = [r for r in peers if r["kind_"] == kind and has_lora(r) == lora and policy(r) == policy(ours)]
                theirs = [r for r in theirs if width(r) == ours["fmt"].split("/")[0]]
                if theirs:
                    what = f"{'with its LoRA, ' if lora else ''}same width, threads {policy(ours)}"
                    best = max(theirs, key=lambda r: r["tokens_per_s"])
                    _ratio(report, size, ours, best, what, target(ours, kind, lora))
    plain = [r for r in peers if not has_lora(r)] or peers
    ours = max((r for r in rows if r["kind_"] == "edgevlm"), key=lambda r: r["tokens_per_s"])
    _ratio(report, size, ours, max(plain, key=lambda r: r["tokens_per_s"]), "best vs best")


def has_lora(row: dict) -> bool:
    """Whether a peer row runs with its LoRA active (``+lora``; genai's ``+lora-graph`` runs the zero LoRA)."""
    return row["fmt"].endswith(ortgenai.LORA)


def target(ours: dict, kind: str, lora: bool) -> float | None:
    """Issue 25's decode-speed target of an edgevlm row against a peer row (None: no target set)."""
    if not ours.get("task") or ours["fmt"].split("/")[0] != "int4":
        return None
    return TASK_TARGETS.get((kind, lora))


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


def _ratio(report, size: str, ours: dict, peer: dict, what: str, goal: float | None = None) -> None:
    x = ours["tokens_per_s"] / peer["tokens_per_s"]
    pre = {k: peer[k] / ours[k] for k in ("prefill_short_ms", "prefill_long_ms")}  # > 1: ours is faster
    verdict = "" if goal is None else f"; target >= {goal:.2f}x: {'met' if x >= goal else 'missed'}"
    report.add(
        f"[{size}] {ours['engine']} vs {peer['engine']} ({what}): decode {x:.2f}x "
        f"({ours['tokens_per_s']:.1f} vs {peer['tokens_per_s']:.1f} tokens/s){verdict}; prefill speed "
        f"{pre['prefill_short_ms']:.2f}x (short prompt), {pre['prefill_long_ms']:.2f}x (long)",
        kind="peer_ratio",
        size=size,
        engine=ours["engine"],
        peer=peer["engine"],
        what=what,
        decode_x=x,
        target_x=goal,
        target_met=None if goal is None else x >= goal,
        prefill_short_x=pre["prefill_short_ms"],
        prefill_long_x=pre["prefill_long_ms"],
    )
