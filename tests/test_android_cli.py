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
