"""The OpenAI-style request fields edgevlm serves, checked into runtime options, and the response bodies.

Every problem with a request is a :class:`RequestError`: an HTTP status and one line naming the field, sent in
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``. ``model`` is a task name, or
:data:`PLAIN_MODEL` for the plain backbone. Sampling: ``temperature`` omitted or 0 is greedy decoding (edgevlm's
default; OpenAI's is 1), above 0 samples with it, ``top_k`` and ``top_p`` from ``seed``. A field edgevlm does not
implement (``logprobs``, ``echo``, ``best_of``, ``suffix``, ``n`` > 1, tools, penalties, ...) is refused with a 400
naming it, never accepted and ignored: a client that asked for it would silently get something else.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

PLAIN_MODEL = "base"  # the plain backbone in /v1/models and as `model`
MAX_STOP = 4  # OpenAI's limit on stop strings
SHOW = 60  # characters of a client's value quoted in an error message

# Fields each endpoint implements; "user" only tags the request (OpenAI: for abuse monitoring) and changes nothing.
COMMON = {
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop",
    "n", "min_tokens", "user", "logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
}  # fmt: skip
FIELDS = {False: COMMON | {"prompt", "echo", "best_of", "suffix"}, True: COMMON | {"messages", "max_completion_tokens"}}


class RequestError(Exception):
    """A request the server refuses: ``status``, a one-line message, OpenAI's error ``type``, the offending
    field (``param``) and a machine-readable ``code``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


def show(value) -> str:
    """``repr(value)`` cut to :data:`SHOW` characters (error messages never echo a whole long value)."""
    text = repr(value)
    return text if len(text) <= SHOW else f"{text[:SHOW]}... ({len(text)} characters)"


def invalid(name: str, expected: str, value) -> RequestError:
    return RequestError(400, f"{name} must be {expected}, got {show(value)}", param=name, code="invalid_value")


@dataclass
class Parsed:
    """A checked request: the model (task name or None), the input text, runtime options, stream flags."""

    model: str
    task: str | None
    text: str
    chat: bool  # the text is one user turn of the plain model's chat template
    options: dict
    stream: bool
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage, no choices


def _number(body: dict, name: str, low: float, high: float, inclusive_low: bool = True):
    v = body.get(name)
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v >= low if inclusive_low else v > low) and v <= high
    if not ok:
        raise invalid(name, f"a number in {'[' if inclusive_low else '('}{low}, {high}]", v)
    return v


def _integer(body: dict, name: str, low: int):
    v = body.get(name)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
        raise invalid(name, f"an integer >= {low}", v)
    return v


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > MAX_STOP:
        raise invalid("stop", f"a non-empty string or a list of up to {MAX_STOP}", body.get("stop"))
    return stop


OFF = {"logprobs": (False, 0), "echo": (False,), "best_of": (1,), "suffix": ("",), "n": (1,), "logit_bias": ({},)}
OFF.update(presence_penalty=(0,), frequency_penalty=(0,))  # values that ask for nothing edgevlm lacks


def unsupported(body: dict, chat: bool) -> None:
    """400 naming the first field this endpoint does not implement, or sets to a value it does not implement."""
    unknown = sorted(set(body) - FIELDS[chat])
    if unknown:
        raise RequestError(400, f"{show(unknown[0])} is not a supported field", param=unknown[0], code="unsupported")
    for name, allowed in OFF.items():
        v = body.get(name)
        if v is not None and not any(v == a and isinstance(v, bool) == isinstance(a, bool) for a in allowed):
            raise RequestError(
                400,
                f"{name}={show(v)} is not supported (edgevlm returns one choice, without log-probabilities, echo, "
                "suffix or penalties)",
                param=name,
                code="unsupported",
            )


