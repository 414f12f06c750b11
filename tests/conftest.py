"""Shared fixtures: the tiny backbone (built once, cached) and tiny GPT-2 models built from configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
E2E_DEV = REPO.parent / "shared" / "data" / "e2e" / "devset.csv"


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The built-in tiny backbone directory (pretrained locally on first use, then cached)."""
    from edgevlm.train.tiny import ensure_tiny

    return ensure_tiny()


@pytest.fixture(scope="session")
def tiny_backbone(tiny_dir):
    from edgevlm.train.backbone import load_backbone

    return load_backbone(tiny_dir)


@pytest.fixture(scope="session")
def trained_adapters(tmp_path_factory, tiny_dir) -> dict:
    """Briefly trained tiny adapters: {'multi': nlg/ + dialogue/ (a two-task output), 'qa': one task's dir}."""
    from export_helpers import train_adapters

    return train_adapters(tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, trained_adapters):
    """Factory: ``tiny_bundle(quant)`` -> a tiny-backbone bundle with nlg, dialogue and qa (exported once per mode)."""
    from edgevlm.export import export_bundle

    made: dict = {}
    root = tmp_path_factory.mktemp("bundles")

    def make(quant: str = "fp32"):
        if quant not in made:
            made[quant] = export_bundle(
                "tiny", [trained_adapters["multi"], trained_adapters["qa"]], quant, out=root / quant, progress=False
            )
        return made[quant]

    return make


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny random Llama-family HF directory (GQA 4/2 heads, 3 layers, 64 wide), made once per session."""
    from llama_helpers import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def mixed_bundles(tmp_path_factory, tiny_dir, tiny_llama_dir) -> dict:
    """{'gpt2', 'llama'} -> ``make(quant)``: tiny bundles with three random tasks (mixed-batch and server tests)."""
    from mixed_helpers import bundle_factory

    return {
        "gpt2": bundle_factory(str(tiny_dir), tmp_path_factory.mktemp("mixed-gpt2")),
        "llama": bundle_factory(str(tiny_llama_dir), tmp_path_factory.mktemp("mixed-llama")),
    }
