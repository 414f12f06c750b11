"""The one input check of every text metric (:mod:`.metrics`, :mod:`.e2e_metrics`, :mod:`.meteor`)."""

from __future__ import annotations

from collections.abc import Sequence

from edgevlm.core.errors import ConfigError


def check_refs(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
    """One-line ConfigErrors for unusable input: a reference list per prediction, at least one of each."""
    if len(preds) != len(refs):
        raise ConfigError(f"{len(preds)} predictions but {len(refs)} reference lists")
    if not preds:
        raise ConfigError("no predictions to score")
    if any(not r for r in refs):
        raise ConfigError("every prediction needs at least one reference")
