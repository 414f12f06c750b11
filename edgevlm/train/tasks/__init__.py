"""The paper's five tasks: their configs (special tokens, templates, bottlenecks) and example type."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgevlm.core.config import TaskConfig
from edgevlm.core.errors import TaskError


@dataclass
class Example:
    """One training/evaluation pair. ``refs`` holds every reference (``target`` is one of them).

    ``unit`` names the source unit the example belongs to (a talk, a dialogue, a CoQA story):
    held-out splits keep a unit whole. Empty means the source itself is the unit (an E2E MR,
    a CNN/DM article). It is bookkeeping, not content: equality ignores it.
    """

    source: str
    target: str
    refs: list[str] = field(default_factory=list)
    unit: str = field(default="", compare=False)

    def references(self) -> list[str]:
        return self.refs or [self.target]

    def source_unit(self) -> str:
        return self.unit or self.source


# Bottlenecks as in VLM: 300 for translation and QA, 100 for summarization and dialogue, 10 for data-to-text.
BUILTIN_TASKS: dict[str, TaskConfig] = {
    "nlg": TaskConfig("nlg", 10, ["<mr>", "<response>"], "<mr> {input} <response>", 48, "bleu"),
    "mt": TaskConfig("mt", 300, ["<de>", "<en>"], "<de> {input} <en>", 40, "bleu", 100, 100),
    "qa": TaskConfig("qa", 300, ["<document>", "<question>", "<answer>"], "<document> {input} <answer>", 16, "f1", 400),
    "summarization": TaskConfig(
        "summarization", 100, ["<article>", "<summary>"], "<article> {input} <summary>", 40, "rougeL", 400, 130
    ),
    "dialogue": TaskConfig(
        "dialogue", 100, ["<persona>", "<system>", "<user>"], "<persona> {input} <system>", 32, "f1"
    ),
}


def builtin_task(name: str, bottleneck: int | None = None) -> TaskConfig:
    """A copy of built-in task ``name``, optionally with another bottleneck."""
    if name not in BUILTIN_TASKS:
        raise TaskError(
            f"unknown built-in task {name!r}; built-in tasks: {sorted(BUILTIN_TASKS)} (pass --data for a new task)"
        )
    d = BUILTIN_TASKS[name].to_dict()
    if bottleneck is not None:
        d["bottleneck"] = bottleneck
    return TaskConfig(**d)
