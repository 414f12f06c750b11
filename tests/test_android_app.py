"""The Android demo app built by the project's own Maven build (android_demo/app/pom.xml: aapt2 -> javac against
android-all -> D8 -> apksig, every tool a Maven artifact; no Gradle, no Android SDK) with a tiny exported bundle in
its assets, and MainActivity run end to end on Robolectric (offline) by the same `mvn package`.

Checked here: the APK verifies with apksig (v2/v3 signed), every stored entry is 4-byte aligned (zipalign's rule),
its classes.dex holds the app's and the core's classes (and none of the JVM-only Cli/ChatInput/Bench), the binary
manifest names the package, the SDK levels and the launcher activity, the assets carry the bundle byte for byte (stored
uncompressed), and the Robolectric report shows the Activity test ran and passed with the streamed outputs equal
to the Python runtime's (the expectations are written here from `Runtime.generate`, what `edgevlm run` prints).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "android_demo" / "app"
APK = APP / "target" / "edgevlm-demo-debug.apk"
INPUTS = {  # one input per run; the Activity test runs them in this order (a task switch each time)
    "nlg": "name[Aromi], food[Chinese], area[city centre]",
    "dialogue": "hello, can you help me book a table?",
    None: "the weather in dublin",
}


def expectations(bundle: Path, out: Path) -> dict:
    """What the Activity must show for ``bundle``: its tasks, and per case the Python runtime's greedy text."""
    from edgevlm.runtime import Runtime

    rt = Runtime.load(bundle, threads=1)
    manifest = json.loads((bundle / "manifest.json").read_text())
    cases = [{"task": t, "input": text, "text": rt.generate(text, t)} for t, text in INPUTS.items()]
    exp = {"quantization": manifest["backbone"]["quantization"], "tasks": list(manifest["tasks"]), "cases": cases}
    out.write_text(json.dumps(exp, ensure_ascii=False, indent=1), encoding="utf-8")
    return exp


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_bundle) -> dict:
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail("mvn (Apache Maven) is not on PATH: the app's build needs Maven and a JDK 17 (apt install maven)")
    bundle = Path(tiny_bundle("int8"))
    exp_file = tmp_path_factory.mktemp("app") / "expected.json"
    exp = expectations(bundle, exp_file)
    reports = APP / "target" / "surefire-reports"
    shutil.rmtree(reports, ignore_errors=True)
    APK.unlink(missing_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(APP / "pom.xml"), "package"]
    cmd += [f"-Dedgevlm.bundle={bundle}", f"-Dedgevlm.app.expected={exp_file}"]
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    tail = f"{run.stdout[-8000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, f"mvn package failed (exit {run.returncode}):\n{tail}"
    return {"bundle": bundle, "expected": exp, "reports": reports, "log": run.stdout}


def test_activity_ran_on_robolectric(built):
    report = built["reports"] / "TEST-io.edgevlm.demo.MainActivityTest.xml"
    assert report.is_file(), f"no Robolectric report: {sorted(p.name for p in built['reports'].glob('*'))}"
    suite = ET.parse(report).getroot()
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "skipped", "failures", "errors")}
    assert counts == {"tests": 2, "skipped": 0, "failures": 0, "errors": 0}, counts
    cases = built["expected"]["cases"]
    assert [c["task"] for c in cases] == list(INPUTS) and all(c["text"] for c in cases), cases
    assert len({c["text"] for c in cases}) == len(cases), "each run shows another output"


