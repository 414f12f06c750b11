"""``edgevlm run --chat``: the input is the user turn of the bundle's chat template (plain model), on a tiny Llama
bundle whose tokenizer_config.json carries a Jinja chat template; refusals in one line."""

from __future__ import annotations

import io
import json
import shutil
import sys

import pytest

from edgevlm.apps.cli import main

JINJA = (
    "{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
TURN = "<|endoftext|>user: {input}\nassistant:"
N = 8


@pytest.fixture(scope="module")
def chat_bundle(tmp_path_factory, tiny_llama_dir):
    from edgevlm.export import export_bundle

    src = tmp_path_factory.mktemp("run-chat") / "model"
    shutil.copytree(tiny_llama_dir, src)
    (src / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "chat_template": JINJA}))
    return export_bundle(str(src), [], "fp32", out=src.parent / "bundle", progress=False)


@pytest.fixture(scope="module")
def rt(chat_bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(chat_bundle, threads=1)


def test_chat_wraps_the_input_in_the_template(chat_bundle, rt, capsys):
    assert rt.manifest.tokenizer.chat_template == TURN
    question = "what is a cat"
    assert main(["run", str(chat_bundle), "--chat", "--max-new-tokens", str(N), question]) == 0
    out = capsys.readouterr().out
    assert out == rt.generate(TURN.replace("{input}", question), max_new_tokens=N) + "\n"
    assert main(["run", str(chat_bundle), "--plain", "--max-new-tokens", str(N), question]) == 0
    assert capsys.readouterr().out != out  # the same text without the template continues differently


def test_chat_lines_from_stdin_and_beams(chat_bundle, rt, capsys, monkeypatch):
    lines = ["what is a cat", "hello there"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["run", str(chat_bundle), "--chat", "--beams", "2", "--max-new-tokens", str(N)]) == 0
    want = [rt.generate(t, chat=True, num_beams=2, max_new_tokens=N) for t in lines]
    assert capsys.readouterr().out.splitlines() == want


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--chat", "--task", "nlg", "hi"], "--task and --chat exclude each other"),
        (["--chat", "hi"], "has no tokenizer.chat_template (not a chat model)"),
    ],
)
def test_chat_refusals_are_one_line(tmp_path_factory, tiny_llama_dir, capsys, argv, msg):
    from edgevlm.export import export_bundle

    out = tmp_path_factory.getbasetemp() / "run-chat-plain"  # the tiny Llama as is: no chat template
    if not out.exists():
        export_bundle(str(tiny_llama_dir), [], "fp32", out=out, progress=False)
    assert main(["run", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err, err
