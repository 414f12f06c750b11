"""Re-score the gate run's bundles on more held-out sources than the suite decodes, to see which of its gaps
are noise: every bundle of one task of a finished ``--profile gate`` work directory, through the runtime, on the
first N sources of the same held-out units (ConvAI2: every turn of the 40 held-out dialogues; E2E holds out 40 MRs,
so nlg cannot grow). Prints one JSON line per (bundle, task): metric mean and its standard error over sources.

``python experiments/quality/more_sources.py WORK dialogue --sources 200``
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SYSTEMS = {  # bundle directory suffix -> [(task name inside the bundle, row name)]
    "bundle-fp32": [("{t}", "adapter fp32"), ("{t}_lora", "lora fp32"), ("{t}_lora_qv8", "lora-qv8 fp32")],
    "bundle-int4": [("{t}", "adapter int4"), ("{t}_lora", "lora int4"), ("{t}_lora_qv8", "lora-qv8 int4")],
    "adapter-int4-bundle-int4": [("{t}", "adapter int4-trained int4")],
}


def main(argv: list[str] | None = None) -> None:
    from edgevlm.benchmarks import quality_plan as qp
    from edgevlm.runtime import Runtime
    from edgevlm.train.metrics import score
    from edgevlm.train.tasks.loaders import group_by_source, split_by_source

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work", type=Path, help="the gate run's workspace (the folder holding cells/)")
    p.add_argument("task")
    p.add_argument("--sources", type=int, default=200)
    a = p.parse_args(argv)
    tp = qp.CPU_TASKS[a.task]
    from edgevlm.train.tasks.loaders import load_examples

    examples = load_examples(str(qp.DATA_ROOT / qp.DATA[a.task][0]), a.task)
    _, held = split_by_source(examples, tp.heldout_units, seed=0)  # the suite's split (quality_real.splits)
    groups = group_by_source(held)[: a.sources]
    metric = {"dialogue": "f1", "nlg": "bleu"}[a.task]
    for suffix, rows in SYSTEMS.items():
        rt = Runtime.load(a.work / f"{a.task}-{suffix}", threads=2)
        for name, label in rows:
            task = name.format(t=a.task)
            if task not in rt.manifest.tasks:
                continue
            preds = [rt.generate(g.source, task=task).strip() for g in groups]
            per = [score([x], [g.refs])[metric] for x, g in zip(preds, groups)]
            rec = {
                "task": a.task,
                "system": label,
                "sources": len(groups),
                metric: round(score(preds, [g.refs for g in groups])[metric], 2),
            }
            rec["per_source_mean"] = round(statistics.mean(per), 2)
            rec["stderr"] = round(statistics.stdev(per) / len(per) ** 0.5, 2)
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
