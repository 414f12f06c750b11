"""Adapter training on real data, before and after the CPU speed-ups (issue 31 item 1), in one run.

Trains the nlg adapter on SmolLM2-135M with the quality suite's split of ../shared/data/e2e (the cpu plan's
800 training rows, its held-out MRs), three ways, each in its own process, the same steps and seed:

- ``before``: fp32, batches drawn independently (what training did before: no length grouping);
- ``fp32``: fp32 with length-grouped batches;
- ``bf16``: the new default on a CPU with native bf16: autocast, frozen matrices held in bf16, grouped batches.

Prints one JSON line per configuration (examples/s by wall clock and by process CPU time, the validation-loss
curve) and, with ``--decode N``, the BLEU of each trained adapter on N held-out MRs (greedy, PyTorch).

``python experiments/train_step/real_step.py --steps 100 --decode 40 --json OUT.json``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {"before": ("fp32", False), "fp32": ("fp32", True), "bf16": ("bf16", True)}


def measure(name: str, steps: int, batch: int, decode: int, out: Path) -> dict:
    """Train one configuration in this process; its speed, loss curve and (optionally) held-out BLEU."""
    import torch

    from edgevlm.benchmarks import quality_plan as qp
    from edgevlm.benchmarks.quality_real import splits
    from edgevlm.train import trainer
    from edgevlm.train.api import TrainSpec, train

    precision, grouped = CONFIGS[name]
    if not grouped:
        trainer.BUCKET_STEPS = 1  # a pool of one batch: independent uniform draws, as before
    torch.set_num_threads(2)
    train_rows, valid, test = splits("nlg", qp.CPU_TASKS["nlg"], qp.DATA_ROOT)
    spec = TrainSpec(
        tasks=["nlg"], out=out, backbone="smollm2-135m", examples={"nlg": (train_rows, valid)}, steps=steps,
        batch_size=batch, max_len=96, lr=1e-2, eval_every=max(steps // 5, 1), save_every=10**6,
        precision=precision, force=True, progress=False,
    )  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    res = train(spec)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rec = {"config": name, "precision": precision, "grouped": grouped, "steps": steps, "batch": batch}
    rec.update(examples_per_s=round(steps * batch / wall, 2), examples_per_cpu_s=round(steps * batch / cpu, 2))
    rec.update(valid_loss=[round(x, 4) for x in res["nlg"].valid_loss], load_avg=round(os.getloadavg()[0], 2))
    rec["cpu"] = cpu_model()
    if decode:
        rec["bleu"] = held_out_bleu(res.paths["nlg"], test, decode)
    return rec


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        return next((x.split(":", 1)[1].strip() for x in f if x.startswith("model name")), "unknown CPU")


def held_out_bleu(adapter_dir: Path, test: list, limit: int) -> float:
    from edgevlm.train.evaluate import TorchGenerator, evaluate, load_model

    vlm, bb, meta = load_model(adapter_dir, None, "nlg")
    with vlm, tempfile.TemporaryDirectory() as tmp:
        scores = evaluate(test, TorchGenerator(vlm, bb, meta.task), Path(tmp) / "p.jsonl", limit, progress=False)
    return round(scores["bleu"], 2)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--decode", type=int, default=0, help="held-out MRs decoded per trained adapter (0: none)")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--config", choices=sorted(CONFIGS), help="run one configuration in this process")
    p.add_argument("--json", type=Path, help="append each configuration's line to this file")
    a = p.parse_args(argv)
    if a.config:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(a.config, a.steps, a.batch, a.decode, Path(tmp) / "out")), flush=True)
        return
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    for name in a.configs.split(","):
        cmd = [sys.executable, __file__, "--config", name, "--steps", str(a.steps), "--batch", str(a.batch)]
        r = subprocess.run([*cmd, "--decode", str(a.decode)], capture_output=True, text=True, env=env)
        rec = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-400:]}
        command = "python experiments/train_step/real_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
        line = json.dumps({"config": name, **rec, "command": command})
        print(line, flush=True)
        if a.json:
            with a.json.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
