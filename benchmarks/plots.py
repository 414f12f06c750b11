"""PNG plots for the suites (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

QUANT_COLORS = {"fp32": "tab:blue", "int8": "tab:cyan", "int4": "tab:green"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Write the figure atomically and close it."""
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    _plt().close(fig)
    return path


def lines(
    path: Path,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
    panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]] | None = None,
) -> Path:
    """One panel per entry of ``panels`` (or a single panel of ``series``): each series an (x, y) line."""
    plt = _plt()
    panels = panels or {ylabel: series}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (label, ser) in zip(axes[0], panels.items()):
        for name, (x, y) in ser.items():
            ax.plot(x, y, marker="o", label=name, linestyle="--" if "full" in name else "-", color=_quant_color(name))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def bars_with_bounds(
    path: Path, groups: dict[str, list[tuple[str, float, float | None]]], ylabel: str, title: str
) -> Path:
    """One panel per group (model size): bars (label, value) with each bar's bound drawn as a black tick."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4.5), squeeze=False)
    for ax, (group, bars) in zip(axes[0], groups.items()):
        xs = range(len(bars))
        colors = [_color(label) for label, _, _ in bars]
        ax.bar(xs, [v for _, v, _ in bars], color=colors)
        for x, (_, v, b) in zip(xs, bars):
            if b:
                ax.hlines(b, x - 0.4, x + 0.4, colors="black", linewidth=2)
            ax.text(x, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(xs), [label for label, _, _ in bars], rotation=45, ha="right", fontsize=8)
        ax.set_title(group)
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title + "  (black tick: memory-bandwidth bound)")
    return save(fig, path)


def grouped_bars(path: Path, categories: list[str], series: dict[str, list[float]], ylabel: str, title: str) -> Path:
    """Grouped bars: one group per category, one bar per series."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(categories) * max(1, len(series)) / 2), 4))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([c + i * width for c in range(len(categories))], values, width, label=name)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(categories))], categories, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save(fig, path)


def _quant_color(label: str) -> str | None:
    return next((c for q, c in QUANT_COLORS.items() if q in label), None)


def _color(label: str) -> str:
    if label.startswith("edgevlm"):
        return _quant_color(label) or "tab:blue"
    return "tab:orange" if label.startswith("optimum") else "tab:red"
