"""A chat completion's ``messages`` as the input the model was made for, every message used or a 400.

* ``base`` with a recorded conversation format (manifest ``tokenizer.chat_turns``, rendered from the model's own
  chat template at export; :mod:`edgevlm.core.chat`): system/user/assistant rendered exactly as that template
  renders them. With only a one-turn template (bundles exported before ``chat_turns``): one user message. Without
  a chat template (GPT-2): one user message, continued as plain text.
* A task whose format has turns (its template ``<context> {input} <reply>`` plus one more task token, the user's
  marker: dialogue ``<persona> {input} <system>`` with ``<user>``, QA ``<document> {input} <answer>`` with
  ``<question>``): the system message is the context (persona, document), each user message the user's marker and
  its text, each assistant message the reply marker and its text, as in training.
* Any other task takes exactly one user message: its input.

``developer`` is OpenAI's newer name for ``system``. Content is a string or a list of ``{"type": "text"}`` parts.
"""

from __future__ import annotations

import re

from edgevlm.core.chat import check_roles, render_conversation
from edgevlm.core.errors import ConfigError
from edgevlm.core.prompts import INPUT_FIELD

from .protocol import RequestError, invalid, show

MESSAGE_KEYS = {"role", "content"}
ROLE_ALIASES = {"developer": "system"}


def _content(m: dict, i: int) -> str:
    c = m.get("content")
    if isinstance(c, list):
        parts = []
        for j, part in enumerate(c):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"messages[{i}].content[{j}]", 'a {"type": "text", "text": ...} part', part)
            parts.append(part["text"])
        c = "".join(parts)
    if not isinstance(c, str) or not c.strip():
        raise invalid(f"messages[{i}].content", "a non-empty string or list of text parts", m.get("content"))
    return c


def messages(body: dict) -> list[tuple[str, str]]:
    """(role, content) pairs, roles system/user/assistant (RequestError naming the message and field)."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise invalid("messages", "a non-empty list of {role, content} objects", msgs)
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise invalid(f"messages[{i}]", "a {role, content} object", m)
        extra = sorted(set(m) - MESSAGE_KEYS)
        if extra:
            where = f"messages[{i}].{show(extra[0])[1:-1]}"
            raise RequestError(400, f"{where} is not supported", param=f"messages[{i}]", code="unsupported")
        role = ROLE_ALIASES.get(m.get("role"), m.get("role"))
        if role not in ("system", "user", "assistant"):
            raise invalid(f"messages[{i}].role", "'system', 'developer', 'user' or 'assistant'", m.get("role"))
        out.append((role, _content(m, i)))
    return out


def _roles(msgs: list[tuple[str, str]], system: bool) -> None:
    try:
        check_roles([r for r, _ in msgs], system)
    except ConfigError as e:
        raise RequestError(400, str(e), param="messages", code="invalid_value") from None


def plain(msgs: list[tuple[str, str]], tokenizer_record) -> tuple[str, bool]:
    """(text, chat) for ``base``: the rendered conversation, or one user turn (see the module docstring)."""
    turns, template = tokenizer_record.chat_turns, tokenizer_record.chat_template
    if turns is not None:
        _roles(msgs, "start:system" in turns)
        return render_conversation(turns, msgs), False
    if len(msgs) != 1 or msgs[0][0] != "user":
        why = "records only a one-turn chat template (re-export it)" if template else "has no chat template"
        raise RequestError(
            400,
            f"messages: model 'base' takes one user message here: the bundle {why}; got roles {[r for r, _ in msgs]}",
            param="messages",
            code="unsupported",
        )
    return msgs[0][1], template is not None


def turn_markers(task) -> tuple[str, str, str] | None:
    """(context, user, reply) markers of a task whose format has turns (module docstring), else None."""
    head, _, tail = task.template.partition(INPUT_FIELD)
    lead, trail = re.findall(r"<[^<>\s]+>", head), re.findall(r"<[^<>\s]+>", tail)
    others = [t for t in task.special_tokens if t not in lead + trail]
    if len(lead) == 1 and len(trail) == 1 and len(others) == 1:
        return lead[0], others[0], trail[0]
    return None


def for_task(msgs: list[tuple[str, str]], task) -> str:
    """The task's input text for ``msgs`` (module docstring); 400 where the task cannot take them."""
    markers = turn_markers(task)
    for i, (_, text) in enumerate(msgs):
        found = [t for t in task.special_tokens if t in text]
        if found and markers is not None:
            raise RequestError(
                400, f"messages[{i}].content contains the task token {found[0]!r}: the roles supply the turn markers",
                param=f"messages[{i}].content", code="invalid_value",
            )  # fmt: skip
    if markers is None:
        if len(msgs) != 1 or msgs[0][0] != "user":
            raise RequestError(
                400,
                f"messages: task {task.name!r} takes one user message (its input), got roles {[r for r, _ in msgs]}",
                param="messages",
                code="unsupported",
            )
        return msgs[0][1]
    _roles(msgs, system=True)
    _, user, reply = markers
    parts = [text if role == "system" else f"{user if role == 'user' else reply} {text}" for role, text in msgs]
    return " ".join(parts)
