"""The OpenAI-style request fields edgevlm serves, checked into runtime options, and the response bodies.

Every problem with a request is a :class:`RequestError`: an HTTP status and one line naming the field.
``model`` is a task name, or :data:`PLAIN_MODEL` for the plain backbone. Sampling: ``temperature`` omitted or
0 is greedy decoding (edgevlm's default; OpenAI's is 1), above 0 samples with it and ``top_p`` from ``seed``.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

PLAIN_MODEL = "base"  # the plain backbone in /v1/models and as `model`


class RequestError(Exception):
    """A request the server refuses: ``status`` and a one-line message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "code": self.status}}


@dataclass
class Parsed:
    """A checked request: the model (task name or None), the input text, runtime options, stream flag."""

    model: str
    task: str | None
    text: str
    chat: bool
    options: dict
    stream: bool


def _number(body: dict, name: str, low: float, high: float | None, inclusive_low: bool = True):
    v = body.get(name)
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v >= low if inclusive_low else v > low) and (high is None or v <= high)
    if not ok:
        rng = f"{'[' if inclusive_low else '('}{low}, {high if high is not None else 'inf'}]"
        raise RequestError(400, f"{name} must be a number in {rng}, got {v!r}")
    return v


def _integer(body: dict, name: str, low: int):
    v = body.get(name)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
        raise RequestError(400, f"{name} must be an integer >= {low}, got {v!r}")
    return v


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise RequestError(400, f"stop must be a non-empty string or a list of up to 4, got {body.get('stop')!r}")
    return stop


def options(body: dict, n_positions: int) -> dict:
    """Runtime generation options from the sampling fields (RequestError naming the field)."""
    max_tokens = _integer(body, "max_tokens", 1)
    if max_tokens is not None and max_tokens >= n_positions:
        raise RequestError(400, f"max_tokens={max_tokens} is beyond the context (n_positions={n_positions})")
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0, inclusive_low=False)
    seed = _integer(body, "seed", 0)
    min_tokens = _integer(body, "min_tokens", 0) or 0  # vLLM's extension: no EOS before this many tokens
    if max_tokens is not None and min_tokens > max_tokens:
        raise RequestError(400, f"min_tokens={min_tokens} is larger than max_tokens={max_tokens}")
    if _integer(body, "n", 1) not in (None, 1):
        raise RequestError(400, f"n must be 1 (one choice per request), got {body['n']!r}")
    opts: dict = {"max_new_tokens": max_tokens, "min_new_tokens": min_tokens, "stop": _stop(body), "seed": seed}
    if temperature:
        opts.update(do_sample=True, temperature=float(temperature), top_p=float(top_p or 1.0))
    return opts


def _text(body: dict, chat: bool) -> str:
    if not chat:
        prompt = body.get("prompt")
        prompt = prompt[0] if isinstance(prompt, list) and len(prompt) == 1 else prompt
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestError(400, "prompt must be a non-empty string (or a list of one)")
        return prompt
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        raise RequestError(400, "messages must be a non-empty list of {role, content} objects")
    users = [m.get("content") for m in msgs if m.get("role") == "user"]
    if not users or not isinstance(users[-1], str) or not users[-1].strip():
        raise RequestError(400, "messages need a user message with non-empty string content")
    return users[-1]  # a task's input is one turn (the dialogue task's persona/turn format goes in it)


def parse(body, models: list[str], n_positions: int, chat: bool, plain_chat: bool) -> Parsed:
    """A completion (``chat=False``) or chat completion request body, checked."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or model not in models:
        raise RequestError(404, f"model {model!r} does not exist; available: {models}", "model_not_found")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, f"stream must be true or false, got {stream!r}")
    task = None if model == PLAIN_MODEL else model
    text = _text(body, chat)
    return Parsed(model, task, text, chat and task is None and plain_chat, options(body, n_positions), stream)


def completion(p: Parsed, text: str, reason: str | None, usage: tuple[int, int], rid: str, chat: bool) -> dict:
    """The whole response body of a finished request."""
    choice = {"index": 0, "finish_reason": reason}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text, "logprobs": None})
    return {
        "id": rid,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": p.model,
        "choices": [choice],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def chunk(p: Parsed, piece: str, reason: str | None, rid: str, chat: bool, usage: tuple | None = None) -> dict:
    """One server-sent event's body while streaming (the last one, with ``reason``, also carries ``usage``)."""
    choice: dict = {"index": 0, "finish_reason": reason}
    choice.update({"delta": {"content": piece} if piece else {}} if chat else {"text": piece, "logprobs": None})
    out = {
        "id": rid,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": p.model,
        "choices": [choice],
    }
    if usage is not None:
        out["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return out


def request_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def models_body(models: list[str]) -> dict:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "edgevlm"} for m in models]
    return {"object": "list", "data": data}
