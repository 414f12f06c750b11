"""``edgevlm serve``: the bundle behind an OpenAI-style HTTP API on this device (loopback by default)."""

from __future__ import annotations

import os
import sys

from edgevlm.apps.commands.run import add_graph_options, add_quiet_option
from edgevlm.core.errors import ConfigError

API_KEY_ENV = "EDGEVLM_API_KEY"


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a bundle over an OpenAI-style HTTP API, batching concurrent requests")
    p.add_argument("bundle", help="bundle directory made by 'edgevlm export'")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together at most (default 8)")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting at most; beyond: 503 (default 32)")
    p.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require 'Authorization: Bearer KEY' on every route but /health, and enable POST/DELETE "
        f"/v1/adapters (default: ${API_KEY_ENV}; none: open, adapters off)",
    )
    add_graph_options(p)
    add_quiet_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as e:
        raise ConfigError(f"edgevlm serve needs {e.name}: pip install 'edgevlm[serve]'") from None
    from edgevlm.apps.serve import bind, server_for
    from edgevlm.runtime.session import providers_for

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [0, 65535], got {args.port}")
    if args.api_key is not None and not args.api_key.strip():
        raise ConfigError("--api-key is empty")
    providers_for(args.provider)  # an unknown provider is one line before the port is taken
    sock = bind(args.host, args.port)  # a busy port is one line before anything is loaded or announced
    try:
        rt = _start(args)
        limits = {"max_batch": args.max_batch, "max_queue": args.max_queue}
        server, service = server_for(rt, args.api_key, **limits)
        _announce(args, service, sock.getsockname()[1])
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _start(args):
    """Load and check the bundle, print its start block (unless --quiet), warm it up: one status line per phase."""
    import time

    from edgevlm.apps.serve import warm_up
    from edgevlm.apps.startinfo import announce
    from edgevlm.runtime import Runtime

    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    say(f"edgevlm serve: loading {args.bundle} (checksums, graph, adapters) ...")
    start = time.perf_counter()
    rt = Runtime.load(args.bundle, threads=args.threads, providers=args.provider, graph=args.graph)
    if not args.quiet:
        announce("serve", rt, args.graph, args.threads, time.perf_counter() - start)
    say(f"edgevlm serve: warming up (one step of the plain backbone and of {len(rt.tasks)} task(s)) ...")
    start = time.perf_counter()
    warm_up(rt)
    say(f"edgevlm serve: warm in {time.perf_counter() - start:.2f} s")
    return rt


def _announce(args, service, port: int) -> None:
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"edgevlm serve: warning: listening on {args.host}, reachable from other machines", file=sys.stderr)
    m = service.rt.manifest.backbone
    guard = "API key required" if args.api_key else "no API key (adapter management off)"
    print(
        f"edgevlm serve: {args.bundle} on http://{args.host}:{port} (models: {', '.join(service.models)}; "
        f"{m.quantization}; {guard})",
        flush=True,
    )
