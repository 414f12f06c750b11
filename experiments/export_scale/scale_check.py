"""Real-scale export check: GPT-2 small (124M) / medium (355M) configurations with random weights.

No hub is reachable, so each backbone is built from its configuration with random weights
(:mod:`edgevlm.train.random_backbone`) in a temporary directory, next to two adapters (nlg, B=10; mt, B=300)
"trained" on it (random perturbation of the identity, with the right fingerprint). Each export runs in its own
process so its wall time and peak RSS are its own; then decode speed is timed per bundle. Writes JSON::

    python experiments/export_scale/scale_check.py --sizes small medium --json export_scale.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCALE_SIZES = ("small", "medium")  # gpt2-<size> of edgevlm.train.random_backbone.SIZES
QUANTS = ("fp32", "int8", "int4")
SPEED_ROUNDS = 3


def make_backbone(size: str, root: Path) -> Path:
    """A random-weight GPT-2 ``size`` directory (safetensors + config + tokenizer.json)."""
    from edgevlm.train.random_backbone import save_random

    return save_random(root / f"gpt2-{size}", f"gpt2-{size}")


def make_adapters(backbone: Path, root: Path) -> list[Path]:
    """nlg and mt adapters for ``backbone``: identity plus small random weights, saved like ``edgevlm train`` does."""
    import torch

    from edgevlm.core.config import AdapterMeta
    from edgevlm.train.adapters import save_adapter
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.model import VLM
    from edgevlm.train.tasks import builtin_task

    bb = load_backbone(backbone)
    vlm, out = VLM(bb.model), []
    for name in ("nlg", "mt"):
        mod = vlm.add_task(builtin_task(name))
        with torch.no_grad():
            for p in mod.parameters():
                p.add_(0.02 * torch.randn_like(p))
        tensors = {k: v.detach().numpy() for k, v in mod.tensors().items()}
        n, share = vlm.trainable_share(name)
        out.append(save_adapter(root / name, tensors, AdapterMeta(mod.cfg, bb.fingerprint, bb.config_dict, n, share)))
    return out


def config(size: str) -> dict:
    """The layer/head/width fields of ``gpt2-<size>`` (for the results)."""
    from edgevlm.train.random_backbone import SIZES

    return {k: SIZES[f"gpt2-{size}"][k] for k in ("n_layer", "n_head", "n_embd")}


def peak_rss_mib() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(args) -> None:
    """In a fresh process: build the backbone + adapters (``--make``) or run one export; print JSON."""
    if args.make:
        backbone = make_backbone(args.make, Path(args.out))
        print(
            json.dumps(
                {
                    "backbone": str(backbone),
                    "adapters": [str(a) for a in make_adapters(backbone, Path(args.out) / "adapters")],
                }
            )
        )
        return
    from edgevlm.export import export_bundle

    t0 = time.perf_counter()
    export_bundle(args.backbone, args.adapter, args.quant, out=args.out, progress=False)
    print(json.dumps({"wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mib": peak_rss_mib()}))


def _in_child(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)


def make_in_child(size: str, work: Path) -> tuple[Path, list[Path]]:
    """Backbone + adapters built in a separate process (its memory is not held while exports run)."""
    proc = _in_child("--make", size, "--out", str(work))
    if proc.returncode:
        raise RuntimeError(f"building gpt2-{size} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    made = json.loads(proc.stdout.strip().splitlines()[-1])
    return Path(made["backbone"]), [Path(a) for a in made["adapters"]]


def export_one(backbone: Path, adapters: list[Path], quant: str, out: Path) -> dict:
    proc = _in_child(
        "--backbone",
        str(backbone),
        "--quant",
        quant,
        "--out",
        str(out),
        *[a for p in adapters for a in ("--adapter", str(p))],
    )
    if proc.returncode:
        why = "killed (out of memory?)" if proc.returncode < 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {why}"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["files_mb"] = {
        p.relative_to(out).as_posix(): round(p.stat().st_size / 1e6, 2) for p in sorted(out.rglob("*")) if p.is_file()
    }
    res["bundle_mb"] = round(sum(res["files_mb"].values()), 1)
    return res


def decode_speed(bundle: Path, prompt_len: int = 32, n_new: int = 32, threads: int = 2) -> dict:
    """Prefill ms and mean cached decode ms/token (the runtime's greedy loop), nlg adapter selected by RunOptions."""
    import onnxruntime as ort

    from edgevlm.core import bundle as bfmt
    from edgevlm.export.verify import session, step_fn
    from edgevlm.runtime.decoder import tokens
    from edgevlm.runtime.generation import GenerationConfig

    m = bfmt.load_manifest(bundle, verify=False)
    sess = session(str(bundle / bfmt.BACKBONE_FILE), threads=threads)
    adapter = ort.LoraAdapter()
    adapter.Load(str(bundle / m.tasks["nlg"].adapter_file))
    ro = ort.RunOptions()
    ro.add_active_adapter(adapter)
    step = step_fn(sess, m.backbone, run_options=ro)
    prompt = np.random.default_rng(0).integers(0, 1000, prompt_len).tolist()
    cfg = GenerationConfig(max_new_tokens=n_new + 1)  # the prefill's token, then n_new cached steps
    next(tokens(step, [prompt], cfg, None))  # warm-up
    t0 = time.perf_counter()
    steps = tokens(step, [prompt], cfg, None)
    next(steps)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = sum(1 for _ in steps)
    return {
        "prefill_ms": round(prefill * 1e3, 1),
        "decode_ms_per_token": round((time.perf_counter() - t0) * 1e3 / n, 2),
        "prompt_len": prompt_len,
        "threads": threads,
    }


def run(sizes: list[str], quants: list[str], work: Path, json_out: Path | None = None) -> dict:
    """Export every size x quant (results also written to ``json_out`` after each bundle)."""
    import onnxruntime
    import psutil
    from tqdm.auto import tqdm

    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "onnxruntime": onnxruntime.__version__,
        "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
    }
    results = {"machine": machine, "sizes": {}}
    for size in sizes:
        backbone, adapters = make_in_child(size, work / size)
        rows = {}
        for quant in tqdm(quants, desc=f"export gpt2-{size}", unit="bundle"):
            rows[quant] = export_one(backbone, adapters, quant, work / size / f"bundle-{quant}")
            results["sizes"][size] = {"config": config(size), "exports": rows}
            _save(results, json_out)
        ok = [q for q in quants if "error" not in rows[q]]
        speeds: dict[str, list] = {}
        for _ in range(SPEED_ROUNDS):  # interleaved rounds: load from other processes hits every mode alike
            for q in ok:
                speeds.setdefault(q, []).append(decode_speed(work / size / f"bundle-{q}"))
        for q in ok:
            rows[q]["speed"] = _summary(speeds[q])
        _save(results, json_out)
        shutil.rmtree(work / size, ignore_errors=True)
    return results


def _summary(runs: list[dict]) -> dict:
    import psutil

    dec = sorted(r["decode_ms_per_token"] for r in runs)
    pre = sorted(r["prefill_ms"] for r in runs)
    return {
        "decode_ms_per_token_median": dec[len(dec) // 2],
        "decode_ms_per_token_min": dec[0],
        "prefill_ms_median": pre[len(pre) // 2],
        "prompt_len": runs[0]["prompt_len"],
        "threads": runs[0]["threads"],
        "rounds": len(runs),
        "load_average": [round(x, 2) for x in psutil.getloadavg()],
    }


def _save(results: dict, path: Path | None) -> None:
    if path:
        path.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["small", "medium"], choices=SCALE_SIZES)
    p.add_argument("--quant", nargs="+", default=list(QUANTS), choices=QUANTS)
    p.add_argument("--json", default="export_scale.json", help="where to write the results")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backbone", help=argparse.SUPPRESS)
    p.add_argument("--adapter", action="append", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--make", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.quant = args.quant[0]
        child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="edgevlm-scale-") as tmp:
        results = run(args.sizes, args.quant, Path(tmp), Path(args.json))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
