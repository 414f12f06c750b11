"""Serving benchmark: total decode throughput of 1, 2, 4, 8 concurrent rows of *different* tasks against one row
alone, through the runtime's batch and through ``edgevlm serve``; time to first token under load; and what the
mixed-batch input (``adapter_columns``) costs the single-task path.

Rows cycle through the bundle's five tasks (the paper's bottlenecks, random untrained adapters) and the plain
backbone, each repetition starting one task further; "runtime, one task" runs every row with the same task (its
``LoraAdapter``: the backbone sharing without the stacked adapters). Every row makes exactly ``NEW_TOKENS`` tokens
(EOS suppressed). Runtime: ``batch.add`` per row (each
prefilled alone), then steps; decode tokens/s = rows x (NEW_TOKENS - 1) / time after the last prefill. Server:
that many concurrent streaming requests over loopback (one client thread each); tokens/s = all tokens / wall time
from the first request to the last event (prefills included); time to first token per request, median over
requests. Single-task cost: one ``rt.generate`` with a task, the bundle's graph against the same graph with the
``adapter_columns`` Mul nodes removed (:func:`strip_columns`), A/B pairs interleaved. Concurrency levels and
configurations are interleaved within each repetition; medians over repetitions.

    python -m edgevlm.benchmarks.serving --sizes gpt2-small --threads 2 --work /tmp/bw
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgevlm.core import names

from .common import RESULTS_DIR, Report, check_threads, median
from .fixtures import Workspace, backbone_dir, export, make_adapters

TASKS = ("nlg", "mt", "qa", "summarization", "dialogue")
ROW_TASKS = (*TASKS, None)  # the rows' tasks in turn (None: the plain backbone)
CONCURRENCY = (1, 2, 4, 8)
NEW_TOKENS = 32
PROMPT = "the quick brown fox jumps over the lazy dog and the cat sat on the mat"
OVERHEAD_TASK = "summarization"  # bottleneck 100, as in the latency suite
VIAS = ("runtime", "runtime, one task", "server")  # one task: every row OVERHEAD_TASK (its LoraAdapter), for contrast


def bundle(ws: Workspace, size: str, quant: str) -> Path:
    bb = backbone_dir(ws, size)
    dirs = ws.get(f"{size}-serving-adapters", lambda p: make_adapters(bb, p, dict.fromkeys(TASKS)))
    return ws.get(f"{size}-{quant}-serving", lambda p: export(bb, [dirs / t for t in TASKS], quant, p))


def strip_columns(rt):
    """The same runtime on its graph without the ``adapter_columns`` Mul nodes (the graph before mixed batches)."""
    import onnx
    import onnxruntime as ort

    from edgevlm.runtime import Runtime
    from edgevlm.runtime.session import session_options

    model = onnx.load(rt.root / rt.manifest.backbone.file)
    g = model.graph
    col = [n for n in g.node if names.ADAPTER_COLUMNS in n.input][0].output[0]
    muls = [n for n in g.node if n.op_type == "Mul" and col in n.input]
    rename = {m.output[0]: next(i for i in m.input if i != col) for m in muls}
    drop = {n.name for n in muls} | {n.name for n in g.node if names.ADAPTER_COLUMNS in n.input}
    keep = [onnx.NodeProto.FromString(n.SerializeToString()) for n in g.node if n.name not in drop]
    for n in keep:
        n.input[:] = [rename.get(i, i) for i in n.input]
    del g.node[:]
    g.node.extend(keep)
    for seq in (g.input, g.initializer):
        idx = [k for k, v in enumerate(seq) if v.name == names.ADAPTER_COLUMNS]
        del seq[idx[0]]
    so = session_options(rt.session.get_session_options().intra_op_num_threads)
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    graph = dataclasses.replace(rt.graph, mixed=False)
    return Runtime(rt.root, rt.manifest, session, graph, rt.tokenizer, dict(rt.tasks))


def columns_kernel_share(rt, tokens: int = NEW_TOKENS) -> float:
    """Share of ORT kernel time spent in the ``adapter_columns`` Mul nodes during one single-task call (ORT's
    profiler; a share of kernel time is steadier on a loaded machine than a wall-clock A/B)."""
    import onnx
    import onnxruntime as ort

    from edgevlm.runtime import Runtime
    from edgevlm.runtime.session import session_options

    path = rt.root / rt.manifest.backbone.file
    g = onnx.load(path, load_external_data=False).graph
    col = [n for n in g.node if names.ADAPTER_COLUMNS in n.input][0].output[0]
    muls = {n.name for n in g.node if n.op_type == "Mul" and col in n.input}
    with tempfile.TemporaryDirectory(prefix="edgevlm-serving-") as tmp:
        so = session_options(rt.session.get_session_options().intra_op_num_threads)
        so.enable_profiling, so.profile_file_prefix = True, str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        Runtime(rt.root, rt.manifest, sess, rt.graph, rt.tokenizer, dict(rt.tasks)).generate(
            PROMPT, task=OVERHEAD_TASK, max_new_tokens=tokens, min_new_tokens=tokens
        )
        events = json.loads(Path(sess.end_profiling()).read_text())
    return median(_run_shares(events, muls))


def _run_shares(events: list[dict], nodes: set[str]) -> list[float]:
    """Per graph run: the kernel time of ``nodes`` / all kernel time (a preempted kernel skews one run only)."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    ours, total = [0.0] * len(runs), [0.0] * len(runs)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            k = next((i for i, (a, b) in enumerate(runs) if a <= e["ts"] <= b), None)
            if k is not None:
                total[k] += e["dur"]
                ours[k] += e["dur"] if e["name"][: -len("_kernel_time")] in nodes else 0.0
    return [o / t for o, t in zip(ours, total) if t > 0]


