"""``edgevlm run``: streaming one input, --list, reading lines from stdin, one-line errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from edgevlm.apps.cli import main


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> Path:
    return Path(tiny_bundle("fp32"))


@pytest.fixture(scope="module")
def rt(bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(bundle)


def test_list_shows_tasks_and_bottlenecks(bundle, capsys):
    assert main(["run", str(bundle), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "n_layer=4" in out[0] and "quantization=fp32" in out[0]
    assert [line.split("\t")[:2] for line in out[1:]] == [
        ["dialogue", "bottleneck=100"],
        ["nlg", "bottleneck=10"],
        ["qa", "bottleneck=300"],
    ]


def test_one_input_is_streamed(bundle, rt, capsys):
    text = "name[Aromi], food[Chinese], area[city centre]"
    assert main(["run", str(bundle), "--task", "nlg", text]) == 0
    assert capsys.readouterr().out == rt.generate(text, "nlg") + "\n"
    assert main(["run", str(bundle), "--task", "nlg", "--beams", "3", "--max-new-tokens", "12", text]) == 0
    assert capsys.readouterr().out == rt.generate(text, "nlg", num_beams=3, max_new_tokens=12) + "\n"


def test_lines_from_stdin(bundle, rt, capsys, monkeypatch):
    lines = ["name[Aromi], food[Chinese]", "", "name[The Eagle], eatType[pub]"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["run", str(bundle), "--task", "nlg", "--max-new-tokens", "16"]) == 0
    want = [rt.generate(t, "nlg", max_new_tokens=16) for t in lines if t]
    assert capsys.readouterr().out.splitlines() == want


def test_bad_line_reports_and_goes_on(bundle, rt, capsys, monkeypatch):
    """508 new tokens leave a 4-token prompt: line 1 is truncated (noted), line 2 cannot fit (error), line 3 runs."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("i like cats\n<user> <user> <user>\nhi\n"))
    assert main(["run", str(bundle), "--task", "dialogue", "--max-new-tokens", "508", "--quiet"]) == 2
    captured = capsys.readouterr()
    with pytest.warns(UserWarning):
        want = [rt.generate(t, "dialogue", max_new_tokens=508) for t in ("i like cats", "hi")]
    assert captured.out.splitlines() == want
    err = captured.err.splitlines()
    assert len(err) == 2 and "note: input has" in err[0] and "kept 4" in err[0] and "beyond the context" in err[1]


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--task", "mt", "hi"], "unknown task 'mt'; available tasks: ['dialogue', 'nlg', 'qa']"),
        (["hi"], "--task is required"),
        (["--task", "nlg", "--max-new-tokens", "9999", "hi"], "max_new_tokens=9999 is beyond the context"),
        (["--task", "nlg", "--temperature", "0", "--sample", "hi"], "temperature must be a positive number"),
        (["--task", "nlg", "   "], "input is empty"),
    ],
)
def test_errors_are_one_line(bundle, capsys, argv, msg):
    assert main(["run", str(bundle), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err


def test_console_script_pipes_stdin(bundle, rt):
    exe = Path(sys.executable).with_name("edgevlm")
    r = subprocess.run(
        [str(exe), "run", str(bundle), "--task", "dialogue", "--max-new-tokens", "10"],
        input="i like cats . i am a nurse .\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == rt.generate("i like cats . i am a nurse .", "dialogue", max_new_tokens=10) + "\n"
