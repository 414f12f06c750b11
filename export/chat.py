"""An instruct model's chat template as the bundle's plain ``task=None`` prompt: one user turn around ``{input}``.

The runtime has no template engine (no Jinja on device), so the exporter renders the model's Jinja chat template
once, for a single user message and the assistant's generation prompt, the way Hugging Face renders it
(sandboxed, ``trim_blocks``/``lstrip_blocks``), and stores the text with ``{input}`` where the message goes.
"""

from __future__ import annotations

from edgevlm.core.errors import ExportError
from edgevlm.core.prompts import INPUT_FIELD

_MARK = "\x00EDGEVLM_INPUT\x00"


def plain_chat_template(jinja: str | None, bos: str = "", eos: str = "") -> str | None:
    """The rendered one-turn template with ``{input}`` (None without a chat template); ExportError if the
    template does not render, or renders the message other than exactly once, or already contains ``{input}``."""
    if not jinja:
        return None
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def fail(msg: str):
        raise TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = fail
    try:
        text = env.from_string(jinja).render(
            messages=[{"role": "user", "content": _MARK}], add_generation_prompt=True, bos_token=bos, eos_token=eos
        )
    except TemplateError as e:
        raise ExportError(f"tokenizer_config.json: chat_template does not render one user turn ({e})") from None
    if text.count(_MARK) != 1 or INPUT_FIELD in text:
        raise ExportError(f"tokenizer_config.json: chat_template renders the user message {text.count(_MARK)} times")
    return text.replace(_MARK, INPUT_FIELD)