def single_decode_s(rt, n: int = NEW_TOKENS, cpu: bool = False) -> float:
    """Seconds (``cpu``: CPU seconds of this process) per decoded token of one call with a task:
    (time of n tokens - time of 1) / (n - 1)."""
    clock = time.process_time if cpu else time.perf_counter
    t = clock()
    rt.generate(PROMPT, max_new_tokens=1, task=OVERHEAD_TASK)
    one = clock() - t
    t = clock()
    rt.generate(PROMPT, max_new_tokens=n, min_new_tokens=n, task=OVERHEAD_TASK)
    return (clock() - t - one) / (n - 1)


def row_tasks(c: int, start: int) -> list:
    """The tasks of ``c`` rows: ROW_TASKS in turn from ``start`` (each repetition starts one further)."""
    return [ROW_TASKS[(start + k) % len(ROW_TASKS)] for k in range(c)]


def runtime_rows(rt, tasks: list, n: int = NEW_TOKENS) -> dict:
    """One row per task through one batch: decode tokens/s and time to the last row's first token."""
    c = len(tasks)
    rows = [rt.row(PROMPT, t, max_new_tokens=n, min_new_tokens=n) for t in tasks]
    batch = rt.batch()
    t0 = time.perf_counter()
    for r in rows:
        batch.add(r)
    t1, cpu1 = time.perf_counter(), time.process_time()
    batch.step()
    first = time.perf_counter() - t0
    while batch:
        batch.step()
    t2, cpu2 = time.perf_counter(), time.process_time()
    assert all(r.n == n for r in rows)
    return {"tokens_per_s": c * (n - 1) / (t2 - t1), "cpu_tokens_per_s": c * (n - 1) / (cpu2 - cpu1), "ttft_s": first}


def _stream(url: str, body: dict) -> tuple[float, float, int]:
    """(seconds to the first text event, seconds to the end, completion tokens) of one streaming request."""
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    t = time.perf_counter()
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}  # a last chunk with the usage
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r, first, tokens = c.getresponse(), None, 0
    for line in r:
        if line.startswith(b"data: {"):
            ev = json.loads(line[6:])
            if first is None:  # the first token's event (random weights often complete no character)
                first = time.perf_counter() - t
            tokens = (ev.get("usage") or {}).get("completion_tokens", tokens)
    c.close()
    return first or 0.0, time.perf_counter() - t, tokens


def server_rows(server: Server, tasks: list, n: int = NEW_TOKENS) -> dict:
    """One concurrent streaming request per task: total tokens/s (and per CPU-second of the server process) and
    median time to first token."""
    c = len(tasks)
    bodies = [{"model": t or "base", "prompt": PROMPT, "max_tokens": n, "min_tokens": n} for t in tasks]
    t, cpu = time.perf_counter(), server.cpu_s()
    with ThreadPoolExecutor(c) as pool:
        res = list(pool.map(lambda b: _stream(server.url, b), bodies, timeout=600))
    wall, cpu = time.perf_counter() - t, server.cpu_s() - cpu
    assert all(r[2] == n for r in res), res
    return {"tokens_per_s": c * n / wall, "cpu_tokens_per_s": c * n / _cpu(cpu), "ttft_s": median([r[0] for r in res])}


