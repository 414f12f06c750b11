"""``edgevlm serve``: the bundle behind an OpenAI-style HTTP API on this device (loopback by default)."""

from __future__ import annotations

import sys

from edgevlm.core.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a bundle over an OpenAI-style HTTP API, batching concurrent requests")
    p.add_argument("bundle", help="bundle directory made by 'edgevlm export'")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together at most (default 8)")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting at most; beyond: 503 (default 32)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as e:
        raise ConfigError(f"edgevlm serve needs {e.name}: pip install 'edgevlm[serve]'") from None
    from edgevlm.apps.serve import make_server

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [0, 65535], got {args.port}")
    server, service = make_server(
        args.bundle, args.host, args.port, args.threads, max_batch=args.max_batch, max_queue=args.max_queue
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"edgevlm serve: warning: listening on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"edgevlm serve: {args.bundle} on http://{args.host}:{args.port} (models: {', '.join(service.models)})")
    server.run()
    return 0
