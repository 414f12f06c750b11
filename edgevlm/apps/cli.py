"""The ``edgevlm`` command: a thin dispatcher over subcommands in :mod:`edgevlm.apps.commands`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edgevlm import __version__
from edgevlm.core.env import passive_openmp, quiet_libraries
from edgevlm.core.errors import ConfigError, EdgeVLMError

# One module per subcommand under edgevlm.apps.commands, each with register(subparsers).
COMMANDS = ("train", "eval", "export", "run", "serve", "bench", "demo")
# The setup.cfg extra each subcommand needs beyond the runtime (`pip install edgevlm` gives only `run`).
EXTRAS = {"train": "train", "eval": "train", "export": "export", "demo": "export", "bench": "bench", "serve": "serve"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevlm",
        description="One frozen decoder (GPT-2, Llama family), many tasks: train adapters, export a bundle, "
        "run it on-device.",
    )
    parser.add_argument("--version", action="version", version=f"edgevlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"edgevlm.apps.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"edgevlm.apps.commands.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    passive_openmp()  # before any command imports torch
    if sys.stdout is None:  # started with stdout closed (`edgevlm run ... >&-`): nowhere to answer
        print("edgevlm: error: stdout is closed; nothing to write the output to", file=sys.stderr)
        return ConfigError.exit_code
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeVLMError as e:
        # under torchrun every rank raises the same error about the command line or data: rank 0 says it; what
        # befell one rank ("rank 1 of 2: gradient all-reduce failed ...") is said by that rank
        if os.environ.get("RANK", "0") == "0" or str(e).startswith("rank "):
            print(f"edgevlm {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except ModuleNotFoundError as e:
        if (e.name or "edgevlm").split(".")[0] == "edgevlm" or args.command not in EXTRAS:
            raise  # our own module missing is a packaging bug, not a user mistake
        return missing_extra(args.command, e.name)
    except KeyboardInterrupt:
        print(f"edgevlm {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`edgevlm run ... | head -c5`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 141


def missing_extra(command: str, module: str) -> int:
    """One line naming the extra a subcommand needs when its third-party ``module`` is not installed."""
    extra = EXTRAS[command]
    print(
        f"edgevlm {command}: error: needs the '{extra}' extra (no module named {module!r}): "
        f"pip install 'edgevlm[{extra}]'",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
