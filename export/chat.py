"""An instruct model's chat template as the bundle's plain ``task=None`` prompt: one user turn around ``{input}``.

The runtime has no template engine (no Jinja on device), so the exporter renders the model's Jinja chat template
once, for a single user message and the assistant's generation prompt, the way Hugging Face renders it
(sandboxed, ``trim_blocks``/``lstrip_blocks``), and stores the text with ``{input}`` where the message goes.
"""

from __future__ import annotations

from edgevlm.core.chat import REQUIRED, WITH_SYSTEM, render_conversation
from edgevlm.core.errors import ExportError
from edgevlm.core.prompts import INPUT_FIELD

_MARK = "\x00EDGEVLM_INPUT\x00"
_NO_SYSTEM = ["user", "assistant", "user"]
_SYSTEM = ["system", *_NO_SYSTEM]
_LONG = ["user", "assistant", "user", "assistant", "user"]


def plain_chat_template(jinja: str | None, bos: str = "", eos: str = "") -> str | None:
    """The rendered one-turn template with ``{input}`` (None without a chat template); ExportError if the
    template does not render, or renders the message other than exactly once, or already contains ``{input}``."""
    if not jinja:
        return None
    from jinja2 import TemplateError

    try:
        text = _render(jinja, [("user", _MARK)], bos, eos)
    except TemplateError as e:
        raise ExportError(f"tokenizer_config.json: chat_template does not render one user turn ({e})") from None
    if text.count(_MARK) != 1 or INPUT_FIELD in text:
        raise ExportError(f"tokenizer_config.json: chat_template renders the user message {text.count(_MARK)} times")
    return text.replace(_MARK, INPUT_FIELD)


def _render(jinja: str, messages: list[tuple[str, str]], bos: str, eos: str) -> str:
    """Hugging Face's rendering of ``messages`` with the generation prompt (sandboxed Jinja)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def fail(msg: str):
        raise TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = fail
    msgs = [{"role": r, "content": c} for r, c in messages]
    return env.from_string(jinja).render(messages=msgs, add_generation_prompt=True, bos_token=bos, eos_token=eos)


def _mark(k: int) -> str:
    return f"\x00EDGEVLM_MESSAGE_{k}\x00"


def _between(jinja: str, roles: list[str], bos: str, eos: str) -> dict[str, str] | None:
    """The text around each message of a conversation with ``roles`` as transitions ``"<from>:<to>"``."""
    text = _render(jinja, [(r, _mark(k)) for k, r in enumerate(roles)], bos, eos)
    out, prev = {}, "start"
    for k, role in enumerate(roles):
        head, sep, text = text.partition(_mark(k))
        if not sep or out.get(f"{prev}:{role}", head) != head:
            return None
        out[f"{prev}:{role}"], prev = head, role
    out["user:end"] = text
    return out


def chat_turns(jinja: str | None, bos: str = "", eos: str = "") -> dict[str, str] | None:
    """The template as transition texts (:mod:`edgevlm.core.chat`), or None where the template is not the same
    text between the same roles every time (then the runtime takes one user message only). With a system
    message when the template renders one; checked against Jinja's rendering of longer conversations."""
    if not jinja:
        return None
    from jinja2 import TemplateError

    try:
        turns = _between(jinja, _NO_SYSTEM, bos, eos)
        if turns is None:
            return None
        try:
            system = _between(jinja, _SYSTEM, bos, eos)
        except TemplateError:  # e.g. "System role not supported"
            system = None
        if system is not None and all(system[k] == turns[k] for k in REQUIRED if k != "start:user"):
            turns.update({k: system[k] for k in WITH_SYSTEM})
        for roles in [["user"], _LONG] + ([["system", *_LONG]] if "start:system" in turns else []):
            msgs = [(r, f"message {k} of {r}") for k, r in enumerate(roles)]
            if render_conversation(turns, msgs) != _render(jinja, msgs, bos, eos):
                return None
        return turns
    except TemplateError:
        return None
