"""What every benchmark shares: machine/version/command stamps, timing statistics, result files.

A suite produces a :class:`Report`: a list of flat records (one per
measurement, each a dict with a ``unit``) plus the run's metadata, written as
``<out>/<suite>/results.json`` and ``results.md`` (plots are added by the
suite through :mod:`edgevlm.benchmarks.plots`).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgevlm.core.config import atomic_write_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LIBRARIES = (
    "edgevlm",
    "onnxruntime",
    "onnx",
    "numpy",
    "tokenizers",
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "sacrebleu",
    "rouge-score",
    "matplotlib",
    "psutil",
)


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD features that matter for int8/int4 kernels."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return [f for f in wanted if f in flags]


def machine_info(threads: int) -> dict[str, Any]:
    """CPU model, cores, the threads the benchmark uses, RAM, OS and Python."""
    import psutil

    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "threads_used": threads,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def git_state() -> dict[str, Any]:
    """The commit the code came from and whether the working tree had local changes (shared checkout)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if head.returncode != 0:
        return {}
    return {"commit": head.stdout.strip(), "modified_files": [ln[3:] for ln in dirty.stdout.splitlines()]}


def load_average() -> list[float]:
    """1/5/15-minute load averages: how busy the (shared) machine was."""
    return [round(x, 2) for x in os.getloadavg()]


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def command_line() -> str:
    """The exact command that produced the results (``edgevlm bench ...`` or ``python -m ...``)."""
    argv = list(sys.argv)
    prog = Path(argv[0]).name if argv else ""
    if prog in ("edgevlm",):
        argv[0] = "edgevlm"
    elif argv and argv[0].endswith(".py"):
        argv = ["python", "-m", _module_of(argv[0])] + argv[1:]
    return shlex.join(argv)


def _module_of(path: str) -> str:
    p = Path(path).resolve()
    try:
        rel = p.relative_to(Path(__file__).resolve().parent)
        return "edgevlm.benchmarks." + ".".join(rel.with_suffix("").parts)
    except ValueError:
        return str(path)


def default_threads() -> int:
    return os.cpu_count() or 1


def check_threads(threads: int | None) -> int:
    """``threads`` validated (None: all cores)."""
    from edgevlm.core.errors import ConfigError

    if threads is None:
        return default_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads <= 0:
        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")
    return threads


# ---------------------------------------------------------------- statistics


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: Sequence[float]) -> dict[str, float]:
    """Median, min, max and count of repeated timings (seconds or any unit)."""
    if not xs:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": median(xs), "min": float(min(xs)), "max": float(max(xs)), "n": len(xs)}


def timed(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call (``perf_counter``)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- reports


@dataclass
class Report:
    """One suite run: metadata + measurement records; written atomically as JSON and markdown."""

    suite: str
    threads: int
    quick: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    load_at_start: list[float] = field(default_factory=lambda: load_average())

    def add(self, line: str | None = None, **record: Any) -> dict[str, Any]:
        """Keep a record; print one human line (with units) for it."""
        self.records.append(record)
        if line:
            print(line, flush=True)
        return record

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(text, flush=True)

    def meta(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "quick": self.quick,
            "command": command_line(),
            "machine": {
                **machine_info(self.threads),
                "load_avg_at_start": self.load_at_start,
                "load_avg_at_end": load_average(),
            },
            "versions": versions(),
            "git": git_state(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 1),
        }

    def write(self, out: Path, markdown: str, extra: dict[str, Any] | None = None) -> Path:
        """``out/results.json`` and ``out/results.md``; returns ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        meta = self.meta()
        doc = {**meta, "notes": self.notes, **(extra or {}), "records": self.records}
        atomic_write_text(out / "results.json", json.dumps(doc, indent=2, default=_jsonable) + "\n")
        atomic_write_text(out / "results.md", header_md(meta, self.notes) + markdown)
        return out


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def header_md(meta: dict[str, Any], notes: list[str]) -> str:
    m = meta["machine"]
    lines = [
        f"# {meta['suite']} benchmark{' (quick)' if meta['quick'] else ''}",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {m['cpu_model']}, {m['logical_cores']} logical cores, {m['threads_used']} threads used, "
        f"{m['ram_gb']} GB RAM, SIMD {'/'.join(m['cpu_flags']) or 'n/a'}",
        f"- machine load (1/5/15-min load average; {m['logical_cores']} cores): {m['load_avg_at_start']} at start, "
        f"{m['load_avg_at_end']} at end",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v != "not installed"),
        f"- code: commit {meta['git'].get('commit', '?')}"
        + (
            f" with local changes in {', '.join(meta['git']['modified_files'])}"
            if meta["git"].get("modified_files")
            else ""
        ),
        f"- started {meta['started_utc']}, took {meta['duration_s']} s",
    ]
    lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines) + "\n\n"


def md_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A markdown table; ``columns`` = [(key, header)], floats formatted compactly."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body]) + "\n"


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "-"
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    return str(v)


def suite_dir(out: str | Path | None, suite: str) -> Path:
    """``<out>/<suite>`` (``out`` defaults to ``benchmarks/results``)."""
    return Path(out or RESULTS_DIR) / suite


def base_parser(suite: str, prog: str | None = None, results: Path = RESULTS_DIR):
    """The options every suite shares (``python -m edgevlm.benchmarks.<suite>``; ``prog`` and ``results`` for
    the scripts under ``experiments/``, which write next to themselves)."""
    import argparse

    p = argparse.ArgumentParser(
        prog=prog or f"python -m edgevlm.benchmarks.{suite}", description=f"edgevlm {suite} benchmark"
    )
    p.add_argument("--quick", action="store_true", help="the tiny default only, few repetitions (a smoke test)")
    p.add_argument("--out", help=f"results root; files go to OUT/{suite}/ (default {results})")
    p.add_argument("--threads", type=int, help="threads per engine (default: all cores)")
    return p


def run_main(main, argv=None) -> int:
    """Run a suite's ``main`` the way the CLI does: quiet libraries, one-line errors."""
    from edgevlm.core.env import quiet_libraries
    from edgevlm.core.errors import EdgeVLMError

    quiet_libraries()
    try:
        return int(main(argv) or 0)
    except EdgeVLMError as e:
        print(f"edgevlm bench: error: {e}", file=sys.stderr)
        return e.exit_code
