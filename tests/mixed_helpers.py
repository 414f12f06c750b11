"""Bundles for the mixed-batch and server tests: a backbone with three tasks whose adapters are random and
non-zero (bottlenecks 10, 100 and 300: the stacked columns differ in width), exported once per mode."""

from __future__ import annotations

from pathlib import Path

TASK_NAMES = ("nlg", "dialogue", "qa")


def random_adapter_dirs(backbone_dir: Path, root: Path, seed: int = 1) -> list[Path]:
    """Adapter directories (as training writes them) for :data:`TASK_NAMES` with random weights."""
    import torch

    from edgevlm.core.config import AdapterMeta
    from edgevlm.train.adapters import save_adapter
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.model import VLM
    from edgevlm.train.tasks import BUILTIN_TASKS

    bb = load_backbone(backbone_dir)
    vlm = VLM(bb.model).eval()
    gen = torch.Generator().manual_seed(seed)
    out = []
    for name in TASK_NAMES:
        cfg = BUILTIN_TASKS[name]
        with torch.no_grad():
            for k, p in vlm.add_task(cfg).tensors().items():
                base = 1.0 if k.endswith("ln.weight") else 0.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=gen))
        tensors = {k: v.detach().numpy() for k, v in vlm.task(name).tensors().items()}
        n, share = vlm.trainable_share(name)
        out.append(save_adapter(root / name, tensors, AdapterMeta(cfg, bb.fingerprint, bb.config_dict, n, share)))
    return out


def bundle_factory(backbone: str, root: Path):
    """``make(quant)`` -> a bundle of ``backbone`` with the random tasks (exported once per mode)."""
    from edgevlm.export import export_bundle

    made: dict = {}
    dirs: list = []

    def make(quant: str = "fp32") -> Path:
        if not dirs:
            dirs.extend(random_adapter_dirs(Path(backbone), root / "adapters"))
        if quant not in made:
            made[quant] = export_bundle(backbone, dirs, quant, out=root / quant, progress=False)
        return made[quant]

    return make
