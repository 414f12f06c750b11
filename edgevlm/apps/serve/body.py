"""Request bodies read within limits, then parsed: size and nesting depth are checked on the raw bytes before any
JSON parser runs (a body nested 200,000 deep would otherwise end in RecursionError), and JSON's non-standard
``NaN``/``Infinity`` are refused. Every problem is a :class:`~.protocol.RequestError` (413 or 400)."""

from __future__ import annotations

import json
import re

import numpy as np

from .protocol import RequestError

MAX_BODY = 1 << 20  # bytes
MAX_DEPTH = 32  # nested arrays/objects; the deepest request edgevlm reads (message content parts) is 5
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def depth(raw: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in ``raw`` outside JSON strings (numpy; no recursion)."""
    a = np.frombuffer(_STRINGS.sub(b'""', raw), np.uint8)  # [n]
    step = (a == ord("[")).astype(np.int32) + (a == ord("{")) - (a == ord("]")) - (a == ord("}"))  # [n]
    return int(np.cumsum(step).max(initial=0))


def _constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


async def read(request, max_body: int = MAX_BODY, max_depth: int = MAX_DEPTH):
    """The parsed JSON body of ``request`` (413 over ``max_body`` bytes, 400 too deep or not JSON)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise RequestError(413, f"request body of {declared} bytes is over the limit of {max_body}", code="too_large")
    chunks, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > max_body:
            raise RequestError(413, f"request body is over the limit of {max_body} bytes", code="too_large")
        chunks.append(part)
    raw = b"".join(chunks)
    d = depth(raw)
    if d > max_depth:
        raise RequestError(400, f"request body is nested {d} deep, over the limit of {max_depth}", code="too_deep")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_constant)
    except (ValueError, UnicodeDecodeError) as e:  # UnicodeDecodeError: JSON must be UTF-8 (RFC 8259)
        raise RequestError(400, f"the request body is not valid JSON ({str(e)[:120]})", code="invalid_json") from None
