"""What every request passes before a route: one path per route (a trailing slash is the same route, answered
rather than redirected) and, with an API key set, ``Authorization: Bearer <key>`` on every route but ``/health``.
"""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse

from .protocol import RequestError

OPEN = ("/health",)  # routes a load balancer or supervisor may call without the key


def error(e: RequestError) -> JSONResponse:
    """The OpenAI-shaped error response of ``e`` (503 with ``Retry-After``)."""
    headers = {"Retry-After": "1"} if e.status == 503 else None
    if e.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


class Gate:
    """ASGI middleware: normalizes the path, then checks the bearer key (constant-time compare)."""

    def __init__(self, app, api_key: str | None):
        self.app, self.key = app, api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = {**scope, "path": path.rstrip("/") or "/"}
            if self.key is not None and scope["path"] not in OPEN and not self._authorized(scope):
                e = RequestError(
                    401,
                    "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                )
                return await error(e)(scope, receive, send)
        await self.app(scope, receive, send)

    def _authorized(self, scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        return False

    def __getattr__(self, name):  # the wrapped Starlette app's attributes (state, routes, ...)
        return getattr(self.app, name)
