"""Process-wide settings every entry point applies first: quiet libraries, no hub access (stdlib only)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Readable output: silence library warnings and info spam; never reach for a model hub."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def passive_openmp() -> bool:
    """Let idle OpenMP threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a
    policy: torch's busy-waiting slows training several-fold on a shared CPU. OpenMP reads the variable once,
    so this only takes effect before torch is imported; returns whether it did."""
    import sys

    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
