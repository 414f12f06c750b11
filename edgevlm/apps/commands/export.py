"""``edgevlm export``: a frozen backbone (GPT-2 or Llama family) and trained adapters -> a bundle (ONNX graph,
adapter files, manifest)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export the backbone and task adapters into an on-device bundle")
    p.add_argument(
        "--backbone",
        help="'tiny', 'smollm2-135m', a local Hugging Face directory (GPT-2 or Llama family) or a .gguf file "
        "(default: the backbone the adapters' adapter.json names; 'tiny' for older adapters)",
    )
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="DIR",
        help="an 'edgevlm train' output (OUT/<task>/ per task) or one task's directory in it; repeatable",
    )
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME=PEFT_DIR",
        help="a peft LoRA directory (adapter_config.json + adapter_model.safetensors) as task NAME; repeatable",
    )
    p.add_argument(
        "--quant",
        default="fp32",
        choices=("fp32", "int8", "int4"),
        help="backbone weights: fp32, int8 (dynamic) or int4 (block-wise weight-only); adapters stay float",
    )
    p.add_argument("--out", required=True, help="output bundle directory")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--no-fuse", action="store_true", help="skip ONNX Runtime's kernel fusion")
    p.add_argument("--no-check", action="store_true", help="skip the export-time comparison with PyTorch")
    p.add_argument(
        "--ort",
        action="store_true",
        help="also write the graph in ONNX Runtime's .ort format (backbone.ort) with required_operators.config "
        "for a reduced ONNX Runtime build (edgevlm run/serve --graph ort)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from edgevlm.core.bundle import load_manifest
    from edgevlm.core.errors import ConfigError
    from edgevlm.export import export_bundle

    if not args.adapter and not args.lora:
        raise ConfigError("export: give at least one --adapter DIR or --lora NAME=PEFT_DIR")
    out = export_bundle(
        args.backbone,
        args.adapter,
        args.quant,
        out=args.out,
        force=args.force,
        fuse=not args.no_fuse,
        check=not args.no_check,
        ort_format=args.ort,
        lora=args.lora,
    )
    m = load_manifest(out, verify=False)
    size = sum((out / f).stat().st_size for f in m.files)
    print(f"wrote {out}: {args.quant} backbone, tasks {sorted(m.tasks)}, {size / 1e6:.1f} MB")
    return 0
