"""The CLI remnants of issue 29 item 5: stdout closed, --out under a regular file, float token ids, zero-width
input, and torchrun's ranks printing one error line between them (rank 0's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevlm.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
CLI = [sys.executable, "-m", "edgevlm.apps.cli"]


def test_closed_stdout_is_one_line(tiny_bundle):
    cmd = " ".join([*CLI, "run", str(tiny_bundle("fp32")), "--plain", "hello", ">&-"])
    r = subprocess.run(cmd, shell=True, env=ENV, capture_output=True, timeout=120, executable="/bin/bash")
    err = r.stderr.decode()
    assert r.returncode == 2 and err == "edgevlm: error: stdout is closed; nothing to write the output to\n", err


def test_train_out_under_a_regular_file_is_one_line(tmp_path):
    from edgevlm.train.api import TrainSpec

    f = tmp_path / "afile"
    f.write_text("keep me")
    with pytest.raises(ConfigError, match=rf"--out {f}/sub/run: {f} is a file, not a directory$"):
        TrainSpec(tasks=["nlg"], out=f / "sub" / "run", steps=1)
    r = subprocess.run(
        [*CLI, "train", "--task", "nlg", "--steps", "1", "--out", str(f / "sub")], env=ENV, capture_output=True
    )
    assert r.returncode == 2 and b"Traceback" not in r.stderr and b"is a file, not a directory" in r.stderr
    assert f.read_text() == "keep me"


@pytest.fixture(scope="module")
def rt(tiny_bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(tiny_bundle("fp32"), threads=1)


def test_float_token_ids_are_refused(rt):
    for bad in ([5, 1.5, 7], [5, True], [5.0]):
        with pytest.raises(ConfigError, match=r"prompt ids must be integers, got "):
            rt.generate_tokens(bad, max_new_tokens=2)
    want = rt.generate_tokens([5, 9, 33], max_new_tokens=3)
    assert rt.generate_tokens(list(np.array([5, 9, 33])), max_new_tokens=3) == want  # numpy integers are ids


@pytest.mark.parametrize("text", ["\u200b", "\u200b\u200d \ufeff\u2060", " \u200c\n"])
def test_zero_width_only_input_is_empty(rt, text):
    with pytest.raises(ConfigError, match=r"^input is empty$"):
        rt.generate(text, task="nlg", max_new_tokens=2)
    assert rt.generate("a\u200bb", task="nlg", max_new_tokens=2) is not None  # visible text around one is input


@pytest.mark.parametrize("rank,printed", [("0", True), ("1", False)])
def test_only_rank_0_prints_the_error(tmp_path, rank, printed):
    """An argument error (found before the process group is joined) is the same on every rank: rank 0 says it."""
    env = {**ENV, "RANK": rank, "WORLD_SIZE": "2"}
    args = ["train", "--task", "nlg", "--steps", "0", "--out", str(tmp_path / "o")]
    r = subprocess.run([*CLI, *args], env=env, capture_output=True, timeout=120)
    assert r.returncode == 2 and b"Traceback" not in r.stderr  # ConfigError's exit code on every rank
    want = "edgevlm train: error: --steps must be a positive integer, got 0\n"
    assert r.stderr.decode() == (want if printed else ""), r.stderr.decode()


def test_an_error_of_one_rank_is_said_by_that_rank(monkeypatch, capsys, tmp_path):
    """What befell one process ("rank 1 of 2: gradient all-reduce failed") is not the same on rank 0: it prints."""
    from edgevlm.apps import cli
    from edgevlm.apps.commands import train

    def fail(args):
        raise ConfigError("rank 1 of 2: gradient all-reduce failed: another process exited")

    monkeypatch.setattr(train, "run", fail)
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["train", "--task", "nlg", "--out", str(tmp_path / "o")]) == 2
    assert (
        capsys.readouterr().err
        == "edgevlm train: error: rank 1 of 2: gradient all-reduce failed: another process exited\n"
    )