def test_apk_verifies_with_apksig(built):
    tools = APP / "target" / "tools"
    java = shutil.which("java")
    run = subprocess.run(
        [java, "-cp", str(tools / "apksig.jar"), str(APP / "buildtools" / "ApkTool.java"), "verify", str(APK)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verified=true" in run.stdout and "v2=true" in run.stdout and "signers=1" in run.stdout, run.stdout


def data_offsets(apk: Path) -> dict[str, tuple[int, int]]:
    """{entry: (offset of its data in the file, compression method)} from each local file header."""
    raw = apk.read_bytes()
    out = {}
    with zipfile.ZipFile(apk) as z:
        for info in z.infolist():
            h = info.header_offset
            assert raw[h : h + 4] == b"PK\x03\x04", info.filename
            name_len, extra_len = struct.unpack("<HH", raw[h + 26 : h + 30])
            out[info.filename] = (h + 30 + name_len + extra_len, info.compress_type)
    return out


def test_apk_is_aligned(built):
    offsets = data_offsets(APK)
    stored = {n: off for n, (off, method) in offsets.items() if method == zipfile.ZIP_STORED}
    assert "resources.arsc" in stored, "resources.arsc is stored (mmapped by the platform)"
    misaligned = {n: off for n, off in stored.items() if off % (4096 if n.endswith(".so") else 4)}
    assert not misaligned, f"stored entries off their alignment: {misaligned}"


def test_dex_has_app_and_core_classes(built):
    with zipfile.ZipFile(APK) as z:
        dex = z.read("classes.dex")
    assert dex[:4] == b"dex\n", dex[:8]
    for cls in (
        "Lio/edgevlm/demo/MainActivity;",
        "Lio/edgevlm/demo/BundleCopy;",
        "Lio/edgevlm/demo/BundleDownload;",
        "Lio/edgevlm/core/Chat;",
        "Lio/edgevlm/demo/R$id;",
        "Lio/edgevlm/core/Bundle;",
        "Lio/edgevlm/core/Generation;",
        "Lio/edgevlm/core/Decoder$Result;",
        "Lio/edgevlm/core/ByteLevelBpe;",
        "Lai/onnxruntime/OrtSession;",
    ):
        assert cls.encode() in dex, f"{cls} is not in classes.dex"
    jvm_only = ("Lio/edgevlm/core/Cli;", "Lio/edgevlm/core/ChatInput;", "Lio/edgevlm/core/Bench;")
    for cls in jvm_only:  # excluded as in core/build.gradle
        assert cls.encode() not in dex, cls


def badging(apk: Path) -> str:
    aapt2 = APP / "target" / "tools" / "aapt2-bin" / "aapt2"
    run = subprocess.run([str(aapt2), "dump", "badging", str(apk)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_manifest_badging(built):
    out = badging(APK)
    assert "package: name='io.edgevlm.demo' versionCode='1' versionName='0.1.0'" in out, out
    assert "minSdkVersion:'26'" in out and "targetSdkVersion:'34'" in out, out
    assert "launchable-activity: name='io.edgevlm.demo.MainActivity'" in out, out


def test_apk_ships_the_bundle(built):
    bundle = built["bundle"]
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    offsets = data_offsets(APK)
    with zipfile.ZipFile(APK) as z:
        for f in files:
            name = "assets/bundle/" + f.relative_to(bundle).as_posix()
            assert z.read(name) == f.read_bytes(), name
            if f.suffix in (".onnx", ".onnx_adapter", ".json", ".data"):
                assert offsets[name][1] == zipfile.ZIP_STORED, f"{name} is compressed"
    assert any(f.suffix == ".onnx_adapter" for f in files) and len(built["expected"]["tasks"]) >= 2


def synthetic_aar(root: Path) -> Path:
    """An AAR laid out as onnxruntime-android's (classes.jar, jni/ABI/libonnxruntime.so) with the desktop jar's
    classes and placeholder libraries: only the packaging is under test (the real AAR is not served here)."""
    desktop = APP / "target" / "tools" / "onnxruntime.jar"
    aar = root / "onnxruntime-android.aar"
    with zipfile.ZipFile(desktop) as src, zipfile.ZipFile(root / "classes.jar", "w") as jar:
        for n in src.namelist():
            if n.endswith(".class"):
                jar.writestr(n, src.read(n))
    with zipfile.ZipFile(aar, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(root / "classes.jar", "classes.jar")
        for abi, size in (("arm64-v8a", 12345), ("x86_64", 777)):
            z.writestr(f"jni/{abi}/libonnxruntime.so", os.urandom(size))
    return aar


@pytest.mark.slow
def test_ort_aar_natives_go_into_lib(built, tmp_path):
    """ORT_AAR: the AAR's jni/ABI/*.so land in lib/ABI/ stored and page-aligned, the APK still verifies."""
    aar = synthetic_aar(tmp_path)
    out = tmp_path / "with-natives.apk"
    cmd = [shutil.which("mvn"), "-q", "-B", "-f", str(APP / "pom.xml"), "package", "-DskipTests"]
    run = subprocess.run([*cmd, f"-Dort.aar={aar}", f"-Dapk.out={out}"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    offsets = data_offsets(out)
    with zipfile.ZipFile(aar) as a:
        for abi in ("arm64-v8a", "x86_64"):
            name = f"lib/{abi}/libonnxruntime.so"
            off, method = offsets[name]
            assert method == zipfile.ZIP_STORED and off % 4096 == 0, (name, off, method)
            with zipfile.ZipFile(out) as z:
                assert z.read(name) == a.read(f"jni/{abi}/libonnxruntime.so")
    assert b"Lai/onnxruntime/OrtSession;" in zipfile.ZipFile(out).read("classes.dex")
