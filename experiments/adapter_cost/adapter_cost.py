"""What an active adapter costs per decode step, and where it goes: A/B timing, ORT's kernel profile, agreement.

    python experiments/adapter_cost/adapter_cost.py (--bundle DIR ... | --sizes gpt2-small,smollm2-135m)
        [--quant fp32,int8,int4] [--variants fp32,int8,fp32-transposed] [--bottlenecks 25,100,300]
        [--threads 1,2] [--reps 10] [--steps 32] [--work DIR] [--out DIR]

For every bundle, adapter variant (``adapter_variants.py``) and thread count: one ONNX Runtime session of the
(rewritten) graph with random adapters at each bottleneck loaded as ``LoraAdapter`` (selected per run, as the
runtime does), then

- **A/B**: ``reps`` rounds; a round decodes ``steps`` tokens after a 32-token prompt with no task and with each
  bottleneck, in alternating order. Overhead = median over rounds of (time with the adapter / time without - 1),
  by wall clock and by the process's CPU time (which preemption on a shared machine does not inflate).
- **kernels**: a profiling session of the same graph; per node, the median kernel time over the decode steps. The
  adapter nodes' sum with each bottleneck minus their sum with no task (bottleneck 1: the identity defaults),
  over the whole step's kernels with no task, is the overhead with most of the machine's noise taken out.
- **agreement**: the variant's logits against the fp32 adapter's (same random weights, same backbone graph) over
  the prompt and ``steps`` teacher-forced steps: max |logit diff| and top-1 agreement.

Bundles given with ``--sizes`` are exported without tasks into ``--work`` (random adapters are made here).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgevlm.benchmarks.common import Report, fmt, md_table, median
from edgevlm.core import bundle as core_bundle
from edgevlm.core.errors import ConfigError

try:  # python -m experiments.adapter_cost.adapter_cost from the repository root
    from experiments.adapter_cost import adapter_variants as av
except ModuleNotFoundError:  # python experiments/adapter_cost/adapter_cost.py: this folder is sys.path[0]
    import adapter_variants as av

RESULTS = Path(__file__).resolve().parent / "results"

PROMPT = 32
SEED = 14


def open_graph(root: Path, variant: str, threads: int, profile_dir: str | None = None):
    """(session, backbone record) of the bundle's graph in ``variant``'s form."""
    import onnx
    import onnxruntime as ort

    from edgevlm.runtime.session import session_options

    bb = core_bundle.load_manifest(root, verify=False).backbone
    so = session_options(threads)
    if profile_dir:
        so.enable_profiling, so.profile_file_prefix = True, f"{profile_dir}/ort"
    path = root / bb.file
    model = str(path) if variant == "fp32" else av.rewrite(onnx.load(path), variant).SerializeToString()
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]), bb


def decoder(session, bb):
    """The runtime's graph runs (:class:`edgevlm.runtime.steps.Steps`) on ``session``."""
    from edgevlm.runtime.session import Graph
    from edgevlm.runtime.steps import Steps

    sizes = {k: getattr(bb, k) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")}
    graph = Graph(**sizes, n_kv_head=bb.n_kv_head, head_dim=bb.head_dim, adapter_inputs={})
    return Steps(session, graph, shared=False, where="adapter_cost")


def adapters(bb, variant: str, bottlenecks: list[int], tmp: str, seed: int = SEED) -> dict[int, object]:
    """Bottleneck -> a ``LoraAdapter`` of random weights (``seed`` + bottleneck) in ``variant``'s form."""
    import onnxruntime as ort

    out = {}
    for b in bottlenecks:
        tensors = av.convert(av.random_adapter(bb.n_layer, bb.n_embd, b, 2, seed + b), variant)
        fmt_ = ort.AdapterFormat()
        fmt_.set_adapter_version(1)
        fmt_.set_model_version(1)
        fmt_.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in tensors.items()})
        path = f"{tmp}/{variant}-{b}-{seed}.onnx_adapter"
        fmt_.export_adapter(path)
        out[b] = ort.LoraAdapter()
        out[b].Load(path)
    return out


def run_options(adapter):
    import onnxruntime as ort

    ro = ort.RunOptions()
    if adapter is not None:
        ro.add_active_adapter(adapter)
    return ro


