"""What users install: the sdist and the wheel built from it, installed outside the source tree.

Every test elsewhere runs on the editable install, which maps the source folders and so hides a package the
wheel leaves out. Here the sdist is built from the checkout, the wheel from the unpacked sdist (so the sdist
must carry everything), and the wheel goes into fresh virtual environments:

- runtime only (``pip install edgevlm``: onnxruntime, numpy, tokenizers, versions from requirements.lock):
  ``edgevlm run`` and ``from edgevlm.runtime import Runtime`` give what the source tree gives, torch is absent,
  and ``edgevlm train``/``export`` print one line naming the extra to install;
- ``[train,export]``: the wheel in an environment whose third-party packages are this test run's own (they are
  the lock's pins; checked against the wheel's declared requirements), training and exporting the tiny backbone.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
NLG = "name[Aromi], food[Chinese], area[city centre]"
# Every package of the source tree, as installed (setup.py's discovery must find each).
EXPECTED = {
    "edgevlm",
    "edgevlm.core",
    "edgevlm.runtime",
    "edgevlm.train",
    "edgevlm.train.arch",
    "edgevlm.train.tasks",
    "edgevlm.apps",
    "edgevlm.apps.commands",
    "edgevlm.apps.serve",
    "edgevlm.export",
    "edgevlm.export.arch",
    "edgevlm.benchmarks",
}


def run(cmd: list, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist built from the checkout and the wheel built from the unpacked sdist."""
    out = tmp_path_factory.mktemp("dist")
    build = "import sys, setuptools.build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"
    sdist = out / run([sys.executable, "-c", build, "build_sdist", out], cwd=REPO).stdout.split()[-1]
    with tarfile.open(sdist) as tar:
        tar.extractall(out / "src", filter="data")
    (src,) = (out / "src").iterdir()
    wheel = out / run([sys.executable, "-c", build, "build_wheel", out], cwd=src).stdout.split()[-1]
    return {"sdist": sdist, "wheel": wheel}


def test_wheel_holds_every_package_and_nothing_else(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == EXPECTED
    assert "edgevlm/assets/tiny-v2/model.safetensors" in names
    assert not any(n.startswith(("tests/", "experiments/", "export/", "benchmarks/")) for n in names)


def venv(path: Path, share_packages: bool) -> Path:
    """A fresh virtual environment; with ``share_packages`` it also sees this interpreter's site-packages (a
    path entry only: this checkout's editable install there is not activated)."""
    run([sys.executable, "-m", "venv", path])
    if share_packages:
        site = next((path / "lib").glob("python*/site-packages"))
        (site / "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return path / "bin"


@pytest.fixture(scope="module")
def runtime_env(dists, tmp_path_factory) -> Path:
    """The wheel with the runtime's dependencies only, pinned by requirements.lock."""
    bin_ = venv(tmp_path_factory.mktemp("venv") / "rt", share_packages=False)
    run([bin_ / "python", "-m", "pip", "install", "-q", "-c", REPO / "requirements.lock", dists["wheel"]])
    return bin_


def test_runtime_only_install_runs_a_bundle(runtime_env, tiny_bundle, tmp_path):
    bundle = tiny_bundle("int8")
    probe = "import importlib.util as u, edgevlm; print(edgevlm.__file__); print(u.find_spec('torch'))"
    where, torch = run([runtime_env / "python", "-c", probe], cwd=tmp_path).stdout.split()
    assert str(runtime_env.parent) in where and torch == "None"
    from edgevlm.runtime import Runtime

    want = Runtime.load(bundle).generate(NLG, task="nlg")
    got = run([runtime_env / "edgevlm", "run", bundle, "--task", "nlg", NLG], cwd=tmp_path).stdout
    assert got == want + "\n"
    api = f"from edgevlm.runtime import Runtime; print(Runtime.load({str(bundle)!r}).generate({NLG!r}, task='nlg'))"
    assert run([runtime_env / "python", "-c", api], cwd=tmp_path).stdout == want + "\n"


@pytest.mark.parametrize(
    ("argv", "extra", "module"),
    [
        (["train", "--task", "nlg", "--out", "x"], "train", "torch"),
        (["export", "--adapter", "x", "--out", "y"], "export", "onnx"),
    ],
)
def test_runtime_only_install_names_the_missing_extra(runtime_env, tmp_path, argv, extra, module):
    out = run([runtime_env / "edgevlm", *argv], cwd=tmp_path, check=False)
    assert out.returncode == 2, out.stderr
    hint = f"pip install 'edgevlm[{extra}]'"
    want = f"edgevlm {argv[0]}: error: needs the '{extra}' extra (no module named '{module}'): {hint}"
    assert out.stderr.strip().splitlines() == [want]


def test_train_export_install_trains_and_exports(dists, tmp_path):
    bin_ = venv(tmp_path / "venv", share_packages=True)
    run([bin_ / "python", "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", dists["wheel"]])
    where = run([bin_ / "python", "-c", "import edgevlm.export as e; print(e.__file__)"], cwd=tmp_path).stdout
    assert where.startswith(str(tmp_path / "venv")), where
    unmet = [r for r in extras_requirements(dists["wheel"], {"train", "export"}) if not installed(r)]
    assert not unmet, f"the [train,export] extras are not met by requirements.lock's pins: {unmet}"
    run([bin_ / "edgevlm", "train", "--task", "nlg", "--steps", "2", "--out", tmp_path / "ad"], cwd=tmp_path)
    args = ["export", "--adapter", tmp_path / "ad", "--quant", "int8", "--out", tmp_path / "b"]
    run([bin_ / "edgevlm", *args], cwd=tmp_path)
    out = run([bin_ / "edgevlm", "run", tmp_path / "b", "--task", "nlg", "--max-new-tokens", "4", NLG], cwd=tmp_path)
    assert out.stdout.strip()


def extras_requirements(wheel: Path, extras: set[str]) -> list[Requirement]:
    """The wheel's declared requirements needed by ``extras`` (its METADATA's Requires-Dist)."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [Requirement(line.split(":", 1)[1]) for line in lines if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker and any(r.marker.evaluate({"extra": e}) for e in extras)]


def installed(req: Requirement) -> bool:
    try:
        return req.specifier.contains(metadata.version(req.name), prereleases=True)
    except metadata.PackageNotFoundError:
        return False
