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
    from edgevlm.tiny import ensure_tiny

    return ensure_tiny()


@pytest.fixture(scope="session")
def tiny_backbone(tiny_dir):
    from edgevlm.backbone import load_backbone

    return load_backbone(tiny_dir)