def decode(dec, adapter, steps: int, vocab: int, forced: list[int] | None = None):
    """Prompt + ``steps`` greedy (or ``forced``) tokens -> (wall s/step, CPU s/step, tokens, logits per step)."""
    ro = run_options(adapter)

    def step(ids, mask, past):  # the runtime's graph run under ``adapter``
        return dec.run(ids, mask, dec.empty_past(ids.shape[0]) if past is None else past, ro)

    ids = np.random.default_rng(SEED).integers(0, vocab, (1, PROMPT))
    logits, past = step(ids, np.ones((1, PROMPT), np.int64), None)
    tokens, seen = [], [logits[0]]
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(steps):
        tokens.append(int(logits[0].argmax()) if forced is None else forced[k])
        logits, past = step(np.array([[tokens[-1]]]), np.ones((1, PROMPT + k + 1), np.int64), past)
        seen.append(logits[0])
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps, tokens, seen


def ab(dec, ads: dict, vocab: int, reps: int, steps: int) -> dict[int, dict]:
    """Bottleneck -> overhead by wall clock and CPU time (medians of per-round ratios) and medians in ms."""
    configs = [None, *ads]
    times: dict = {c: [] for c in configs}
    for c in configs:  # warm-up
        decode(dec, ads.get(c), 4, vocab)
    for r in range(reps):
        for c in configs if r % 2 == 0 else configs[::-1]:
            times[c].append(decode(dec, ads.get(c), steps, vocab)[:2])
    out = {}
    for b in ads:
        row = {}
        for j, kind in enumerate(("wall", "cpu")):
            base, with_ = [t[j] for t in times[None]], [t[j] for t in times[b]]
            row[f"{kind}_pct"] = 100 * median([a / n - 1 for a, n in zip(with_, base)])
            row[f"{kind}_ms"], row[f"{kind}_ms_none"] = 1e3 * median(with_), 1e3 * median(base)
        out[b] = row
    return out


def kernel_split(root: Path, variant: str, threads: int, bottlenecks: list[int], steps: int, tmp: str) -> dict:
    """Bottleneck (0: no task) -> (adapter nodes' ms, all kernels' ms) per decode step, per-node medians."""
    out = {}
    for b in [0, *bottlenecks]:
        prof = tempfile.mkdtemp(dir=tmp)
        sess, bb = open_graph(root, variant, threads, prof)
        ad = adapters(bb, variant, [b], tmp)[b] if b else None
        decode(decoder(sess, bb), ad, steps, bb.vocab_size)
        out[b] = node_medians(json.loads(Path(sess.end_profiling()).read_text()))
        del sess, ad
    return out


def node_medians(events: list[dict]) -> tuple[float, float]:
    """(adapter nodes' ms, every node's ms): the sum of each node's median kernel time over the profiled runs."""
    per: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per.setdefault(e["name"].removesuffix("_kernel_time"), []).append(e["dur"])
    med = {k: median(v) / 1e3 for k, v in per.items()}
    adapter = sum(v for k, v in med.items() if k.startswith("adapter.") and "/" in k)
    return adapter, sum(med.values())


def agreement(ref_dec, dec, ref_ads: dict, ads: dict, vocab: int, steps: int) -> dict[int, dict]:
    """Bottleneck -> max |logit diff| and top-1 agreement of ``dec``'s adapter against the fp32 one, teacher-forced."""
    out = {}
    for b in ads:
        _, _, tokens, ref = decode(ref_dec, ref_ads[b], steps, vocab)
        _, _, _, got = decode(dec, ads[b], steps, vocab, forced=tokens)
        diff = max(float(np.abs(a - r).max()) for a, r in zip(got, ref))
        top1 = float(np.mean([int(a.argmax()) == int(r.argmax()) for a, r in zip(got, ref)]))
        out[b] = {"max_abs_logit_diff": diff, "top1_agreement": top1}
    return out