def _max_tokens(body: dict, n_positions: int) -> int | None:
    a, b = _integer(body, "max_tokens", 1), _integer(body, "max_completion_tokens", 1)
    if a is not None and b is not None and a != b:
        raise RequestError(400, f"max_tokens={a} and max_completion_tokens={b} disagree", param="max_tokens")
    n, name = (b, "max_completion_tokens") if b is not None else (a, "max_tokens")
    if n is not None and n >= n_positions:
        raise RequestError(
            400, f"{name}={n} is beyond the context (n_positions={n_positions})", param=name, code="invalid_value"
        )
    return n


def options(body: dict, n_positions: int) -> dict:
    """Runtime generation options from the sampling fields (RequestError naming the field)."""
    max_tokens = _max_tokens(body, n_positions)
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0, inclusive_low=False)
    top_k = _integer(body, "top_k", 0)
    seed = _integer(body, "seed", 0)
    if seed is not None and seed >= 1 << 63:
        raise invalid("seed", "below 2**63", seed)
    min_tokens = _integer(body, "min_tokens", 0) or 0  # vLLM's extension: no EOS before this many tokens
    if max_tokens is not None and min_tokens > max_tokens:
        raise RequestError(400, f"min_tokens={min_tokens} is larger than max_tokens={max_tokens}", param="min_tokens")
    opts: dict = {"max_new_tokens": max_tokens, "min_new_tokens": min_tokens, "stop": _stop(body), "seed": seed}
    if temperature:
        opts.update(do_sample=True, temperature=float(temperature), top_p=float(top_p or 1.0), top_k=top_k or 0)
    return opts


def stream_flags(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage); ``stream_options`` only with ``stream: true``, as OpenAI requires."""
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid("stream", "true or false", stream)
    so = body.get("stream_options")
    if so is None:
        return stream, False
    if not stream:
        raise RequestError(400, "stream_options is only allowed with stream: true", param="stream_options")
    if not isinstance(so, dict) or set(so) - {"include_usage"}:
        raise invalid("stream_options", "an object with include_usage only", so)
    usage = so.get("include_usage", False)
    if not isinstance(usage, bool):
        raise invalid("stream_options.include_usage", "true or false", usage)
    return stream, usage


def prompt_text(body: dict) -> str:
    prompt = body.get("prompt")
    prompt = prompt[0] if isinstance(prompt, list) and len(prompt) == 1 else prompt
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("prompt", "a non-empty string (or a list of one)", body.get("prompt"))
    return prompt


def check_model(body, models: list[str]) -> str:
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or model not in models:
        raise RequestError(
            404, f"model {show(model)} does not exist; available: {show(models)}", param="model", code="model_not_found"
        )
    return model


def usage_body(usage: tuple[int, int]) -> dict:
    return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}


def completion(p: Parsed, text: str, reason: str | None, usage: tuple[int, int], rid: str, chat: bool) -> dict:
    """The whole response body of a finished request."""
    choice = {"index": 0, "finish_reason": reason, "logprobs": None}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    return {
        "id": rid,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": p.model,
        "choices": [choice],
        "usage": usage_body(usage),
    }


def chunk(p: Parsed, piece: str, reason: str | None, rid: str, chat: bool) -> dict:
    """One server-sent event's body while streaming (``usage`` null when the client asked for a usage chunk)."""
    choice: dict = {"index": 0, "finish_reason": reason, "logprobs": None}
    choice.update({"delta": {"content": piece} if piece else {}} if chat else {"text": piece})
    out = {
        "id": rid,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": p.model,
        "choices": [choice],
    }
    if p.include_usage:
        out["usage"] = None
    return out


def usage_chunk(p: Parsed, usage: tuple[int, int], rid: str, chat: bool) -> dict:
    """The extra last event of ``stream_options.include_usage``: no choices, the request's usage."""
    out = chunk(p, "", None, rid, chat)
    out.update(choices=[], usage=usage_body(usage))
    return out


def request_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def model_entry(model: str, root: str, parent: str | None) -> dict:
    """A /v1/models entry; ``root`` is where the weights come from, ``parent`` the model a task adapts."""
    return {"id": model, "object": "model", "created": 0, "owned_by": "edgevlm", "root": root, "parent": parent}
