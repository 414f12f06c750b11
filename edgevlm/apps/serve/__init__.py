"""``edgevlm serve``: an OpenAI-style local HTTP server over one bundle (:mod:`.app`), continuously batching
concurrent requests of any tasks into one decode (:mod:`edgevlm.runtime.scheduler`)."""

from __future__ import annotations

import socket
import threading

from edgevlm.core.errors import ConfigError

LOOPBACK = "127.0.0.1"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, made before anything is loaded or announced (ConfigError in one
    line when the address is taken or not this machine's)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ConfigError(f"--host {host!r}: not an address to listen on ({e.strerror or e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def make_server(bundle, threads=None, api_key: str | None = None, providers=None, graph="onnx", **limits):
    """A ``uvicorn.Server`` for ``bundle`` (not started) and its :class:`.app.Service`."""
    from edgevlm.runtime import Runtime

    return server_for(Runtime.load(bundle, threads=threads, providers=providers, graph=graph), api_key, **limits)


def server_for(rt, api_key: str | None = None, **limits):
    """A ``uvicorn.Server`` (not started) and its :class:`.app.Service` over an already loaded runtime."""
    import uvicorn

    from .app import Service, build_app

    service = Service(rt, api_key=api_key, **limits)
    config = uvicorn.Config(build_app(service), log_level="warning", lifespan="on")
    return uvicorn.Server(config), service


def warm_up(rt) -> None:
    """One decode step of the plain backbone and one of each task, so ONNX Runtime's first-run setup (kernel
    selection, buffers, each adapter's first binding) is not paid by the first client."""
    prompt = [rt.eos_token_id or 0]
    for task in [None, *rt.tasks]:
        rt.generate_tokens(prompt, task=task, max_new_tokens=1)


class BackgroundServer:
    """The server on a free loopback port in a thread (tests, benchmarks): ``with BackgroundServer(b) as s: s.url``."""

    def __init__(self, bundle, threads: int | None = None, api_key: str | None = None, **limits):
        self.server, self.service = make_server(bundle, threads=threads, api_key=api_key, **limits)
        self._sock = bind(LOOPBACK, 0)
        self.url = f"http://{LOOPBACK}:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self._sock.close()
