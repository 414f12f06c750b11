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
