"""Issue 30 item 4, cost half only: decode ms/token on SmolLM2-135M with no task, the paper's bottleneck adapter
(nlg, bottleneck 10; dialogue, 100), a LoRA at a matched parameter count (every attention and MLP projection) and
LoRA rank 8 on q/v (the common default), all random weights, all in ONE bundle per quantization, ONE process,
rounds interleaved, medians. Task quality (the other half) needs training both methods on the real data: not here.

    python experiments/lora_cost/lora_cost_smollm2.py export MODE WORK     # MODE: int8 or int4; writes WORK/MODE
    python experiments/lora_cost/lora_cost_smollm2.py export MODE-nolora WORK  # bottleneck tasks only, no LoRA
    python experiments/lora_cost/lora_cost_smollm2.py measure WORK/int8 WORK/int4 --json OUT [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT = "The restaurant near the river serves Italian food and the prices are"


def _bottleneck_dirs(work: Path) -> list[Path]:
    """Random paper adapters (nlg: bottleneck 10, dialogue: 100) as training writes them."""
    import torch

    from edgevlm.core.config import AdapterMeta
    from edgevlm.train.adapters import save_adapter
    from edgevlm.train.backbone import load_backbone
    from edgevlm.train.model import VLM
    from edgevlm.train.tasks import BUILTIN_TASKS

    bb = load_backbone("smollm2-135m")
    vlm, out, gen = VLM(bb.model).eval(), [], torch.Generator().manual_seed(0)
    for name in ("nlg", "dialogue"):
        with torch.no_grad():
            for k, p in vlm.add_task(BUILTIN_TASKS[name]).tensors().items():
                p.copy_((1.0 if k.endswith("ln.weight") else 0.0) + 0.02 * torch.randn(p.shape, generator=gen))
        n, share = vlm.trainable_share(name)
        tensors = {k: v.detach().numpy() for k, v in vlm.task(name).tensors().items()}
        out.append(save_adapter(work / "adapters" / name, tensors, AdapterMeta(BUILTIN_TASKS[name], bb.fingerprint,
                                                                               bb.config_dict, n, share)))  # fmt: skip
        print(f"{name}: {n:,} parameters")
    return out


def _lora_dir(work: Path, name: str, r: int, targets: list[str]) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from edgevlm.train.backbone import load_backbone

    pm = get_peft_model(load_backbone("smollm2-135m").model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.01)
    print(f"{name}: rank {r} on {targets}: {sum(p.numel() for p in pm.parameters() if p.requires_grad):,} parameters")
    pm.peft_config["default"].base_model_name_or_path = "SmolLM2-135M-Instruct"
    pm.save_pretrained(str(work / name), save_embedding_layers=False)  # no hub look-up for the base name
    return work / name


def export(mode: str, work: str) -> None:
    from edgevlm.export import export_bundle

    w, quant = Path(work), mode.removesuffix("-nolora")
    adapters = _bottleneck_dirs(w)
    if mode.endswith("-nolora"):  # today's graph: what the LoRA inputs cost the other tasks
        export_bundle("smollm2-135m", adapters, quant, out=w / mode, force=True, progress=False)
        return
    # matched to dialogue's bottleneck-100 adapter: 30 layers x (2 x 576 x 100 + ...) ~ 3.5 M; LoRA on every
    # projection costs r x 10,176 per layer -> r = 11 gives ~3.4 M
    matched, qv8 = _lora_dir(w, "lora_matched", 11, ALL), _lora_dir(w, "lora_qv8", 8, ["q_proj", "v_proj"])
    loras = [f"lora_matched={matched}", f"lora_qv8={qv8}"]
    t = time.perf_counter()
    export_bundle("smollm2-135m", adapters, quant, out=w / mode, force=True, progress=False, lora=loras)
    print(f"exported {mode} in {time.perf_counter() - t:.0f} s")


def measure(bundles: list[str], out: str, threads: int, rounds: int, new: int = 48) -> None:
    from edgevlm.runtime import Runtime

    rts = {Path(b).name: Runtime.load(b, threads=threads) for b in bundles}
    tasks = [None, "nlg", "dialogue", "lora_matched", "lora_qv8"]
    keys = [(m, t) for m in rts for t in tasks if t is None or t in rts[m].tasks]
    times: dict = {k: [] for k in keys}
    for m, t in keys:  # warm-up
        rts[m].generate_tokens(rts[m].tokenizer.encode(PROMPT).ids, task=t, max_new_tokens=4)
    for r in range(rounds):
        for m, t in keys[r % len(keys) :] + keys[: r % len(keys)]:
            rt = rts[m]
            ids = rt.tokenizer.encode(PROMPT).ids
            t0 = time.perf_counter()
            rt.generate_tokens(ids, task=t, max_new_tokens=1)
            t1 = time.perf_counter()
            got = rt.generate_tokens(ids, task=t, max_new_tokens=new, min_new_tokens=new)
            t2 = time.perf_counter()
            assert len(got) == new, (m, t, len(got))
            times[(m, t)].append(((t2 - t1) - (t1 - t0)) / (new - 1) * 1e3)
    rows = [{"quant": m, "task": t or "none", "ms_per_token": round(statistics.median(v), 2),
             "rounds": [round(x, 2) for x in v]} for (m, t), v in times.items()]  # fmt: skip
    for row in rows:
        print(row)
    Path(out).write_text(json.dumps(rows, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("mode")
    e.add_argument("work")
    m = sub.add_parser("measure")
    m.add_argument("bundles", nargs="+")
    m.add_argument("--json", required=True)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    export(a.mode, a.work) if a.cmd == "export" else measure(a.bundles, a.json, a.threads, a.rounds)


if __name__ == "__main__":
    main()
