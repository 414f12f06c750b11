"""``edgevlm export`` bad input: one clear stderr line, exit code 2, nothing written, before any work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from edgevlm.apps.cli import main


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(["export", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = [ln.split("\r")[-1] for ln in err.split("\n")]  # what a terminal shows (progress bars use \r)
    lines = [ln for ln in lines if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgevlm export: error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])


def _copy_adapter(trained_adapters, tmp_path, task="nlg"):
    dst = tmp_path / f"copy-{task}"
    shutil.copytree(trained_adapters["multi"] / task, dst)
    return dst


def test_fingerprint_mismatch(capsys, tmp_path, trained_adapters):
    bad = _copy_adapter(trained_adapters, tmp_path)
    meta = json.loads((bad / "adapter.json").read_text())
    meta["backbone_fingerprint"] = "0" * 32
    (bad / "adapter.json").write_text(json.dumps(meta))
    code, err = _run(capsys, "--adapter", str(bad), "--out", str(tmp_path / "b"))
    _assert_one_line_error(code, err, "another backbone", "adapter.json")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("missing", ["dir", "weights", "meta"])
def test_missing_files(capsys, tmp_path, trained_adapters, missing):
    src = _copy_adapter(trained_adapters, tmp_path)
    target = {"dir": tmp_path / "nope", "weights": src / "adapter.safetensors", "meta": src / "adapter.json"}[missing]
    if missing != "dir":
        target.unlink()
    code, err = _run(
        capsys, "--adapter", str(tmp_path / "nope" if missing == "dir" else src), "--out", str(tmp_path / "b")
    )
    _assert_one_line_error(code, err, str(target) if missing != "meta" else str(src))
    assert not (tmp_path / "b").exists()


def test_unsupported_architecture(capsys, tmp_path, trained_adapters):
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bloom", "hidden_size": 64}))
    code, err = _run(
        capsys, "--backbone", str(other), "--adapter", str(trained_adapters["qa"]), "--out", str(tmp_path / "b")
    )
    _assert_one_line_error(code, err, "bloom")


def test_missing_backbone(capsys, tmp_path, trained_adapters):
    code, err = _run(
        capsys,
        "--backbone",
        str(tmp_path / "none"),
        "--adapter",
        str(trained_adapters["qa"]),
        "--out",
        str(tmp_path / "b"),
    )
    _assert_one_line_error(code, err, str(tmp_path / "none"))


def test_duplicate_task_names(capsys, tmp_path, trained_adapters):
    code, err = _run(
        capsys,
        "--adapter",
        str(trained_adapters["multi"]),
        "--adapter",
        str(trained_adapters["multi"] / "nlg"),
        "--out",
        str(tmp_path / "b"),
    )
    _assert_one_line_error(code, err, "'nlg'", "unique")
    assert list(tmp_path.iterdir()) == []


def test_adapter_shape_mismatch_is_caught_before_writing(capsys, tmp_path, trained_adapters):
    bad = _copy_adapter(trained_adapters, tmp_path)
    tensors = load_file(str(bad / "adapter.safetensors"))
    tensors["adapter.1.up.weight"] = np.zeros((7, 128), np.float32)  # bottleneck 7 here, 10 in the other layers
    save_file(tensors, str(bad / "adapter.safetensors"))
    code, err = _run(capsys, "--adapter", str(bad), "--out", str(tmp_path / "b"), "--no-check")
    _assert_one_line_error(code, err, "adapter.1.up.weight", "bottleneck")
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]


def test_existing_output_without_force_subprocess(tmp_path, trained_adapters):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgevlm.apps.cli",
            "export",
            "--adapter",
            str(trained_adapters["qa"]),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _assert_one_line_error(proc.returncode, proc.stderr.strip(), str(out), "--force")
    assert (out / "keep.txt").read_text() == "mine"


def test_force_refuses_to_delete_a_non_bundle_directory(capsys, tmp_path, trained_adapters):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = _run(capsys, "--adapter", str(trained_adapters["qa"]), "--out", str(out), "--force")
    _assert_one_line_error(code, err, "not an edgevlm bundle")
    assert (out / "keep.txt").is_file()


def test_bad_quant_mode_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--adapter", "x", "--out", "y", "--quant", "int2"])
    assert e.value.code == 2 and "int2" in capsys.readouterr().err
