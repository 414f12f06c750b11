"""Scoring shared by the quality suites (tiny: :mod:`.quality`, real backbones: :mod:`.quality_real`)."""

from __future__ import annotations


class RuntimeGenerator:
    """``source -> text`` through the torch-free runtime (greedy, the task's default length)."""

    def __init__(self, rt, task: str):
        self.rt, self.task = rt, task

    def __call__(self, source: str) -> str:
        return self.rt.generate(source, task=self.task).strip()


def bundle_scores(rt, task: str, examples, limit: int) -> tuple[dict, list[str]]:
    """Metrics (and predictions) of a loaded bundle's ``task`` through the runtime."""
    from edgevlm.train.metrics import score
    from edgevlm.train.tasks.loaders import group_by_source

    gen = RuntimeGenerator(rt, task)
    groups = group_by_source(examples)[:limit]
    preds = [gen(g.source) for g in groups]
    return {"n": len(groups), **score(preds, [g.refs for g in groups], task)}, preds


def with_e2e(rec: dict, task: str, examples, limit: int) -> dict:
    """An nlg cell cached before the E2E challenge's metrics existed, with them computed from its predictions."""
    if task != "nlg" or "e2e_bleu" in rec or not rec.get("predictions"):
        return rec
    from edgevlm.train.e2e_metrics import e2e_scores
    from edgevlm.train.tasks.loaders import group_by_source

    refs = [g.refs for g in group_by_source(examples)[:limit]]
    return {**rec, **e2e_scores(rec["predictions"], refs[: len(rec["predictions"])])}


def agreement(a: list[str], b: list[str]) -> float:
    """Share of outputs identical to the fp32 bundle's (0-100)."""
    return 100.0 * sum(x == y for x, y in zip(a, b)) / max(1, len(a))
