"""Evaluation: decode every distinct source, score against all its references, write predictions.

:func:`evaluate` takes any generator ``source -> text`` (optionally with a
``batch(sources) -> texts`` method), so the PyTorch model here and an ONNX
bundle through the runtime are scored by the same code.
:func:`evaluate_adapter` is the Python form of ``edgevlm eval``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from edgevlm.core.config import AdapterMeta, TaskConfig, atomic_write_text
from edgevlm.core.errors import ConfigError, TaskError
from edgevlm.train.layout import BACKBONE_DIR, find_adapter
from edgevlm.train.metrics import score
from edgevlm.train.tasks import BUILTIN_TASKS, Example
from edgevlm.train.tasks.loaders import group_by_source

Generator = Callable[[str], str]


def evaluate(
    examples: list[Example],
    generate: Generator,
    out: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    task: str | None = None,
) -> dict:
    """Metrics of ``generate`` on ``examples`` grouped by source (multi-reference); optionally write JSONL.

    Returns ``{"n": ..., "bleu", "rouge1", "rouge2", "rougeL", "f1", "em"}`` (0-100), and for ``task="nlg"``
    the E2E challenge's ``e2e_*`` scores too.
    """
    from tqdm.auto import tqdm

    groups = group_by_source(examples)[:limit]
    if not groups:
        raise ConfigError("no examples to evaluate")
    batch = getattr(generate, "batch", None) or (lambda xs: [generate(x) for x in xs])
    preds: list[str] = []
    with tqdm(total=len(groups), desc="evaluate", unit="ex", disable=not progress) as bar:
        for i in range(0, len(groups), batch_size):
            preds += batch([g.source for g in groups[i : i + batch_size]])
            bar.update(min(batch_size, len(groups) - i))
    metrics = {"n": len(groups), **score(preds, [g.refs for g in groups], task)}
    if out is not None:
        write_predictions(out, groups, preds)
    return metrics


def write_predictions(out: str | Path, groups: list[Example], preds: list[str]) -> Path:
    """JSONL, one ``{"source", "prediction", "references"}`` per line (written atomically)."""
    lines = [
        json.dumps({"source": g.source, "prediction": p, "references": g.refs}, ensure_ascii=False)
        for g, p in zip(groups, preds)
    ]
    atomic_write_text(out, "\n".join(lines) + "\n")
    return Path(out)


class TorchGenerator:
    """``source -> text`` with the PyTorch VLM: greedy (the paper's default) or beam search."""

    def __init__(self, vlm, backbone, cfg: TaskConfig, num_beams: int = 1, max_new_tokens: int | None = None):
        if num_beams < 1:
            raise ConfigError(f"--num-beams must be >= 1, got {num_beams}")
        self.vlm, self.backbone, self.cfg, self.num_beams = vlm, backbone, cfg, num_beams
        self.max_new_tokens = max_new_tokens or cfg.max_new_tokens
        self.budget = vlm.sizes.n_positions - self.max_new_tokens
        if self.budget <= len(cfg.special_tokens):
            raise ConfigError(
                f"--max-new-tokens {self.max_new_tokens} leaves no room for a prompt (context {vlm.sizes.n_positions})"
            )

    def prompt(self, source: str) -> list[int]:
        from edgevlm.core.prompts import build_prompt

        return build_prompt(self.backbone.tokenizer, self.cfg, source, self.vlm.vocab_size, self.budget)

    def decode(self, ids: list[int]) -> str:
        return self.backbone.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def __call__(self, source: str) -> str:
        from edgevlm.train.decoding import greedy, vlm_beam_search

        eos, name = self.backbone.eos_token_id, self.cfg.name
        if self.num_beams == 1:
            return self.decode(greedy(self.vlm, self.prompt(source), name, self.max_new_tokens, eos))
        return self.decode(
            vlm_beam_search(self.vlm, self.prompt(source), name, self.num_beams, self.max_new_tokens, eos)
        )

    def batch(self, sources: list[str]) -> list[str]:
        from edgevlm.train.decoding import greedy_batch

        if self.num_beams > 1:
            return [self(s) for s in sources]
        ids = greedy_batch(
            self.vlm, [self.prompt(s) for s in sources], self.cfg.name, self.max_new_tokens, self.backbone.eos_token_id
        )
        return [self.decode(x) for x in ids]


def default_backbone(adapter_dir: Path, meta: AdapterMeta):
    """A --full output's own ``backbone/`` directory (the task's, or shared one level up), else the backbone
    adapter.json names (``backbone_source``), else the tiny default (adapters from before it was recorded)."""
    if meta.full_finetune:
        for d in (adapter_dir / BACKBONE_DIR, adapter_dir.parent / BACKBONE_DIR):
            if (d / "config.json").is_file():
                return d
    return meta.backbone_source or "tiny"


def eval_backbone(adapter_dir: Path, meta: AdapterMeta, backbone: str | Path | None):
    """The backbone to evaluate with: ``backbone`` when given, else :func:`default_backbone`.

    A --full output carries its own fine-tuned backbone: naming the backbone it was trained *from*
    (``--backbone smollm2-135m`` on a SmolLM2 --full output) evaluates that fine-tuned copy, with one note on
    stderr; naming any other backbone is refused in one line (BackboneError), since the output's weights replace
    the whole model and cannot run on another one."""
    from edgevlm.core.errors import BackboneError
    from edgevlm.train.backbone import source_of

    own = default_backbone(adapter_dir, meta)
    if backbone is None or not meta.full_finetune or not isinstance(own, Path):
        return backbone if backbone is not None else own
    asked = source_of(backbone)
    if asked == source_of(own):
        return own
    origin = f" (from {meta.backbone_source})" if meta.backbone_source else ""
    if meta.backbone_source and asked == meta.backbone_source:
        note = f"{adapter_dir} is a --full output: it carries its own fine-tuned backbone{origin}, {own}"
        print(f"edgevlm eval: note: {note}; evaluating with that", file=sys.stderr)
        return own
    raise BackboneError(
        f"--backbone {backbone}: {adapter_dir} is a --full output and carries its own fine-tuned backbone{origin}, "
        f"{own}; it runs on no other backbone (leave --backbone out)"
    )


def load_model(adapter: str | Path, backbone=None, task: str | None = None):
    """(vlm, backbone, task config) for a trained adapter directory; ``backbone`` is a spec or a loaded one."""
    import torch

    from edgevlm.train.adapters import check_backbone, load_adapter
    from edgevlm.train.backbone import Backbone, load_backbone
    from edgevlm.train.model import VLM

    adir = find_adapter(adapter, task)
    meta, tensors = load_adapter(adir)
    if task is not None and meta.task.name != task:
        raise TaskError(f"{adir}: adapter is for task {meta.task.name!r}, not {task!r}")
    bb = backbone if isinstance(backbone, Backbone) else load_backbone(eval_backbone(adir, meta, backbone))
    check_backbone(meta, bb.fingerprint, adir)
    vlm = VLM(bb.model)
    vlm.add_task(meta.task).load_tensors({k: torch.from_numpy(v) for k, v in tensors.items()}, str(adir))
    vlm.eval()
    return vlm, bb, meta


def perplexity(vlm, backbone, cfg: TaskConfig, examples: list[Example], max_len: int) -> float:
    """Perplexity of the reference targets (each example's ``target``, EOS included) given their prompts."""
    from edgevlm.train.data import encode_example
    from edgevlm.train.metrics import perplexity as ppl
    from edgevlm.train.trainer import validation_loss

    v, eos = vlm.vocab_size, backbone.eos_token_id
    enc = [encode_example(backbone.tokenizer, cfg, e, v, eos, max_len) for e in examples]
    n = sum(len(e.target) for e in enc)
    return ppl(validation_loss(vlm, enc, cfg.name, eos) * n, n)


def eval_examples(task: str, data: str | None, fmt: str | None) -> list[Example]:
    """Examples from ``data`` (any supported format), else the built-in mini task's test split."""
    from edgevlm.train.tasks.loaders import load_examples
    from edgevlm.train.tasks.mini import mini_task

    if data is not None:
        return load_examples(data, task, fmt)
    if task not in BUILTIN_TASKS:
        raise ConfigError(f"task {task!r} is not built in: pass --data")
    return mini_task(task, "test")


MAX_EVAL_BEAMS = 64  # as the runtime's limit (edgevlm.runtime.generation.MAX_BEAMS)


def check_eval_options(num_beams: int, limit: int | None, max_new_tokens: int | None) -> None:
    """One-line ConfigErrors for eval's numeric options (integers, not bools; in range)."""

    def bad(v, low: int, high: int | None = None) -> bool:
        return not isinstance(v, int) or isinstance(v, bool) or v < low or (high is not None and v > high)

    if bad(num_beams, 1, MAX_EVAL_BEAMS):
        raise ConfigError(f"--num-beams must be an integer in [1, {MAX_EVAL_BEAMS}], got {num_beams!r}")
    if limit is not None and bad(limit, 1):
        raise ConfigError(f"--limit must be a positive integer, got {limit!r}")
    if max_new_tokens is not None and bad(max_new_tokens, 1):
        raise ConfigError(f"--max-new-tokens must be a positive integer, got {max_new_tokens!r}")


def evaluate_adapter(
    adapter: str | Path,
    data: str | None = None,
    task: str | None = None,
    fmt: str | None = None,
    backbone=None,
    num_beams: int = 1,
    limit: int | None = None,
    out: str | Path | None = None,
    max_new_tokens: int | None = None,
    progress: bool = True,
) -> dict:
    """``edgevlm eval`` as a call: metrics (plus ``perplexity``) of a trained adapter on ``data``."""
    check_eval_options(num_beams, limit, max_new_tokens)
    vlm, bb, meta = load_model(adapter, backbone, task)
    cfg = meta.task
    examples = eval_examples(cfg.name, data, fmt)
    gen = TorchGenerator(vlm, bb, cfg, num_beams, max_new_tokens)
    metrics = evaluate(examples, gen, out, limit, progress=progress, task=cfg.name)
    kept = {g.source for g in group_by_source(examples)[:limit]}
    max_len = min(int(meta.training.get("max_len", 256)), vlm.sizes.n_positions)
    refs = [e for e in examples if e.source in kept]
    if progress:  # one forward pass per batch of references: no bar, but not silent either
        print(f"evaluate: perplexity of {len(refs)} reference(s) ...", file=sys.stderr, flush=True)
    metrics["perplexity"] = perplexity(vlm, bb, cfg, refs, max_len)
    metrics.update(task=cfg.name, primary=cfg.metric, decoding="greedy" if num_beams == 1 else f"beam{num_beams}")
    return metrics
