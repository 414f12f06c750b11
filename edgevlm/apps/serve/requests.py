"""A completion or chat completion body checked into a :class:`~.protocol.Parsed` request, then into a runtime
row. A chat's messages that do not fit the context are a 400 (never cut silently: a chat client would get an
answer to part of its conversation); a completion's over-long prompt is cut as in training (the runtime's
documented policy: task tokens, the newest turn and the start of the context survive)."""

from __future__ import annotations

import warnings

from edgevlm.core.errors import EdgeVLMError
from edgevlm.runtime import InputTruncated

from . import chat as chats
from . import protocol
from .protocol import Parsed, RequestError


def parse(body, rt, models: list[str], chat: bool) -> Parsed:
    """The checked request (RequestError naming the field)."""
    model = protocol.check_model(body, models)
    protocol.unsupported(body, chat)
    stream, include_usage = protocol.stream_flags(body)
    task = None if model == protocol.PLAIN_MODEL else model
    opts = protocol.options(body, rt.graph.n_positions)
    if not chat:
        return Parsed(model, task, protocol.prompt_text(body), False, opts, stream, include_usage)
    msgs = chats.messages(body)
    if task is None:
        text, one_turn = chats.plain(msgs, rt.manifest.tokenizer)
    else:
        t = rt.tasks.get(task)
        if t is None:  # removed since the model list was read
            raise RequestError(404, f"model {task!r} does not exist", param="model", code="model_not_found")
        text, one_turn = chats.for_task(msgs, t), False
    return Parsed(model, task, text, one_turn, opts, stream, include_usage)


def row(rt, p: Parsed, chat: bool):
    """The runtime row of ``p``; a chat that would lose input to the context limit is a 400."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InputTruncated)
            r = rt.row(p.text, p.task, p.chat, **p.options)
    except EdgeVLMError as e:
        raise RequestError(400, str(e).replace("max_new_tokens", "max_tokens"), code="invalid_value") from None
    cut = [w for w in caught if issubclass(w.category, InputTruncated)]
    if chat and cut:
        raise RequestError(
            400,
            f"messages do not fit the context: {str(cut[0].message).replace('max_new_tokens', 'max_tokens')}; "
            "send fewer or shorter messages, or a smaller max_tokens",
            param="messages",
            code="context_length_exceeded",
        )
    return r
