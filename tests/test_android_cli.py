"""`java -jar edgevlm-core.jar BUNDLE ...` prints what `edgevlm run BUNDLE ...` prints, byte for byte.

The jar is the one `make` builds (mvn package in the install step); the bundle is the tiny int8 bundle of the
shared fixtures (nlg, dialogue, qa). Both commands run as a user would run them, as subprocesses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

JAR = Path(__file__).resolve().parents[1] / "android_demo" / "core" / "target" / "edgevlm-core.jar"
CASES = [
    ("--task", "nlg", "name[Aromi], eatType[coffee shop], area[riverside]"),
    ("--task", "dialogue", "i like cats . <user> do you have pets ?"),
    ("--task", "qa", "tom has a red ball . <question> what colour is the ball ?"),
    ("--plain", None, "the cat sat on"),
]


def cli_output(cmd: list[str]) -> str:
    run = subprocess.run(cmd, capture_output=True, timeout=120)
    assert run.returncode == 0, f"{cmd[:4]} exit {run.returncode}: {run.stderr.decode(errors='replace')[-2000:]}"
    return run.stdout.decode("utf-8")


@pytest.mark.parametrize("flag,task,text", CASES, ids=[c[1] or "plain" for c in CASES])
def test_java_cli_prints_what_edgevlm_run_prints(tiny_bundle, flag, task, text):
    java = shutil.which("java")
    if java is None or not JAR.is_file():
        pytest.fail(f"needs a JDK 17 on PATH and {JAR} (built by `make`: mvn -f android_demo/core/pom.xml package)")
    bundle = str(tiny_bundle("int8"))
    args = [flag] + ([task] if task else []) + ["--threads", "1", "--max-new-tokens", "24", text]
    python = cli_output([sys.executable, "-m", "edgevlm.apps.cli", "run", bundle, *args])
    jvm = cli_output([java, "-jar", str(JAR), bundle, *args])
    assert python.strip(), f"edgevlm run printed nothing for {task}"
    assert jvm == python


def _both(tiny_bundle, args: list[str], stdin: bytes | None = None) -> tuple:
    """(python, java) CompletedProcess of the same command line (bytes arguments allowed)."""
    java = shutil.which("java")
    if java is None or not JAR.is_file():
        pytest.fail(f"needs a JDK 17 on PATH and {JAR} (built by `make`: mvn -f android_demo/core/pom.xml package)")
    bundle = str(tiny_bundle("int8")).encode()
    kw = dict(capture_output=True, timeout=120, input=stdin)
    py = subprocess.run([sys.executable.encode(), b"-m", b"edgevlm.apps.cli", b"run", bundle, *args], **kw)
    jv = subprocess.run([java.encode(), b"-jar", str(JAR).encode(), bundle, *args], **kw)
    return py, jv


def _error_line(r: subprocess.CompletedProcess, prefix: str) -> str:
    lines = r.stderr.decode("utf-8", "replace").splitlines()
    errors = [x for x in lines if x.startswith(prefix)]
    assert len(errors) == 1 and "Traceback" not in r.stderr.decode() and "Exception" not in r.stderr.decode(), lines
    return errors[0][len(prefix) :]


BAD_OPTIONS = [
    [b"--max-new-tokens", b"1.5"],
    [b"--threads", b"2.5"],
    [b"--seed", b"1.5"],
    [b"--top-k", b"1e12"],
    [b"--temperature", b"warm"],
    [b"--min-new-tokens", b"0x10"],
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=[b" ".join(b).decode() for b in BAD_OPTIONS])
def test_bad_numeric_option_is_pythons_one_line(tiny_bundle, bad):
    py, jv = _both(tiny_bundle, [b"--plain", *bad, b"hello"])
    assert py.returncode == jv.returncode == 2
    assert _error_line(jv, "edgevlm-core: error: ") == _error_line(py, "edgevlm run: error: ")


def test_undecodable_argument_is_refused_like_python(tiny_bundle):
    py, jv = _both(tiny_bundle, [b"--plain", b"ab\xffcd"])
    assert py.returncode == jv.returncode == 2 and not jv.stdout
    assert _error_line(jv, "edgevlm-core: error: ") == _error_line(py, "edgevlm run: error: ")
    assert _error_line(jv, "edgevlm-core: error: ") == "input is not valid UTF-8 text (undecodable byte at character 2)"


def test_undecodable_stdin_line_is_refused_and_the_next_answered(tiny_bundle):
    stdin = b"\xe2\x82 x\nthe cat sat on\n\xff\n"
    py, jv = _both(tiny_bundle, [b"--plain", b"--threads", b"1", b"--max-new-tokens", b"4"], stdin)
    assert py.returncode == jv.returncode == 2 and jv.stdout == py.stdout and py.stdout.strip()
    want = [x[len("edgevlm run: error: ") :] for x in py.stderr.decode().splitlines() if "error:" in x]
    got = [x[len("edgevlm-core: error: ") :] for x in jv.stderr.decode().splitlines() if "error:" in x]
    assert got == want and len(want) == 2, (got, want)
    assert want[0] == "stdin line 1: not UTF-8 text (invalid continuation byte at byte 0)"


def test_unknown_provider_and_missing_ort_graph_are_pythons_one_line(tiny_bundle):
    """The Java core takes ONNX Runtime providers and the .ort graph as `edgevlm run` does (--provider, --graph)."""
    py, jv = _both(tiny_bundle, [b"--plain", b"--provider", b"BogusExecutionProvider", b"hello"])
    assert py.returncode == jv.returncode == 2
    want = "execution provider 'BogusExecutionProvider' is not in this ONNX Runtime build; available: ["
    for line in (_error_line(py, "edgevlm run: error: "), _error_line(jv, "edgevlm-core: error: ")):
        assert line.startswith(want) and "'CPUExecutionProvider'" in line, line
    py, jv = _both(tiny_bundle, [b"--plain", b"--graph", b"ort", b"hello"])  # exported without --ort
    assert py.returncode == jv.returncode == 2
    assert _error_line(jv, "edgevlm-core: error: ") == _error_line(py, "edgevlm run: error: ")
    assert _error_line(py, "edgevlm run: error: ").endswith("the bundle has no backbone.ort (export it with --ort)")


def test_java_runs_the_ort_graph_as_edgevlm_run_does(trained_adapters, tmp_path):
    from edgevlm.export import export_bundle

    java = shutil.which("java")
    if java is None or not JAR.is_file():
        pytest.fail(f"needs a JDK 17 on PATH and {JAR} (built by `make`: mvn -f android_demo/core/pom.xml package)")
    root = export_bundle(
        "tiny", [trained_adapters["multi"]], "int8", out=tmp_path / "b", progress=False, ort_format=True
    )
    for flag, task, text in CASES[:2] + CASES[3:]:
        args = [flag, *([task] if task else []), "--threads", "1", "--max-new-tokens", "16", "--graph", "ort", text]
        args += ["--provider", "CPUExecutionProvider"]
        python = cli_output([sys.executable, "-m", "edgevlm.apps.cli", "run", str(root), *args])
        assert python.strip() and cli_output([java, "-jar", str(JAR), str(root), *args]) == python


def _java(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    java = shutil.which("java")
    if java is None or not JAR.is_file():
        pytest.fail(f"needs a JDK 17 on PATH and {JAR} (built by `make`: mvn -f android_demo/core/pom.xml package)")
    return subprocess.run([java, "-jar", str(JAR), *args], capture_output=True, timeout=120, input=stdin)


def test_java_cli_answers_a_conversation_as_the_server_renders_it(tiny_bundle, tmp_path):
    """--message ROLE:TEXT / --messages FILE: the dialogue task's turns as edgevlm serve maps them (persona from
    the system message), the same reply as the Python runtime on that input; a conversation the model cannot take
    is the server's 400 line."""
    import json

    from edgevlm.apps.serve import chat as chats
    from edgevlm.runtime import Runtime

    bundle = tiny_bundle("int8")
    msgs = [("system", "i like cats ."), ("user", "hi , how are you ?"), ("assistant", "fine ."), ("user", "pets ?")]
    rt = Runtime.load(bundle, threads=1)
    want = rt.generate(chats.for_task(msgs, rt.task("dialogue")), "dialogue", max_new_tokens=16) + "\n"
    flags = [x for r, c in msgs for x in ("--message", f"{r}:{c}")]
    opts = ["--task", "dialogue", "--threads", "1", "--max-new-tokens", "16"]
    got = _java([str(bundle), *opts, *flags])
    assert got.returncode == 0 and got.stdout.decode() == want and want.strip(), got.stderr.decode()[-2000:]
    file = tmp_path / "chat.json"
    file.write_text(json.dumps({"messages": [{"role": r, "content": c} for r, c in msgs]}))
    assert _java([str(bundle), *opts, "--messages", str(file)]).stdout.decode() == want
    bad = _java([str(bundle), "--plain", "--messages", str(file)])
    try:
        chats.plain(chats.messages({"messages": json.loads(file.read_text())["messages"]}), rt.manifest.tokenizer)
    except chats.RequestError as e:
        assert bad.returncode == 2 and _error_line(bad, "edgevlm-core: error: ") == str(e)
    else:
        pytest.fail("the plain tiny model took a 4-message conversation without a chat template")


def test_java_cli_session_config_refused_in_one_line(tiny_bundle):
    """--session-config KEY=VALUE reaches ONNX Runtime (its refusal names the entry, one line, exit 2)."""
    bundle = str(tiny_bundle("int8"))
    ok = _java([bundle, "--plain", "--threads", "1", "--max-new-tokens", "4", "--session-config",
                "session.dynamic_block_base=2", "the cat sat on"])  # fmt: skip
    py = cli_output([sys.executable, "-m", "edgevlm.apps.cli", "run", bundle, "--plain", "--threads", "1",
                     "--max-new-tokens", "4", "the cat sat on"])  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.decode() == py and not ok.stderr, ok.stderr.decode()
    bad = _java([bundle, "--plain", "--session-config", "session.graph_optimizations_loop_level=two", "hi"])
    lines = bad.stderr.decode().splitlines()  # ONNX Runtime's reason says "Exception during initialization"
    assert bad.returncode == 2 and len(lines) == 1 and not bad.stdout, lines
    want = "edgevlm-core: error: session config entry 'session.graph_optimizations_loop_level'='two' is refused by ONNX"
    assert lines[0].startswith(want), lines
