"""Sentence-level knowledge distillation (VLM's recipe for translation, summarization and dialogue).

A teacher (an ``edgevlm train --full`` output: ``backbone/`` plus the task's
embeddings, or any adapter directory) greedily decodes every training input;
the student adapter then trains on those outputs. Decoded targets are cached
as JSONL (loadable with ``--data``) in ``OUT/distill/<task>-<key>.jsonl``, the
key hashing the teacher's weights, the task config, the decoding length and
the inputs, so a rerun or ``--resume`` does not decode again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgevlm.core.config import ADAPTER_WEIGHTS, TaskConfig, atomic_write_text
from edgevlm.core.errors import ConfigError
from edgevlm.train.tasks import Example

KEY_VERSION = 1


def teacher_key(adapter_dir: Path, cfg: TaskConfig, sources: list[str], max_new_tokens: int, fingerprint: str) -> str:
    """sha256 over what determines the teacher's outputs."""
    h = hashlib.sha256(json.dumps([KEY_VERSION, fingerprint, cfg.to_dict(), max_new_tokens]).encode())
    h.update(hashlib.sha256((adapter_dir / ADAPTER_WEIGHTS).read_bytes()).digest())
    for s in sources:
        h.update(s.encode() + b"\0")
    return h.hexdigest()


def read_cache(path: Path, examples: list[Example]) -> list[Example] | None:
    """Cached distilled examples when ``path`` holds exactly ``examples``' sources, else None."""
    from edgevlm.train.tasks.loaders import load_jsonl

    if not path.is_file():
        return None
    cached = load_jsonl(path)
    if [c.source for c in cached] != [e.source for e in examples]:
        return None
    return cached


def decode_all(vlm, backbone, cfg: TaskConfig, sources: list[str], max_new_tokens: int) -> list[str]:
    """Greedy teacher outputs for ``sources`` (batched, with a progress bar)."""
    from tqdm.auto import tqdm

    from edgevlm.core.prompts import build_prompt
    from edgevlm.train.decoding import greedy_batch

    budget = vlm.sizes.n_positions - max_new_tokens
    tok, v, eos = backbone.tokenizer, vlm.vocab_size, backbone.eos_token_id
    out: list[str] = []
    step = 256
    for i in tqdm(range(0, len(sources), step), desc=f"distill {cfg.name}", unit="chunk"):
        prompts = [build_prompt(tok, cfg, s, v, budget) for s in sources[i : i + step]]
        out += [
            tok.decode(ids, skip_special_tokens=True).strip()
            for ids in greedy_batch(vlm, prompts, cfg.name, max_new_tokens, eos)
        ]
    return out


def distill_targets(
    teacher_dir: str | Path, backbone, cfg: TaskConfig, train_examples: list[Example], out_dir: str | Path
) -> list[Example]:
    """``train_examples`` with targets replaced by the teacher's greedy outputs (cached in ``out_dir``).

    ``backbone`` (the student's) is used as the teacher's backbone when the
    teacher directory has none of its own. An empty teacher output keeps the gold target.
    """
    from edgevlm.train.evaluate import load_model
    from edgevlm.train.layout import find_adapter

    tdir = find_adapter(teacher_dir, cfg.name, "--distill-from")
    vlm, tbb, meta = load_model(tdir, None if meta_is_full(tdir) else backbone, cfg.name)
    with vlm:  # closing removes the teacher's hooks: it may share the student's backbone
        return _distill(vlm, tbb, meta, tdir, cfg, train_examples, out_dir)


def _distill(vlm, tbb, meta, tdir: Path, cfg: TaskConfig, train_examples: list[Example], out_dir) -> list[Example]:
    tcfg = meta.task
    if (tcfg.special_tokens, tcfg.template) != (cfg.special_tokens, cfg.template):
        raise ConfigError(f"{tdir}: teacher's task {tcfg.name!r} uses other task tokens/template than the student's")
    max_new = max(tcfg.max_new_tokens, tcfg.max_target_tokens or 0)
    sources = [e.source for e in train_examples]
    key = teacher_key(tdir, tcfg, sources, max_new, meta.backbone_fingerprint)
    cache = Path(out_dir) / "distill" / f"{cfg.name}-{key[:16]}.jsonl"
    cached = read_cache(cache, train_examples)
    if cached is not None:
        return cached
    unique = list(dict.fromkeys(sources))  # E2E repeats each MR once per reference: decode it once
    decoded = dict(zip(unique, decode_all(vlm, tbb, tcfg, unique, max_new)))
    out = [Example(e.source, decoded[e.source] or e.target) for e in train_examples]
    lines = (
        json.dumps({"source": e.source, "target": e.target, "gold": g.target}, ensure_ascii=False)
        for e, g in zip(out, train_examples)
    )
    atomic_write_text(cache, "\n".join(lines) + "\n")
    return out


def meta_is_full(adapter_dir: Path) -> bool:
    """Whether ``adapter_dir`` holds a --full (fully fine-tuned) training output."""
    from edgevlm.core.config import AdapterMeta

    return AdapterMeta.load(adapter_dir).full_finetune
