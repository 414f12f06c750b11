"""The built-in tiny backbone: a small GPT-2 and byte-level BPE tokenizer, built and pretrained locally.

No hub, no network: the tokenizer is trained and the model pretrained on an
*unpaired* corpus made from the mini tasks' texts (sources and targets as
separate documents, shuffled), so the backbone knows the words but not the
tasks; the adapters must learn the mappings. Built once, then cached under
``$EDGEVLM_CACHE`` (default ``~/.cache/edgevlm``).
"""
from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path

TINY_VERSION = "tiny-v1"
TINY_CONFIG = dict(n_layer=4, n_head=4, n_embd=128, n_positions=512)
VOCAB_SIZE = 1024
PRETRAIN_STEPS = 2000
SEQ_LEN = 192
BATCH = 8


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEVLM_CACHE", Path.home() / ".cache" / "edgevlm"))


PLAIN_ROLES = {"<question>": "question:", "<answer>": "answer:", "<user>": "you:", "<system>": "me:"}


def _plain(text: str) -> str:
    """A mini-task source with task tokens spelled as ordinary words (no task embeddings in pretraining)."""
    for tok, word in PLAIN_ROLES.items():
        text = text.replace(tok, word)
    return re.sub(r"\s*<[a-z]+>\s*", " ", text).strip()


def corpus(seed: int = 0) -> list[str]:
    """Pretraining documents, the tiny analogue of web text.

    Half are unpaired texts (sources and targets alone); half are pairs in a
    plain ``source => target`` form with roles spelled as words. The pairs use
    other seeds than the mini tasks' train/valid/test splits. Task-embedding
    tokens never appear: adapters must learn to map them onto these abilities.
    """
    from .tasks.mini import GENERATORS

    docs = []
    for gen in GENERATORS.values():
        for ex in gen(2000, seed + 10):
            docs.append(_plain(ex.source))
            docs.extend(ex.references())
        docs.extend(f"{_plain(ex.source)} => {ex.target}" for ex in gen(2000, seed + 20))
    random.Random(seed).shuffle(docs)
    return docs


def train_tokenizer(docs: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from .backbone import EOS_TOKEN

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[EOS_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((" " + d for d in docs), trainer)
    return tok


def pretrain(model, tok, docs: list[str], steps: int = PRETRAIN_STEPS, seed: int = 0) -> float:
    """Causal-LM pretraining on packed documents; returns the final loss."""
    import torch
    from tqdm.auto import tqdm

    from .backbone import EOS_TOKEN

    eos = tok.token_to_id(EOS_TOKEN)
    stream = []
    for enc in tok.encode_batch([" " + d for d in docs], add_special_tokens=False):
        stream.extend(enc.ids + [eos])
    data = torch.tensor(stream, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * max(0.05, 1 - s / steps))
    model.train()
    bar = tqdm(range(steps), desc="pretrain tiny backbone", unit="step")
    for _ in bar:
        idx = torch.randint(0, len(data) - SEQ_LEN - 1, (BATCH,), generator=g)
        x = torch.stack([data[i:i + SEQ_LEN] for i in idx])  # [b, t]
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return float(loss.item())


def build_tiny(out: Path, steps: int = PRETRAIN_STEPS, seed: int = 0) -> Path:
    """Build tokenizer + pretrained tiny GPT-2 into ``out`` (a Hugging Face directory)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    docs = corpus(seed)
    tok = train_tokenizer(docs)
    cfg = GPT2Config(vocab_size=tok.get_vocab_size(), bos_token_id=0, eos_token_id=0, **TINY_CONFIG)
    model = GPT2LMHeadModel(cfg)
    pretrain(model, tok, docs, steps, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save(str(out / "tokenizer.json"))
    return out


SHIPPED = Path(__file__).resolve().parent / "assets" / TINY_VERSION


def ensure_tiny(root: Path | None = None) -> Path:
    """Path of the tiny backbone: the checkpoint shipped in the package, else built (atomically) and cached."""
    if root is None and (SHIPPED / "model.safetensors").is_file():
        return SHIPPED
    root = root or cache_dir()
    final = root / TINY_VERSION
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{TINY_VERSION}."))
    try:
        build_tiny(tmp)
        if not final.exists():  # another process may have won the race
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> None:
    """``python -m edgevlm.tiny --out DIR``: rebuild the shipped tiny checkpoint from scratch."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", type=Path, default=SHIPPED)
    p.add_argument("--steps", type=int, default=PRETRAIN_STEPS)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(f"built {build_tiny(a.out, a.steps, a.seed)}")


if __name__ == "__main__":
    main()
