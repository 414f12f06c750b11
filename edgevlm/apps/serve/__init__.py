"""``edgevlm serve``: an OpenAI-style local HTTP server over one bundle (:mod:`.app`), continuously batching
concurrent requests of any tasks into one decode (:mod:`edgevlm.runtime.scheduler`)."""

from __future__ import annotations

import socket
import threading

LOOPBACK = "127.0.0.1"


def make_server(bundle, host: str = LOOPBACK, port: int = 8000, threads: int | None = None, **limits):
    """A ``uvicorn.Server`` for ``bundle`` (not started) and its :class:`.app.Service`."""
    import uvicorn

    from edgevlm.runtime import Runtime

    from .app import Service, build_app

    service = Service(Runtime.load(bundle, threads=threads), **limits)
    config = uvicorn.Config(build_app(service), host=host, port=port, log_level="warning", lifespan="on")
    return uvicorn.Server(config), service


class BackgroundServer:
    """The server on a free loopback port in a thread (tests, benchmarks): ``with BackgroundServer(b) as s: s.url``."""

    def __init__(self, bundle, threads: int | None = None, **limits):
        self.server, self.service = make_server(bundle, threads=threads, **limits)
        self._sock = socket.socket()
        self._sock.bind((LOOPBACK, 0))
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
