"""Hot add and remove of tasks over HTTP, on a server started with an API key (else 403: an open port must not
let anyone load files into the server).

``POST /v1/adapters`` with ``{"path": "<file>.onnx_adapter", "entry": {...}}`` (``entry`` optional: the manifest
task fields plus ``name``; else ``<file>.json`` next to the file, else the manifest of the bundle the file sits in)
runs :meth:`edgevlm.runtime.Runtime.add_task`, which checks the adapter's backbone fingerprint, shapes and values
as at load; the answer is the new /v1/models entry. ``DELETE /v1/adapters/{task}`` unloads a task that has no
request decoding or waiting (409 otherwise) and answers ``{"id", "object": "model", "deleted": true}``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgevlm.core.errors import EdgeVLMError, TaskError
from edgevlm.runtime.scheduler import TaskBusy

from . import body as bodies
from . import protocol
from .gate import error
from .protocol import RequestError, invalid

FIELDS = {"path", "entry"}


class Adapters:
    """The two routes over a :class:`.app.Service`."""

    def __init__(self, service):
        self.service = service
        self._lock = asyncio.Lock()  # one add or remove at a time

    def _enabled(self) -> None:
        if not self.service.api_key:
            raise RequestError(
                403, "adapter management is off: start the server with --api-key to enable it", code="forbidden"
            )

    async def add(self, request: Request) -> Response:
        try:
            self._enabled()
            body = await bodies.read(request, self.service.max_body)
            if not isinstance(body, dict):
                raise RequestError(400, "the request body must be a JSON object", code="invalid_json")
            extra = sorted(set(body) - FIELDS)
            if extra:
                raise RequestError(400, f"{protocol.show(extra[0])} is not a supported field", param=extra[0])
            path, entry = body.get("path"), body.get("entry")
            if not isinstance(path, str) or not path:
                raise invalid("path", "the adapter file's path on the server", path)
            if entry is not None and not isinstance(entry, dict):
                raise invalid("entry", "an object of manifest task fields", entry)
            async with self._lock:
                task = await asyncio.to_thread(self.service.rt.add_task, path, entry)
        except RequestError as e:
            return error(e)
        except TaskError as e:  # already loaded
            return error(RequestError(409, str(e.args[0]), param="entry", code="conflict"))
        except EdgeVLMError as e:
            return error(RequestError(400, str(e), param="path", code="invalid_adapter"))
        return JSONResponse(protocol.model_entry(task.name, task.file.name, protocol.PLAIN_MODEL))

    async def remove(self, request: Request) -> Response:
        name = request.path_params["task"]
        try:
            self._enabled()
            if name not in self.service.rt.tasks:
                raise RequestError(
                    404, f"task {protocol.show(name)} is not loaded", param="task", code="model_not_found"
                )
            async with self._lock:
                self.service.scheduler.remove_task(name)
        except RequestError as e:
            return error(e)
        except TaskBusy as e:
            return error(RequestError(409, str(e.args[0]), param="task", code="conflict"))
        return JSONResponse({"id": name, "object": "model", "deleted": True})
