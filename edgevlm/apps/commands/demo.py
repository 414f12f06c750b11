"""``edgevlm demo``: the whole story offline (train five adapters, export one bundle, run it torch-free)."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="train 5 mini tasks, export one quantized bundle, run it on the torch-free runtime")
    p.add_argument("--cache", type=Path, help="work/cache directory (default: $EDGEVLM_CACHE/demo)")
    p.add_argument("--steps", type=int, default=300, help="training steps per task (default 300)")
    p.add_argument("--quant", choices=("fp32", "int8", "int4"), default="int8")
    p.add_argument("--show", type=int, default=2, help="held-out examples shown per task")
    p.add_argument("--eval", type=int, default=40, help="held-out examples scored per task")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgevlm.apps.demo import run_demo
    from edgevlm.core.errors import ConfigError
    from edgevlm.train.tiny import cache_dir

    if args.steps <= 0 or args.eval <= 0 or args.show < 0:
        raise ConfigError("--steps and --eval must be positive, --show >= 0")
    run_demo(args.cache or cache_dir() / "demo", args.steps, args.quant, args.show, args.eval, not args.no_progress)
    return 0
