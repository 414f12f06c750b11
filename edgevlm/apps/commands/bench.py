"""``edgevlm bench``: footprint, latency, quality and serving benchmarks (code in ``benchmarks/``), and
``--summary``, which regenerates docs/results.md from their results."""

from __future__ import annotations

from edgevlm.core.errors import ConfigError

SUITES = ("footprint", "latency", "quality", "serving")


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark footprint, latency and quality against PyTorch and optimum; mixed-task serving throughput",
        description="Writes JSON, a markdown table and PNG plots per suite under OUT/<suite>/.",
    )
    p.add_argument("--suite", choices=SUITES + ("all",), default="all", help="which suite to run (default all)")
    p.add_argument(
        "--quick", action="store_true", help="every suite on the tiny default with few repetitions (smoke test)"
    )
    p.add_argument("--out", help="results root (default benchmarks/results)")
    p.add_argument(
        "--summary",
        action="store_true",
        help="run no suite: regenerate docs/results.md and README.md's headline table from the results root",
    )
    p.add_argument("--threads", type=int, help="threads per engine (default: all cores)")
    p.add_argument("--work", help="keep built models, bundles and adapters here and reuse them (default: temp dirs)")
    p.add_argument("--sizes", help="latency, serving: comma-separated sizes among tiny,gpt2-small,gpt2-medium")
    p.add_argument("--size", help="footprint: the backbone (tiny, gpt2-small, gpt2-medium)")
    p.add_argument("--e2e", help="quality: E2E devset CSV (default ../shared/data/e2e/devset.csv)")
    p.add_argument("--backbone", default="tiny", help="quality: tiny (default), smollm2-135m or a Hugging Face dir")
    p.add_argument(
        "--profile",
        help="quality on a real backbone: cpu (3 h on 2 cores; default), gate (int4-trained adapters and LoRA), "
        "curves (learning curves), gpu, reduced, smoke",
    )
    p.add_argument("--tasks", help="quality on a real backbone: a subset of nlg,mt,summarization,dialogue")
    p.set_defaults(func=run)


def check(args) -> list[str] | None:
    """Validate every option before any suite starts; returns the latency sizes."""
    from edgevlm.benchmarks.common import check_threads
    from edgevlm.benchmarks.fixtures import SIZES

    check_threads(args.threads)
    sizes = args.sizes.split(",") if args.sizes else None
    for opt, values in (("--sizes", sizes or []), ("--size", [args.size] if args.size else [])):
        unknown = [v for v in values if v not in SIZES]
        if unknown:
            raise ConfigError(f"{opt}: unknown model size(s) {unknown}; expected some of {list(SIZES)}")
    return sizes


def run(args) -> int:
    if args.summary:
        from edgevlm.benchmarks import summary

        return summary.main(["--results", args.out] if args.out else [])
    from edgevlm.benchmarks import footprint, latency, quality, serving

    sizes = check(args)
    suites = SUITES if args.suite == "all" else (args.suite,)
    written = []
    for s in suites:
        if s == "footprint":
            written.append(footprint.run(args.quick, args.out, args.threads, args.size, args.work))
        elif s == "latency":
            written.append(latency.run(args.quick, args.out, args.threads, sizes, args.work))
        elif s == "serving":
            written.append(serving.run(args.quick, args.out, args.threads, sizes, args.work))
        else:
            tasks = args.tasks.split(",") if args.tasks else None
            q = quality.run(args.quick, args.out, args.threads, args.work, args.e2e, args.backbone, args.profile, tasks)
            written += [q] if q else []
    for w in written:
        print(f"wrote the results JSON, markdown and plots under {w}/")
    return 0
