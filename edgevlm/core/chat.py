"""A conversation rendered the way the model's own chat template renders it, without a template engine.

The exporter renders the model's Jinja chat template for a few conversations with marker contents and records
the text *between* messages (``export/chat.py``): ``chat_turns`` maps a transition ``"<from>:<to>"`` to that
text, where ``from`` is ``start`` or a role and ``to`` a role or ``end`` (the generation prompt). A conversation
is an optional ``system`` message, then ``user`` and ``assistant`` alternating, ending with ``user``; its prompt
is ``turns["start:<first role>"] + content + turns["<role>:<next role>"] + content + ... + turns["user:end"]``.
The exporter keeps the record only where this concatenation equals Jinja's own rendering of longer
conversations, so the runtime reproduces the template exactly or refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edgevlm.core.errors import ConfigError

ROLES = ("system", "user", "assistant")
REQUIRED = ("start:user", "user:assistant", "assistant:user", "user:end")
WITH_SYSTEM = ("start:system", "system:user")
TURN_KEYS = REQUIRED + WITH_SYSTEM


def check_turns(turns: object) -> bool:
    """True when ``turns`` is a well-formed ``chat_turns`` record (strings under the known transitions)."""
    if not isinstance(turns, Mapping) or not all(isinstance(v, str) for v in turns.values()):
        return False
    keys = set(turns)
    return set(REQUIRED) <= keys <= set(TURN_KEYS) and (keys == set(REQUIRED) or keys == set(TURN_KEYS))


def check_roles(roles: Sequence[str], system: bool) -> None:
    """ConfigError naming the first message out of order (``system`` first if allowed, then user/assistant
    alternating, ending with user)."""
    expected = ["system", "user"] if system else ["user"]
    for i, role in enumerate(roles):
        if role not in expected:
            want = " or ".join(repr(r) for r in expected)
            raise ConfigError(f"messages[{i}].role: expected {want}, got {role!r}")
        expected = ["assistant"] if role == "user" else ["user"]
    if not roles or roles[-1] != "user":
        raise ConfigError("messages: the conversation must end with a user message")


def render_conversation(turns: Mapping[str, str], messages: Sequence[tuple[str, str]]) -> str:
    """The prompt text of ``messages`` ((role, content) pairs) under ``turns`` (see the module docstring)."""
    check_roles([r for r, _ in messages], "start:system" in turns)
    out, prev = [], "start"
    for role, content in messages:
        out += [turns[f"{prev}:{role}"], content]
        prev = role
    out.append(turns["user:end"])
    return "".join(out)
