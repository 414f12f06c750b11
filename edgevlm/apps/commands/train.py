"""``edgevlm train``: adapters (one task or several) or full fine-tuning on a frozen backbone."""

from __future__ import annotations


def register(sub) -> None:
    from edgevlm.train.sources import BACKBONE_HELP

    p = sub.add_parser("train", help="train task adapters (or --full fine-tuning) on a frozen backbone")
    p.add_argument("--backbone", default="tiny", help=BACKBONE_HELP)
    p.add_argument(
        "--task",
        action="append",
        required=True,
        help="task name; repeat for multi-task training; 'all' = the five built-in tasks",
    )
    p.add_argument(
        "--data",
        help="training data (default: the built-in mini task of that name): E2E CSV, PersonaChat "
        "JSON (FILE#train for a file of splits) or ParlAI text (.txt), SRC:TGT two line-aligned files, "
        "SRC.xml:REF.xml IWSLT/WIT3 XML or a .tsv, CNN/DM .csv, .jsonl or .story file/directory, CoQA JSON, "
        "or JSONL with source/target; see --format",
    )
    p.add_argument(
        "--valid-data",
        help="validation data file (default: 5%% of --data's source units - MRs, talks, dialogues, "
        "articles - each kept whole, or the built-in validation split)",
    )
    p.add_argument(
        "--format",
        help="data format, overriding inference from task and file "
        "(jsonl, e2e, personachat, parlai, parallel, wit3, tsv, cnndm, coqa)",
    )
    p.add_argument(
        "--method",
        default="adapter",
        choices=("adapter", "lora"),
        help="adapter: the paper's bottleneck adapter (default); lora: a peft LoRA (OUT/<task>/ is a peft directory)",
    )
    p.add_argument("--rank", type=int, default=8, help="--method lora: LoRA rank r (default 8)")
    p.add_argument("--alpha", type=float, default=16.0, help="--method lora: lora_alpha; scaling alpha / r (16)")
    p.add_argument(
        "--targets",
        nargs="+",
        help="--method lora: module names (default: GPT-2 c_attn c_proj c_fc; Llama q_proj k_proj v_proj o_proj)",
    )
    p.add_argument("--bottleneck", type=int, help="adapter bottleneck size (default: the task's, as in the paper)")
    p.add_argument("--steps", type=int, default=400, help="optimisation steps (default 400)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per process and micro-batch (default 16)")
    p.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        help="micro-batches per optimizer step; global batch = --batch-size x processes x --grad-accum",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: this process's GPU if any)")
    p.add_argument(
        "--precision",
        default="auto",
        help="fp32, bf16 or auto (default: bf16 autocast on GPUs and on CPUs with native bf16, AVX512-BF16/AMX; "
        "fp32 elsewhere)",
    )
    p.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        help="seconds a process waits for the others (torchrun / accelerate launch) before failing",
    )
    p.add_argument("--lr", type=float, help="learning rate (default 3e-3 for adapters, 5e-4 with --full)")
    p.add_argument("--max-len", type=int, default=256, help="max tokens per example (prompt + target)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=100, help="checkpoint interval for --resume")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--token-init",
        default="words",
        help="task tokens start from the embedding of their names (words, default) or of the table's mean (mean)",
    )
    p.add_argument(
        "--quant",
        default="fp32",
        choices=("fp32", "int8", "int4"),
        help="train against the backbone weights of this bundle quantization (export with the same --quant)",
    )
    p.add_argument("--full", action="store_true", help="fully fine-tune the backbone (the paper's baseline)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument(
        "--force", action="store_true", help="train into a non-empty --out (replaces only this run's task adapters)"
    )
    p.add_argument("--distill-from", help="teacher directory (a --full output): train on its greedy outputs")
    p.add_argument("--out", required=True, help="output directory: one OUT/<task>/ adapter directory per task")
    p.set_defaults(func=run)


def spec_from_args(args):
    """The TrainSpec of parsed ``edgevlm train`` arguments (validation happens there)."""
    from edgevlm.train.api import TrainSpec

    keys = ("backbone", "data", "valid_data", "format", "bottleneck", "steps", "batch_size", "lr", "seed")
    keys += ("eval_every", "save_every", "max_len", "full", "distill_from", "resume", "force", "out")
    keys += ("grad_accum", "device", "precision", "dist_timeout", "token_init", "quant")
    return TrainSpec(tasks=args.task, **{k: getattr(args, k) for k in keys})


def run(args) -> int:
    import os

    from edgevlm.train.api import train

    if args.method == "lora":
        from edgevlm.train.lora import LoraSpec, train_lora

        lora = LoraSpec(args.rank, args.alpha, tuple(args.targets) if args.targets else None)
        result = train_lora(spec_from_args(args), lora)
    else:
        result = train(spec_from_args(args))
    if os.environ.get("RANK", "0") != "0":  # under torchrun / accelerate launch rank 0 reports
        return 0
    for t in result.tasks:
        losses = t.valid_loss
        print(
            f"{t.task.name}: {t.trainable_params:,} trainable parameters = {t.trainable_share:.2f}% of the backbone"
            + (f"; validation loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "")
            + f"; wrote {t.path}"
        )
    return 0
