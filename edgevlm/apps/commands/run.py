"""``edgevlm run``: load a bundle with the torch-free runtime and stream a task's output to stdout."""

from __future__ import annotations

import argparse
import sys

from edgevlm.core.errors import ConfigError


class IntermixedParser(argparse.ArgumentParser):
    """Accepts the input text after options (``run BUNDLE --task NAME "input"``), which plain argparse
    refuses for an optional positional on Python < 3.12."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def register(sub) -> None:
    p = sub.add_parser("run", help="run a bundle on-device: stream a task's output (torch-free runtime)")
    p.__class__ = IntermixedParser
    p.add_argument("bundle", help="bundle directory made by 'edgevlm export'")
    p.add_argument("input", nargs="?", help="input text (default: read lines from stdin, one output per line)")
    p.add_argument("--task", help="task to run (see --list)")
    p.add_argument("--plain", action="store_true", help="run the plain backbone without any task")
    p.add_argument(
        "--chat", action="store_true", help="the plain model with its own chat template: the input is the user turn"
    )
    p.add_argument("--list", action="store_true", help="list the bundle's tasks and exit")
    p.add_argument("--max-new-tokens", type=int, help="tokens to generate at most (default: the task's)")
    p.add_argument("--min-new-tokens", type=int, default=0, help="suppress EOS until this many tokens")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--beams", type=int, default=1, help="beam search width (output is printed when complete)")
    p.add_argument("--stop", action="append", default=[], help="stop before this string (repeatable)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument(
        "--spin", action="store_true", help="let idle worker threads spin (lower latency on an otherwise idle device)"
    )
    add_graph_options(p)
    add_quiet_option(p)
    p.set_defaults(func=run)


def add_graph_options(p) -> None:
    """--provider and --graph (run and serve)."""
    p.add_argument(
        "--provider",
        action="append",
        help="ONNX Runtime execution provider, repeatable in order of preference (default: CPUExecutionProvider)",
    )
    p.add_argument(
        "--graph",
        choices=("onnx", "ort"),
        default="onnx",
        help="the bundle's graph to run: backbone.onnx, or backbone.ort (a bundle exported with --ort)",
    )


def add_quiet_option(p) -> None:
    """--quiet (run and serve): no start block on stderr (edgevlm.apps.startinfo)."""
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="do not print the loaded bundle's summary (backbone, tasks, memory) on stderr at start",
    )


def list_tasks(rt) -> None:
    from edgevlm.core.bundle import describe

    head, *tasks = describe(rt.manifest)
    print(f"{rt.root}: {head}")
    print("\n".join(tasks) if tasks else "(no tasks: run with --plain)")


def answer(rt, text: str, task: str | None, options: dict, out=None, chat: bool = False) -> None:
    """Stream one output line (beam search prints when done); a truncated input is reported on stderr.
    ``chat``: ``text`` is the user turn of the bundle's chat template (plain model)."""
    import warnings

    from edgevlm.runtime import InputTruncated

    out = out or sys.stdout
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputTruncated)
        if options.get("num_beams", 1) > 1:
            out.write(rt.generate(text, task, chat=chat, **options))
        else:
            for piece in rt.stream(text, task, chat=chat, **options):
                out.write(piece)
                out.flush()
    out.write("\n")
    out.flush()
    for w in caught:
        if issubclass(w.category, InputTruncated):
            print(f"edgevlm run: note: {w.message}", file=sys.stderr)


def run(args) -> int:
    import time

    from edgevlm.runtime import Runtime

    if args.task and (args.plain or args.chat):
        raise ConfigError(f"--task and --{'chat' if args.chat else 'plain'} exclude each other")
    start = time.perf_counter()
    rt = Runtime.load(args.bundle, args.threads, args.spin, providers=args.provider, graph=args.graph)
    loaded = time.perf_counter() - start
    if args.list:
        list_tasks(rt)
        return 0
    task, options = _task(args, rt), _options(args)
    rt.generation_config(task, **options)  # bad options fail before any input is read
    if args.input is not None:
        _check_input(rt, args.input, task, options, args.chat)
    if not args.quiet:  # after every option (and the input) is checked: a mistake stays a one-line error
        from edgevlm.apps.startinfo import announce

        announce("run", rt, args.graph, args.threads, loaded)
    if args.input is not None:
        answer(rt, args.input, task, options, chat=args.chat)
        return 0
    return interact(rt, task, options, args.chat)


def _check_input(rt, text: str, task: str | None, options: dict, chat: bool) -> None:
    """Encode the command line's input once (its errors raise here; a truncation is noted when it runs)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rt.prompts.encode(text, rt.task(task), rt.generation_config(task, **options), chat)


def _options(args) -> dict:
    """The generation options of the command line (checked by ``Runtime.generation_config``)."""
    return dict(
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.min_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        num_beams=args.beams,
        stop=args.stop,
    )


def _task(args, rt) -> str | None:
    """The task to run (None: the plain backbone, with ``--chat`` through its chat template)."""
    if not (args.task or args.plain or args.chat):
        raise ConfigError(
            f"--task is required (available: {sorted(rt.tasks)}), or --plain / --chat for the plain backbone"
        )
    if args.chat and not rt.manifest.tokenizer.chat_template:
        raise ConfigError(f"--chat: {args.bundle}/manifest.json has no tokenizer.chat_template (not a chat model)")
    return None if args.plain or args.chat else rt.task(args.task).name


def interact(rt, task: str | None, options: dict, chat: bool = False) -> int:
    """One output per input line until EOF; a bad line (not UTF-8, empty, too long...) gets its one-line
    error on stderr and the loop goes on with the next one."""
    from edgevlm.core.errors import EdgeVLMError

    status, interactive = 0, sys.stdin.isatty()
    for number, raw in enumerate(_lines(interactive, task or ("chat" if chat else "plain")), 1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            print(
                f"edgevlm run: error: stdin line {number}: not UTF-8 text ({e.reason} at byte {e.start})",
                file=sys.stderr,
            )
            status = ConfigError.exit_code
            continue
        if not line.strip():
            continue
        try:
            answer(rt, line, task, options, chat=chat)
        except EdgeVLMError as e:
            print(f"edgevlm run: error: stdin line {number}: {e}", file=sys.stderr)
            status = e.exit_code
    return status


def _lines(interactive: bool, prompt: str):
    """stdin's lines as bytes (decoded one by one, so one bad line cannot end the loop)."""
    while True:
        if interactive:
            print(f"{prompt}> ", end="", flush=True)
        stream = getattr(sys.stdin, "buffer", None)  # a text-only stream (tests, embedding): re-encoded as read
        raw = stream.readline() if stream is not None else sys.stdin.readline().encode("utf-8", "surrogateescape")
        if not raw:
            return
        yield raw
