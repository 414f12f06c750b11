"""The short block ``edgevlm run`` and ``edgevlm serve`` print on stderr once a bundle is loaded: what was loaded
(backbone, quantization, tasks with their method and size, cache mode), how it runs (providers, threads) and
what it costs (the graph's bytes on disk, the process's resident memory), so a user sees at a glance which
bundle answers and whether it fits the device. ``--quiet`` turns it off; stdout stays the generated text."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MB = 1e6


def graph_bytes(root: Path, graph_file: str, files) -> int:
    """Bytes on disk of the graph the session opened and its external weight files (``backbone.onnx.data``)."""
    names = [graph_file] + [f for f in files if f.startswith(graph_file + ".")]
    return sum((root / f).stat().st_size for f in dict.fromkeys(names) if (root / f).is_file())


def resident_bytes() -> tuple[int, str]:
    """(bytes, label): this process's resident set now (Linux /proc), else its peak (``getrusage``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024, "RSS"
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak if sys.platform == "darwin" else peak * 1024, "peak RSS"


def task_summary(entry) -> str:
    """``nlg (adapter, bottleneck 10)`` or ``lo (lora, rank 4)``."""
    size = "rank" if entry.method == "lora" else "bottleneck"
    return f"{entry.method}, {size} {entry.bottleneck}"


def start_block(rt, graph: str = "onnx", threads: int | None = None, seconds: float | None = None) -> list[str]:
    """The lines describing the loaded runtime ``rt`` (``graph``: "onnx" or "ort", the file the session opened)."""
    from edgevlm.core.bundle import ORT_FILE

    m, b = rt.manifest, rt.manifest.backbone
    tasks = ", ".join(f"{n} ({task_summary(t.entry)})" for n, t in sorted(rt.tasks.items())) or "none (plain only)"
    graph_file = ORT_FILE if graph == "ort" else b.file
    disk = graph_bytes(rt.root, graph_file, m.files)
    adapters = sum(t.file.stat().st_size for t in rt.tasks.values() if t.file.is_file())
    rss, label = resident_bytes()
    used = threads or f"all cores ({os.cpu_count()})"
    took = f" in {seconds:.2f} s" if seconds is not None else ""
    return [
        f"bundle: {rt.root} (loaded{took})",
        f"  backbone: {b.architecture} {b.source or b.file}, {b.n_layer} layers x {b.n_embd}, "
        f"quantization {b.quantization}, kv cache {b.kv_cache}",
        f"  tasks: {tasks}",
        f"  engine: {', '.join(rt.session.get_providers())}, threads {used}",
        f"  memory: graph+weights {disk / MB:.1f} MB on disk ({graph_file}), adapters {adapters / MB:.2f} MB, "
        f"process {label} {rss / MB:.1f} MB after load",
    ]


def announce(command: str, rt, graph: str, threads: int | None, seconds: float | None) -> None:
    """Print :func:`start_block` on stderr, its first line prefixed ``edgevlm COMMAND:``."""
    first, *rest = start_block(rt, graph, threads, seconds)
    print("\n".join([f"edgevlm {command}: {first}", *rest]), file=sys.stderr, flush=True)