def _cpu(seconds: float) -> float:
    """A server CPU-time delta (psutil: 10 ms ticks), at least one tick: a tiny model's short run can read 0."""
    return max(seconds, 0.01)


class Server:
    """``edgevlm serve`` in its own process on a free loopback port: ``with Server(bundle, 2, 8) as url``."""

    def __init__(self, root: Path, threads: int, max_batch: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = ["serve", str(root), "--port", str(self.port), "--threads", str(threads), "--max-batch", str(max_batch)]
        args.append("--quiet")  # the start-up lines would interleave with the progress bar
        self.cmd = [sys.executable, "-m", "edgevlm.apps.cli", *args]
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the server process has used so far."""
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"edgevlm serve did not come up: {' '.join(self.cmd)}")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def measure(report: Report, root: Path, label: str, threads: int, repeats: int, levels=CONCURRENCY) -> dict:
    """Every measurement of one bundle, interleaved per repetition; medians."""
    from tqdm.auto import tqdm

    from edgevlm.runtime import Runtime

    rt = Runtime.load(root, threads=threads)
    plain = strip_columns(rt)
    runs: dict = {via: {c: [] for c in levels} for via in VIAS}
    runs["ab"], runs["ab_cpu"] = [], []
    with Server(root, threads, max(levels)) as srv:
        runtime_rows(rt, row_tasks(2, 0), 4), server_rows(srv, row_tasks(2, 0), 4)  # warm-up
        for rep in tqdm(range(repeats), desc=f"serving {label}", unit="rep"):
            for c in levels:
                runs["runtime"][c].append(runtime_rows(rt, row_tasks(c, rep)))
                runs["runtime, one task"][c].append(runtime_rows(rt, [OVERHEAD_TASK] * c))
                runs["server"][c].append(server_rows(srv, row_tasks(c, rep)))
            runs["ab"].append((single_decode_s(rt), single_decode_s(plain)))
            runs["ab_cpu"].append((single_decode_s(rt, cpu=True), single_decode_s(plain, cpu=True)))
    runs["kernel_share"] = columns_kernel_share(rt)
    return summarize(report, label, runs, levels)


def summarize(report: Report, label: str, runs: dict, levels) -> dict:
    out = {}
    for via in VIAS:
        alone = median([r["tokens_per_s"] for r in runs[via][1]])
        cpu_alone = median([r["cpu_tokens_per_s"] for r in runs[via][1]])
        for c in levels:
            tps = median([r["tokens_per_s"] for r in runs[via][c]])
            cpu = median([r["cpu_tokens_per_s"] for r in runs[via][c]])
            ttft = median([r["ttft_s"] for r in runs[via][c]]) * 1e3
            out[(via, c)] = report.add(
                f"[{label}] {via} {c} rows: {tps:.1f} tokens/s ({tps / alone:.2f}x alone), {cpu:.1f} per CPU-s "
                f"({cpu / cpu_alone:.2f}x), first token {ttft:.0f} ms",
                bundle=label,
                via=via,
                rows=c,
                tokens_per_s=tps,
                speedup=tps / alone,
                cpu_tokens_per_s=cpu,
                cpu_speedup=cpu / cpu_alone,
                ttft_ms=ttft,
                unit="tokens/s",
            )
    with_cols, without = median([a for a, _ in runs["ab"]]), median([b for _, b in runs["ab"]])
    cost = (with_cols / without - 1) * 100
    cpu_cost = (median([a for a, _ in runs["ab_cpu"]]) / median([b for _, b in runs["ab_cpu"]]) - 1) * 100
    share = runs["kernel_share"] * 100
    report.add(
        f"[{label}] single task: {1 / with_cols:.1f} tokens/s with adapter_columns, {1 / without:.1f} without "
        f"({cost:+.1f}% per token, CPU time {cpu_cost:+.1f}%, {len(runs['ab'])} A/B pairs); its Mul nodes {share:.2f}% "
        "of kernel time",
        bundle=label,
        via="single",
        tokens_per_s=1 / with_cols,
        tokens_per_s_without_columns=1 / without,
        columns_cost_pct=cost,
        columns_cpu_cost_pct=cpu_cost,
        columns_kernel_pct=share,
        unit="tokens/s",
    )
    return out


def markdown(report: Report, levels) -> str:
    rows = [r for r in report.records if r["via"] in VIAS]
    head = " | ".join(f"{c} rows: tok/s (x alone), per CPU-s (x)" for c in levels)
    lines_ = [f"| bundle | via | {head} | first token ms |", "|" + "---|" * (3 + len(levels))]
    for b, via in dict.fromkeys((r["bundle"], r["via"]) for r in rows):
        sel = {r["rows"]: r for r in rows if r["bundle"] == b and r["via"] == via}
        cells = [
            f"{sel[c]['tokens_per_s']:.1f} ({sel[c]['speedup']:.2f}x), {sel[c]['cpu_tokens_per_s']:.1f} "
            f"({sel[c]['cpu_speedup']:.2f}x)"
            for c in levels
        ]
        ttft = " / ".join(f"{sel[c]['ttft_ms']:.0f}" for c in levels)
        lines_.append(f"| {b} | {via} | " + " | ".join(cells) + f" | {ttft} |")
    single = [r for r in report.records if r["via"] == "single"]
    lines_ += [
        "",
        "| bundle | single task tok/s | without adapter_columns | wall A/B | CPU-time A/B | its kernel time |",
    ]
    lines_ += ["|---|---|---|---|---|---|"]
    lines_ += [
        f"| {r['bundle']} | {r['tokens_per_s']:.1f} | {r['tokens_per_s_without_columns']:.1f} | "
        f"{r['columns_cost_pct']:+.1f}% | {r['columns_cpu_cost_pct']:+.1f}% | {r['columns_kernel_pct']:.2f}% |"
        for r in single
    ]
    return "\n".join(lines_) + "\n"


def plot(report: Report, out: Path, levels) -> Path:
    """Tokens/s, tokens per CPU-second and time to first token against concurrency; colour = format, line = via."""
    from .plots import _plt, _quant_color, save

    plt = _plt()
    rows = [r for r in report.records if r["via"] in VIAS]
    keys = {"tokens_per_s": "total tokens/s", "cpu_tokens_per_s": "tokens per CPU-second", "ttft_ms": "first token, ms"}
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys.items()):
        for b, via in dict.fromkeys((r["bundle"], r["via"]) for r in rows):
            y = [r[key] for r in rows if r["bundle"] == b and r["via"] == via]
            style = {"runtime": "-", "runtime, one task": ":", "server": "--"}[via]
            ax.plot(list(levels), y, marker="o", linestyle=style, color=_quant_color(b), label=f"{b} {via}")
        ax.set_xlabel("concurrent requests (different tasks)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("mixed-task batches")
    return save(fig, out / "throughput.png")


def replot(results: Path) -> Path:
    """Redraw ``throughput.png`` next to a results.json."""
    doc = json.loads(results.read_text())
    report = Report("serving", 0, doc["quick"], records=doc["records"])
    return plot(report, results.parent, CONCURRENCY)


def run(quick: bool, out: str | None, threads: int | None, sizes: list[str] | None, work: str | None) -> Path:
    threads = check_threads(threads)
    sizes = sizes or (["tiny"] if quick else ["gpt2-small"])
    quants, repeats = (["int8"], 1) if quick else (["int8", "int4"], 5)
    report, ws = Report("serving", threads, quick), Workspace(work)
    try:
        for size in sizes:
            for quant in quants:
                print(f"serving: {size} {quant}: preparing the bundle ...", file=sys.stderr, flush=True)
                measure(report, bundle(ws, size, quant), f"{size} {quant}", threads, repeats)
    finally:
        ws.close()
    dest = Path(out) / "serving" if out else RESULTS_DIR / "serving"
    report.write(dest, markdown(report, CONCURRENCY))
    plot(report, dest, CONCURRENCY)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgevlm.benchmarks.serving", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", help="comma-separated among tiny, gpt2-small, gpt2-medium (default gpt2-small)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument("--work", help="keep built bundles here and reuse them")
    p.add_argument("--out", help="results root (default benchmarks/results)")
    p.add_argument("--quick", action="store_true", help="tiny int8, one repetition (smoke run)")
    a = p.parse_args(argv)
    dest = run(a.quick, a.out, a.threads, a.sizes.split(",") if a.sizes else None, a.work)
    print(f"wrote {dest}/results.json, results.md and throughput.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
