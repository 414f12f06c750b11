"""``edgevlm serve``'s HTTP app (Starlette on uvicorn): OpenAI's endpoints over one bundle, every request a
row of one continuously batched decode (:class:`edgevlm.runtime.scheduler.Scheduler`).

``GET /health`` (never needs the key), ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``
(``stream``: server-sent events, ``data: {...}`` per piece, then ``data: [DONE]``), ``POST /v1/adapters`` and
``DELETE /v1/adapters/{task}`` (hot add/remove of a task; only on a server started with an API key). A trailing
slash names the same route. Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}`` on one line:
400 bad field or JSON, 401 missing/wrong key, 403 adapters without a key, 404 unknown model or path, 409 task
busy or already loaded, 413 body over ``max_body`` bytes, 503 when every batch row and queue slot is taken (at
once, with ``Retry-After``). Starlette rather than FastAPI: the same server stack without pydantic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from edgevlm.runtime.scheduler import Overloaded, Scheduler

from . import body as bodies
from . import protocol
from .adapters import Adapters
from .gate import Gate, error
from .protocol import RequestError
from .requests import parse, row


class Service:
    """The bundle's runtime, its scheduler and the request handlers."""

    def __init__(self, rt, max_batch=8, max_queue=32, max_body=bodies.MAX_BODY, api_key: str | None = None):
        self.rt, self.max_body, self.api_key = rt, max_body, api_key
        self.scheduler = Scheduler(rt, max_batch, max_queue)
        self.adapters = Adapters(self)

    @property
    def models(self) -> list[str]:
        return [protocol.PLAIN_MODEL, *self.rt.tasks]

    async def health(self, request: Request) -> Response:
        rows, waiting = self.scheduler.load
        return JSONResponse({"status": "ok", "rows": rows, "waiting": waiting, "models": len(self.models)})

    async def list_models(self, request: Request) -> Response:
        m = self.rt.manifest.backbone
        data = [protocol.model_entry(protocol.PLAIN_MODEL, m.source or m.file, None)]
        data += [protocol.model_entry(n, t.file.name, protocol.PLAIN_MODEL) for n, t in self.rt.tasks.items()]
        return JSONResponse({"object": "list", "data": data})

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def _complete(self, request: Request, chat: bool) -> Response:
        try:
            p = parse(await bodies.read(request, self.max_body), self.rt, self.models, chat)
            r = row(self.rt, p, chat)
            out: asyncio.Queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            job = self.scheduler.submit(
                r,
                lambda piece, done: loop.call_soon_threadsafe(out.put_nowait, (piece, done)),
                lambda exc: loop.call_soon_threadsafe(out.put_nowait, exc),
            )
        except RequestError as e:
            return error(e)
        except Overloaded as e:
            return error(RequestError(503, str(e), "server_error", code="overloaded"))
        except KeyError as e:  # TaskError: the task was removed between parsing and submitting
            return error(RequestError(404, str(e.args[0]), param="model", code="model_not_found"))
        rid = protocol.request_id(chat)
        if p.stream:
            return StreamingResponse(self._events(p, r, job, out, rid, chat), media_type="text/event-stream")
        return await self._whole(p, r, job, out, rid, chat)

    async def _whole(self, p, r, job, out: asyncio.Queue, rid: str, chat: bool) -> Response:
        pieces = []
        try:
            while True:
                item = await out.get()
                if isinstance(item, Exception):
                    return error(RequestError(500, f"generation failed: {item}", "server_error"))
                pieces.append(item[0])
                if item[1]:
                    break
        finally:
            if not r.finished:
                self.scheduler.cancel(job)  # the client went away
        usage = (len(r.prompt), r.n)
        return JSONResponse(protocol.completion(p, "".join(pieces), r.reason, usage, rid, chat))

    async def _events(self, p, r, job, out: asyncio.Queue, rid: str, chat: bool):
        try:
            if chat:
                first = protocol.chunk(p, "", None, rid, chat)
                first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
                yield _sse(first)
            while True:
                item = await out.get()
                if isinstance(item, Exception):
                    yield _sse(RequestError(500, f"generation failed: {item}", "server_error").body())
                    break
                piece, done = item
                if piece or not done:  # one event per token, even one that completes no character yet
                    yield _sse(protocol.chunk(p, piece, None, rid, chat))
                if done:
                    yield _sse(protocol.chunk(p, "", r.reason, rid, chat))
                    if p.include_usage:
                        yield _sse(protocol.usage_chunk(p, (len(r.prompt), r.n), rid, chat))
                    break
            yield "data: [DONE]\n\n"
        finally:
            if not r.finished:
                self.scheduler.cancel(job)


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


async def _not_found(request: Request, exc) -> Response:
    status = getattr(exc, "status_code", 404)
    what = getattr(exc, "detail", "not found")
    return error(RequestError(status, f"{request.method} {protocol.show(request.url.path)[1:-1]}: {what}"))


def build_app(service: Service):
    """The ASGI app: routes behind the :class:`.gate.Gate` (API key, trailing slashes)."""
    routes = [
        Route("/health", service.health, methods=["GET"]),
        Route("/v1/models", service.list_models, methods=["GET"]),
        Route("/v1/completions", service.completions, methods=["POST"]),
        Route("/v1/chat/completions", service.chat_completions, methods=["POST"]),
        Route("/v1/adapters", service.adapters.add, methods=["POST"]),
        Route("/v1/adapters/{task}", service.adapters.remove, methods=["DELETE"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.scheduler.close()

    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found}, lifespan=lifespan)
    app.router.redirect_slashes = False
    return Gate(app, service.api_key)
