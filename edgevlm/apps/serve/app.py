"""``edgevlm serve``'s HTTP app (Starlette on uvicorn): OpenAI-style endpoints over one bundle, every request a
row of one continuously batched decode (:class:`edgevlm.runtime.scheduler.Scheduler`).

``GET /health``, ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (``stream``: server-sent
events, ``data: {...}`` per piece, then ``data: [DONE]``). Errors are ``{"error": {"message", "type", "code"}}`` on
one line: 400 bad field or JSON, 404 unknown model or path, 413 body over ``max_body`` bytes, 503 when every batch
row and queue slot is taken (at once, with ``Retry-After``). Starlette rather than FastAPI: the same server stack
without pydantic and its dependencies, and the one-line errors are written here anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import warnings

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from edgevlm.core.errors import EdgeVLMError
from edgevlm.runtime.scheduler import Overloaded, Scheduler

from . import protocol
from .protocol import RequestError

MAX_BODY = 1 << 20  # bytes


def _error(e: RequestError) -> JSONResponse:
    headers = {"Retry-After": "1"} if e.status == 503 else None
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


class Service:
    """The bundle's runtime, its scheduler and the request handlers."""

    def __init__(self, rt, max_batch: int = 8, max_queue: int = 32, max_body: int = MAX_BODY):
        self.rt, self.max_body = rt, max_body
        self.scheduler = Scheduler(rt, max_batch, max_queue)
        self.models = [protocol.PLAIN_MODEL, *rt.tasks]

    async def health(self, request: Request) -> Response:
        rows, waiting = self.scheduler.load
        return JSONResponse({"status": "ok", "rows": rows, "waiting": waiting, "models": len(self.models)})

    async def list_models(self, request: Request) -> Response:
        return JSONResponse(protocol.models_body(self.models))

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def _body(self, request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise RequestError(413, f"request body of {declared} bytes is over the limit of {self.max_body}")
        raw = b""
        async for part in request.stream():
            raw += part
            if len(raw) > self.max_body:
                raise RequestError(413, f"request body is over the limit of {self.max_body} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the request body is not valid JSON ({e})") from None

    async def _complete(self, request: Request, chat: bool) -> Response:
        try:
            body = await self._body(request)
            plain_chat = self.rt.manifest.tokenizer.chat_template is not None
            p = protocol.parse(body, self.models, self.rt.graph.n_positions, chat, plain_chat)
            row = self._row(p)
            out: asyncio.Queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            job = self.scheduler.submit(
                row,
                lambda piece, done: loop.call_soon_threadsafe(out.put_nowait, (piece, done)),
                lambda exc: loop.call_soon_threadsafe(out.put_nowait, exc),
            )
        except RequestError as e:
            return _error(e)
        except Overloaded as e:
            return _error(RequestError(503, str(e), "overloaded"))
        rid = protocol.request_id(chat)
        if p.stream:
            return StreamingResponse(self._events(p, row, job, out, rid, chat), media_type="text/event-stream")
        return await self._whole(p, row, job, out, rid, chat)

    def _row(self, p: protocol.Parsed):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an over-long input is cut as in training; not the client's error
                return self.rt.row(p.text, p.task, p.chat, **p.options)
        except EdgeVLMError as e:
            raise RequestError(400, str(e).replace("max_new_tokens", "max_tokens")) from None

    async def _whole(self, p, row, job, out: asyncio.Queue, rid: str, chat: bool) -> Response:
        pieces = []
        try:
            while True:
                item = await out.get()
                if isinstance(item, Exception):
                    return _error(RequestError(500, f"generation failed: {item}", "server_error"))
                pieces.append(item[0])
                if item[1]:
                    break
        finally:
            if not row.finished:
                self.scheduler.cancel(job)  # the client went away
        usage = (len(row.prompt), row.n)
        return JSONResponse(protocol.completion(p, "".join(pieces), row.reason, usage, rid, chat))

    async def _events(self, p, row, job, out: asyncio.Queue, rid: str, chat: bool):
        try:
            if chat:
                first = protocol.chunk(p, "", None, rid, chat)
                first["choices"][0]["delta"] = {"role": "assistant"}
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
                    yield _sse(protocol.chunk(p, "", row.reason, rid, chat, (len(row.prompt), row.n)))
                    break
            yield "data: [DONE]\n\n"
        finally:
            if not row.finished:
                self.scheduler.cancel(job)


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


async def _not_found(request: Request, exc) -> Response:
    status = getattr(exc, "status_code", 404)
    return _error(RequestError(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'not found')}"))


def build_app(service: Service) -> Starlette:
    routes = [
        Route("/health", service.health, methods=["GET"]),
        Route("/v1/models", service.list_models, methods=["GET"]),
        Route("/v1/completions", service.completions, methods=["POST"]),
        Route("/v1/chat/completions", service.chat_completions, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.scheduler.close()

    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found}, lifespan=lifespan)