def measure(root: Path, variant: str, threads: int, bottlenecks: list[int], reps: int, steps: int) -> list[dict]:
    """Every record of one bundle, variant and thread count."""
    with tempfile.TemporaryDirectory(prefix="edgevlm-adapter-cost-") as tmp:
        sess, bb = open_graph(root, variant, threads)
        dec, ads = decoder(sess, bb), adapters(bb, variant, bottlenecks, tmp)
        timing = ab(dec, ads, bb.vocab_size, reps, steps)
        ref_sess, _ = open_graph(root, "fp32", threads)
        agree = agreement(decoder(ref_sess, bb), dec, adapters(bb, "fp32", bottlenecks, tmp), ads, bb.vocab_size, 8)
        del sess, dec, ads, ref_sess
        kernels = kernel_split(root, variant, threads, bottlenecks, steps, tmp)
    none_adapter, none_step = kernels[0]
    base = {"bundle": root.name, "quantization": bb.quantization, "variant": variant, "threads": threads}
    return [
        {
            **base,
            "bottleneck": b,
            **timing[b],
            "adapter_kernel_ms": kernels[b][0],
            "adapter_kernel_ms_none": none_adapter,
            "step_kernel_ms_none": none_step,
            "kernel_pct": 100 * (kernels[b][0] - none_adapter) / none_step,
            **agree[b],
        }
        for b in bottlenecks
    ]


def export_bundles(sizes: list[str], quants: list[str], work: str | None) -> list[Path]:
    """Task-free bundles of each size and mode, exported once into the workspace."""
    from edgevlm.benchmarks.fixtures import Workspace, backbone_dir, export

    ws = Workspace(work)
    out = []
    for size in sizes:
        bb = backbone_dir(ws, size)
        out += [ws.get(f"{size}-adapter-cost-{q}", lambda p, q=q, bb=bb: export(bb, [], q, p)) for q in quants]
    return out


COLUMNS = [
    ("bundle", "bundle"),
    ("variant", "adapter"),
    ("threads", "threads"),
    ("bottleneck", "bottleneck"),
    ("wall_ms_none", "no task ms/token"),
    ("wall_pct", "overhead % (wall)"),
    ("cpu_pct", "overhead % (CPU)"),
    ("adapter_kernel_ms", "adapter kernels ms"),
    ("adapter_kernel_ms_none", "same, no task"),
    ("kernel_pct", "overhead % (kernels)"),
    ("max_abs_logit_diff", "max abs logit diff vs fp32 adapter"),
    ("top1_agreement", "top-1 agreement"),
]


def render(records: list[dict]) -> str:
    return md_table(records, COLUMNS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/adapter_cost/adapter_cost.py", description=__doc__.splitlines()[0]
    )
    p.add_argument("--bundle", action="append", default=[], help="a bundle directory (repeatable)")
    p.add_argument("--sizes", default="", help="model sizes to export without tasks (fixtures.SIZES)")
    p.add_argument("--quant", default="fp32,int8,int4")
    p.add_argument("--variants", default=",".join(av.VARIANTS))
    p.add_argument("--bottlenecks", default="25,100,300")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--work", help="keep exported bundles here")
    p.add_argument("--out", help="results folder (default: results/ beside this script)")
    a = p.parse_args(argv)
    if not a.bundle and not a.sizes:
        p.error("give --bundle DIR or --sizes")
    bad = [v for v in a.variants.split(",") if v not in av.VARIANTS]
    if bad:
        p.error(f"--variants: unknown {bad}; expected some of {list(av.VARIANTS)}")
    return a


def ints(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated integers") from None
    if any(v <= 0 for v in values):
        raise ConfigError(f"{option} {text!r}: every value must be positive")
    return values


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    bottlenecks, threads = ints(a.bottlenecks, "--bottlenecks"), ints(a.threads, "--threads")
    roots = [Path(b) for b in a.bundle]
    if a.sizes:
        roots += export_bundles(a.sizes.split(","), a.quant.split(","), a.work)
    report = Report("adapters", max(threads), False)
    for root in roots:
        for variant in a.variants.split(","):
            for t in threads:
                for r in measure(root, variant, t, bottlenecks, a.reps, a.steps):
                    report.add(" ".join(f"{k}={fmt(r.get(k))}" for k, _ in COLUMNS), **r)
    out = report.write(Path(a.out) if a.out else RESULTS, render(report.records))
    print(f"wrote {out}/results.json and results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
