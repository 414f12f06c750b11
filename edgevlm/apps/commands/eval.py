"""``edgevlm eval``: decode a task's data with a trained adapter, print the metrics, write predictions."""

from __future__ import annotations

from pathlib import Path

DATA_HELP = (
    "evaluation data: E2E CSV (nlg), PersonaChat/ConvAI2 JSON (dialogue; FILE#valid for a file of splits) or "
    "ParlAI text (.txt), SRC:TGT two line-aligned files, SRC.xml:REF.xml IWSLT/WIT3 XML or a .tsv (mt), "
    "CNN/DM .csv or .jsonl, a .story file or directory (summarization), "
    "CoQA JSON (qa), or JSONL with source/target (any task). Default: the built-in mini test split"
)
NAMES = {
    "bleu": "BLEU",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "f1": "F1",
    "em": "EM",
    "perplexity": "perplexity",
}


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained adapter (BLEU, ROUGE, F1, perplexity) and write predictions")
    p.add_argument(
        "--adapter",
        required=True,
        help="an 'edgevlm train' output or one task's directory in it (a --full output works too)",
    )
    p.add_argument("--task", help="task name (default: the adapter's; selects one task of a multi-task output)")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument(
        "--format",
        help="data format, overriding inference (jsonl, e2e, personachat, parlai, parallel, wit3, tsv, cnndm, coqa)",
    )
    p.add_argument(
        "--backbone",
        help="'tiny', 'smollm2-135m', a local Hugging Face directory (GPT-2 or Llama family) or a .gguf file "
        "(default: a --full output's own, else the one adapter.json names, else tiny). A --full output always "
        "runs on its own fine-tuned backbone: naming the one it was tuned from uses that copy (with a note), "
        "naming another is refused",
    )
    p.add_argument("--num-beams", type=int, default=1, help="beam size (default 1 = greedy, as the paper)")
    p.add_argument("--max-new-tokens", type=int, help="generation limit (default: the task's)")
    p.add_argument(
        "--limit", type=int, help="evaluate only the first N distinct sources of the file, each with all its references"
    )
    p.add_argument(
        "--out", help="predictions JSONL (default: ADAPTER/predictions.jsonl); metrics go to OUT with .metrics.json"
    )
    p.set_defaults(func=run)


E2E_NAMES = {
    "e2e_bleu": "BLEU",
    "e2e_nist": "NIST",
    "e2e_meteor": "METEOR*",
    "e2e_rougeL": "ROUGE-L",
    "e2e_cider": "CIDEr",
}


def format_metrics(m: dict, primary: str) -> str:
    keys = [primary] + [k for k in NAMES if k != primary and k in m]
    line = "  ".join(f"{NAMES[k]} {m[k]:.2f}" for k in keys if k in m)
    if "e2e_bleu" in m:  # nlg: the E2E challenge's own scoring, comparable with its tables
        e2e = "  ".join(f"{v} {m[k]:.2f}" for k, v in E2E_NAMES.items())
        line += f"\nE2E challenge metrics: {e2e}  (*exact+stem only: docs/metrics.md)"
    return line


def run(args) -> int:
    import json

    from edgevlm.core.config import atomic_write_text
    from edgevlm.train.evaluate import evaluate_adapter
    from edgevlm.train.layout import find_adapter

    adir = find_adapter(args.adapter, args.task)
    out = Path(args.out) if args.out else adir / "predictions.jsonl"
    m = evaluate_adapter(
        adir, args.data, args.task, args.format, args.backbone, args.num_beams, args.limit, out, args.max_new_tokens
    )
    atomic_write_text(out.with_suffix(".metrics.json"), json.dumps(m, indent=2) + "\n")
    print(f"{m['task']}: {m['n']} inputs, {m['decoding']} decoding")
    print(format_metrics(m, m["primary"] if m["primary"] in NAMES else "bleu"))
    print(f"wrote {out}")
    return 0
